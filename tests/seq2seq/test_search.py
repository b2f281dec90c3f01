"""Decoding: beam 1 == greedy, batch/padding independence, exhaustive-search golden values,
the GNMT length penalty, n-best, length limits and sampling."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from tests.seq2seq.conftest import VARIANT_IDS, VARIANTS, encoded, reversal_pairs, tiny_model

from seqlab.errors import SeqlabError
from seqlab.seq2seq.data import BOS_ID, EOS_ID, PAD_ID
from seqlab.seq2seq.search import BeamSearch, DecodeConfig, greedy

_PAIRS = encoded(reversal_pairs(7, max_len=9, seed=1))
SOURCES = [_PAIRS.source(i) for i in range(len(_PAIRS))]


def _same(a: list[list[Any]], b: list[list[Any]], tol: float = 1e-5) -> None:
    assert [[h.tokens for h in hs] for hs in a] == [[h.tokens for h in hs] for hs in b]
    for ha, hb in zip(itertools.chain(*a), itertools.chain(*b), strict=True):
        assert ha.log_prob == pytest.approx(hb.log_prob, abs=tol)
        assert ha.score == pytest.approx(hb.score, abs=tol)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_size_one_equals_greedy(variant: dict[str, str], alpha: float) -> None:
    model = tiny_model(seed=3, **variant)
    g = model.translate(SOURCES, DecodeConfig(strategy="greedy", max_len_b=12))
    b = model.translate(SOURCES, DecodeConfig(beam_size=1, length_penalty=alpha, max_len_b=12))
    assert [h[0].tokens for h in g] == [h[0].tokens for h in b]
    assert [h[0].log_prob for h in g] == [h[0].log_prob for h in b]  # the same floats
    for hg, hb in zip(g, b, strict=True):
        if hg[0].attention is not None:
            assert np.array_equal(hg[0].attention, hb[0].attention)


@pytest.mark.parametrize("variant", VARIANTS[::2], ids=VARIANT_IDS[::2])
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_outputs_do_not_depend_on_batch_size_or_padding(variant: dict[str, str],
                                                        strategy: str) -> None:
    model = tiny_model(seed=4, **variant)
    n_best = 1 if strategy == "greedy" else 3
    cfg = lambda bs: DecodeConfig(strategy=strategy, beam_size=4, n_best=n_best,  # noqa: E731
                                  batch_size=bs, max_len_b=12, seed=9)
    together = model.translate(SOURCES, cfg(64))  # one padded batch of mixed lengths
    for bs in (1, 3):
        _same(together, model.translate(SOURCES, cfg(bs)))
    if strategy != "sample":  # a sample is seeded by the source's position in the input
        alone = [model.translate([s], cfg(1))[0] for s in SOURCES]
        _same(together, alone)


class TableModel:
    """A stub decoder whose next-token log-probs depend only on (step, previous token), from a
    seeded table; it never emits <pad>/<bos>. Lets beam search be checked against brute force."""

    def __init__(self, V: int = 7, T: int = 5, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        logits = 2.0 * torch.randn(T, V, V, generator=g)
        logits[..., [PAD_ID, BOS_ID]] = -torch.inf
        self.table = logits.log_softmax(-1)  # (T, prev, next)

    @dataclass
    class State:
        t: torch.Tensor  # (N,) step of each row

        def repeat(self, k: int) -> TableModel.State:
            return TableModel.State(self.t.repeat_interleave(k))

        def select(self, rows: torch.Tensor) -> TableModel.State:
            return TableModel.State(self.t[rows])

    def decode_step(self, prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State, None]:
        return self.table[state.t, prev], TableModel.State(state.t + 1), None

    def brute_force(self, limit: int, alpha: float) -> list[tuple[float, list[int]]]:
        """Every output of at most `limit` tokens (<eos> included), scored like beam search."""
        real = [i for i in range(self.table.shape[-1]) if i not in (PAD_ID, BOS_ID, EOS_ID)]
        out = []
        for n in range(limit):
            for seq in itertools.product(real, repeat=n):
                path = [BOS_ID, *seq, EOS_ID]
                steps = enumerate(itertools.pairwise(path))
                lp = sum(float(self.table[t, a, b]) for t, (a, b) in steps)
                out.append((lp / ((5 + n + 1) / 6) ** alpha, list(seq)))
        return sorted(out, key=lambda x: -x[0])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_equals_exhaustive_search(alpha: float) -> None:
    model, limit = TableModel(seed=1), 4
    truth = model.brute_force(limit, alpha)  # 1 + 4 + 16 + 64 = 85 outputs
    state = TableModel.State(torch.zeros(2, dtype=torch.long))  # two identical sources
    hyps = BeamSearch(beam_size=128, n_best=10, alpha=alpha)(model, state,
                                                             torch.tensor([limit, limit]))
    for hs in hyps:
        assert [h.tokens for h in hs] == [seq for _, seq in truth[:10]]
        assert [h.score for h in hs] == pytest.approx([s for s, _ in truth[:10]], abs=1e-5)
        for h in hs:  # GNMT: score = log p / ((5 + |y|) / 6) ** alpha, |y| counting <eos>
            assert h.score == pytest.approx(h.log_prob / ((5 + len(h.tokens) + 1) / 6) ** alpha)


def test_beam_search_beats_greedy_where_greedy_is_myopic() -> None:
    model, limit = TableModel(seed=3), 4
    g = greedy(model, TableModel.State(torch.zeros(1, dtype=torch.long)), torch.tensor([limit]))
    b = BeamSearch(beam_size=3)(model, TableModel.State(torch.zeros(1, dtype=torch.long)),
                                torch.tensor([limit]))
    best = model.brute_force(limit, 0.0)[0]
    assert b[0][0].tokens == best[1] and b[0][0].log_prob == pytest.approx(best[0], abs=1e-5)
    assert g[0][0].log_prob < best[0] - 1.0  # this table was picked so that greedy loses


def test_unlikely_early_endings_do_not_stop_the_search() -> None:
    """K finished hypotheses are not enough: here every step finalises one unlikely ending
    (a 'b', then <eos>) while the likely output, five 'a's, is still growing."""
    a, b = 4, 5
    probs = torch.full((8, 6, 6), 1e-9)
    probs[:5, [BOS_ID, a], a], probs[:5, [BOS_ID, a], b] = 0.97, 0.02
    probs[5:, a, EOS_ID] = 0.97
    probs[:, b, EOS_ID] = 0.9
    model = TableModel()
    model.table = (probs / probs.sum(-1, keepdim=True)).log()
    state = TableModel.State(torch.zeros(1, dtype=torch.long))
    best = BeamSearch(beam_size=3, alpha=0.6)(model, state, torch.tensor([8]))[0][0]
    assert best.tokens == [a] * 5 and best.log_prob > -0.2


def test_n_best_is_sorted_and_distinct() -> None:
    model = tiny_model(seed=5)
    for hs in model.translate(SOURCES, DecodeConfig(beam_size=6, n_best=6, max_len_b=10)):
        scores = [h.score for h in hs]
        assert len(hs) == 6 and scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hs}) == 6


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_length_limit_is_relative_to_the_source(strategy: str) -> None:
    model = tiny_model(seed=6)
    cfg = DecodeConfig(strategy=strategy, beam_size=3, max_len_a=0.5, max_len_b=1)
    for src, hs in zip(SOURCES, model.translate(SOURCES, cfg), strict=True):
        limit = math.ceil(0.5 * len(src) + 1)
        assert all(len(h.tokens) + 1 <= limit for h in hs)  # <eos> counts
        assert all(h.attention.shape == (len(h.tokens) + 1, len(src)) for h in hs)


def test_sampling_top_k_one_is_greedy_and_seeds_repeat() -> None:
    model = tiny_model(seed=7)
    limit = {"max_len_a": 0.0, "max_len_b": 41}  # <eos> forced after 40 tokens at most
    g = model.translate(SOURCES, DecodeConfig(strategy="greedy", **limit))
    s = model.translate(SOURCES, DecodeConfig(strategy="sample", top_k=1, **limit))
    _same(g, s)
    hot = lambda seed: model.translate(  # noqa: E731
        SOURCES, DecodeConfig(strategy="sample", n_best=2, temperature=3.0, seed=seed))
    first = hot(1)
    _same(first, hot(1))
    assert [[h.tokens for h in hs] for hs in first] != [[h.tokens for h in hs] for hs in hot(2)]
    # the shared sampler (seqlab.sampling) through the conditioned decoder agrees with greedy
    for src, hs in zip(SOURCES, g, strict=True):
        assert model.generate(40, prompt=src, greedy=True).tolist() == hs[0].tokens


def test_decode_config_errors() -> None:
    with pytest.raises(SeqlabError, match=r"n_best must be <= decode\.beam_size"):
        DecodeConfig(beam_size=2, n_best=3)
    with pytest.raises(SeqlabError, match="greedy decoding gives one output"):
        DecodeConfig(strategy="greedy", n_best=2)
    with pytest.raises(SeqlabError, match="top_k must be >= 1"):
        DecodeConfig(strategy="sample", top_k=0)
    assert PAD_ID not in {t for hs in tiny_model().translate(SOURCES) for h in hs
                          for t in h.tokens}
