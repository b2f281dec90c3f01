"""The sampler's filters: temperature, top-k, top-p, greedy; and rows drawn together."""

from __future__ import annotations

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.sampling import SampleConfig, filter_logits, pick, pick_rows, plain


def test_top_k_keeps_k_largest() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, 0.5])
    out = filter_logits(logits, SampleConfig(top_k=2))
    assert torch.isfinite(out).tolist() == [False, True, True, False]


def test_top_p_keeps_smallest_covering_set() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    keep = lambda p: torch.isfinite(filter_logits(logits, SampleConfig(top_p=p))).tolist()  # noqa: E731
    assert keep(0.5) == [True, False, False, False]
    assert keep(0.6) == [True, True, False, False]
    assert keep(0.8) == [True, True, False, False]  # 0.5 + 0.3 covers 0.8 exactly
    assert keep(0.81) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]


def test_temperature_scales_logits() -> None:
    logits = torch.tensor([1.0, 2.0])
    assert torch.allclose(filter_logits(logits, SampleConfig(temperature=0.5)), logits * 2)


def test_greedy_and_zero_temperature_take_argmax() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.1, 5.0, 0.2])
    assert pick(logits, SampleConfig(greedy=True), gen) == 1
    assert pick(logits, SampleConfig(temperature=0), gen) == 1


def test_sampling_frequencies_follow_probabilities() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.6, 0.3, 0.1])
    draws = torch.tensor([pick(probs.log(), SampleConfig(), gen) for _ in range(4000)])
    freq = torch.bincount(draws, minlength=3) / 4000
    assert torch.allclose(freq, probs, atol=0.03)


@pytest.mark.parametrize("bad", [{"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5},
                                 {"temperature": -1.0}, {"length": -1}])
def test_bad_settings(bad: dict) -> None:
    with pytest.raises(SeqlabError):
        SampleConfig(**bad)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_pick_rows_equals_pick_row_by_row(temperature: float) -> None:
    # Sharp, flat and mixed rows, drawn many times: every token equals `pick`'s with a copy of
    # the row's generator, and both generators end in the same state.
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(6, 65) * s for s in (0.1, 1.0, 5.0)])  # (18, 65)
    temps = [temperature if b % 2 else 1.0 for b in range(len(logits))]
    gens = [torch.Generator().manual_seed(100 + b) for b in range(len(logits))]
    ref = [torch.Generator().manual_seed(100 + b) for b in range(len(logits))]
    for _ in range(30):
        got = pick_rows(logits, temps, gens)
        want = [pick(logits[b], SampleConfig(temperature=temps[b]), ref[b])
                for b in range(len(logits))]
        assert got == want
    assert all(torch.equal(g.get_state(), r.get_state()) for g, r in zip(gens, ref, strict=True))
    assert len({tuple(pick_rows(logits, temps, gens)) for _ in range(3)}) > 1  # random draws
    assert plain(SampleConfig(temperature=0.5)) and not plain(SampleConfig(top_k=3))
    assert not plain(SampleConfig(greedy=True)) and not plain(SampleConfig(temperature=0))
