"""The sampler's filters: temperature, top-k, top-p, greedy."""

from __future__ import annotations

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.sampling import SampleConfig, filter_logits, pick


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
