"""Decoding: greedy, sampling (temperature, top-k, top-p) and batched beam search.

Every strategy drives a model through two calls: ``encode(src, src_len) -> state`` and
``decode_step(prev (N,), state) -> (log-probs (N, V), state, attention (N, S) or None)``, with
``state.repeat(k)`` / ``state.select(rows)`` to copy and reorder hypotheses. Each source has its
own length limit, ``ceil(max_len_a * |source| + max_len_b)`` target tokens, ``<eos>``
included; at the last allowed step ``<eos>`` is forced. Rows never interact, so a source gets
the same output alone or inside a padded batch of any size.

Beam search follows fairseq's bookkeeping (Ott et al. 2019) with GNMT's length penalty
(Wu et al. 2016): a finished hypothesis y scores ``log p(y|x) / ((5 + |y|) / 6) ** alpha``, with
|y| counting ``<eos>``. With beam size 1 it makes exactly the greedy choices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from seqlab.config import check_range
from seqlab.errors import SeqlabError
from seqlab.sampling import SampleConfig, check_sampling, pick
from seqlab.seq2seq.data import BOS_ID, EOS_ID, PAD_ID, length_sorted_batches, pad


@dataclass
class DecodeConfig:
    """How targets are produced at evaluation and translation time."""

    strategy: Literal["beam", "greedy", "sample"] = "beam"  # beam search, argmax, or sampling
    beam_size: int = 5  # hypotheses kept per source (beam)
    n_best: int = 1  # outputs per source: best hypotheses (beam) or independent samples
    length_penalty: float = 0.6  # GNMT alpha; 0 ranks by raw log-probability
    max_len_a: float = 2.0  # target limit: ceil(a * source length + b) tokens, <eos> included
    max_len_b: int = 50
    temperature: float = 1.0  # sample: < 1 sharper, > 1 flatter
    top_k: int | None = None  # sample: keep the k most likely tokens
    top_p: float | None = None  # sample: nucleus of this much probability
    seed: int = 0  # sample: source i, sample n draws from generator (seed, i, n)
    batch_size: int = 64  # sources decoded together (outputs do not depend on it)

    def __post_init__(self) -> None:
        if min(self.beam_size, self.n_best, self.batch_size) < 1:
            raise SeqlabError("decode.beam_size, decode.n_best and decode.batch_size must be "
                              f">= 1, got {self.beam_size}, {self.n_best}, {self.batch_size}")
        if self.strategy == "beam" and self.n_best > self.beam_size:
            raise SeqlabError(f"decode.n_best must be <= decode.beam_size, got {self.n_best} > "
                              f"{self.beam_size}")
        if self.strategy == "greedy" and self.n_best > 1:
            raise SeqlabError(f"greedy decoding gives one output per source, got n_best "
                              f"{self.n_best}; use strategy beam or sample")
        # Limits are computed in float64 and cast to int64: keep them far inside both.
        check_range("decode.max_len_a", self.max_len_a, "in [0, 1000000]")
        check_range("decode.max_len_b", self.max_len_b, "in [-1000000000, 1000000000]")
        if self.max_len_a + self.max_len_b < 1:
            raise SeqlabError(f"decode.max_len_a and decode.max_len_b must allow >= 1 token, "
                              f"got a={self.max_len_a}, b={self.max_len_b}")
        check_range("decode.length_penalty", self.length_penalty, ">= 0")
        check_range("decode.seed", self.seed, ">= 0")  # a SeedSequence entropy word
        check_sampling(self.temperature, self.top_k, self.top_p, prefix="decode.")

    def max_len(self, src_len: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.ceil(self.max_len_a * src_len.double() + self.max_len_b),
                           min=1).long()


@dataclass
class Hypothesis:
    """One output sequence."""

    tokens: list[int]  # target ids, without the final <eos>
    score: float  # what ranks hypotheses: log_prob, length-normalised in beam search
    log_prob: float  # log p(tokens, <eos> | source), in nats
    attention: np.ndarray | None  # (len(tokens) + 1, source length): weights behind each token


def _force_eos(logp: torch.Tensor, t: int, limit: torch.Tensor) -> torch.Tensor:
    """At a row's last allowed step only <eos> may follow (its own log-prob is kept)."""
    at_limit = (t >= limit - 1)[:, None]
    not_eos = torch.arange(logp.shape[-1]) != EOS_ID
    return logp.masked_fill(at_limit & not_eos, float("-inf"))


# --- one path per row: greedy and sampling --------------------------------------------------
def _single_path(model: Any, state: Any, limit: torch.Tensor,
                 choose: Callable[[torch.Tensor], torch.Tensor]) -> list[Hypothesis]:
    """Extend each row by `choose(log-probs)` until <eos> or its limit."""
    N = limit.shape[0]
    prev = torch.full((N,), BOS_ID, dtype=torch.long)
    log_prob, done = torch.zeros(N), torch.zeros(N, dtype=torch.bool)
    steps, weights = [], []
    for t in range(int(limit.max())):
        logp, state, w = model.decode_step(prev, state)  # (N, V)
        logp = _force_eos(logp.float(), t, limit)
        tok = choose(logp).masked_fill(done, PAD_ID)
        log_prob += torch.where(done, 0.0, logp.gather(1, tok[:, None])[:, 0])
        steps.append(tok)
        weights.append(w)
        done |= tok == EOS_ID
        prev = tok
        if bool(done.all()):
            break
    ids = torch.stack(steps, 1)  # (N, T)
    att = torch.stack(weights, 1) if weights[0] is not None else None  # (N, T, S)
    out = []
    for r in range(N):
        n = int((ids[r] != PAD_ID).sum())  # tokens up to and including <eos>
        out.append(Hypothesis(ids[r, : n - 1].tolist(), float(log_prob[r]), float(log_prob[r]),
                              None if att is None else att[r, :n].float().numpy()))
    return out


def greedy(model: Any, state: Any, limit: torch.Tensor) -> list[list[Hypothesis]]:
    return [[h] for h in _single_path(model, state, limit, lambda lp: lp.argmax(-1))]


def sample(model: Any, state: Any, limit: torch.Tensor, cfg: DecodeConfig,
           first_index: Sequence[int]) -> list[list[Hypothesis]]:
    """`cfg.n_best` independent samples per source, each from its own seeded generator."""
    N = cfg.n_best
    gens = [torch.Generator().manual_seed(
        int(np.random.SeedSequence([cfg.seed, int(i), n]).generate_state(1, np.uint64)[0] >> 1))
        for i in first_index for n in range(N)]
    scfg = SampleConfig(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)

    def choose(logp: torch.Tensor) -> torch.Tensor:
        return torch.tensor([pick(row, scfg, g) for row, g in zip(logp, gens, strict=True)])

    flat = _single_path(model, state.repeat(N), limit.repeat_interleave(N), choose)
    return [flat[b * N : (b + 1) * N] for b in range(len(first_index))]


# --- beam search ----------------------------------------------------------------------------
class BeamSearch:
    """Batched beam search with the GNMT length penalty and n-best output.

    Source b owns rows ``b*K .. b*K+K-1``. Each step scores every extension of the K live
    hypotheses, takes the best 2K by log-probability, finalises those among the first K that end
    in ``<eos>`` (scored with the length penalty) and continues with the first K that do not.
    A source is done at its length limit, or once it has K finished hypotheses and its best live
    one, length-normalised at its current length, cannot beat the K-th of them (the usual
    heuristic bound; exact when alpha is 0, since log-probabilities only fall).
    """

    def __init__(self, beam_size: int, n_best: int = 1, alpha: float = 0.0) -> None:
        self.K, self.n_best, self.alpha = beam_size, n_best, alpha

    def penalty(self, length: int) -> float:
        return ((5 + length) / 6) ** self.alpha

    def __call__(self, model: Any, state: Any, limit: torch.Tensor) -> list[list[Hypothesis]]:
        B, K = limit.shape[0], self.K
        state, limit = state.repeat(K), limit.repeat_interleave(K)
        alive = torch.full((B, K), float("-inf"))
        alive[:, 0] = 0.0  # one start hypothesis per source, not K copies of it
        tokens = torch.zeros(B * K, 0, dtype=torch.long)  # (B*K, t)
        history: torch.Tensor | None = None  # (B*K, t, S) attention behind `tokens`
        prev = torch.full((B * K,), BOS_ID, dtype=torch.long)
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(int(limit.max())):
            logp, state, w = model.decode_step(prev, state)  # (B*K, V)
            logp = _force_eos(logp.float(), t, limit).view(B, K, -1)
            V = logp.shape[-1]
            top, idx = (alive[:, :, None] + logp).view(B, K * V).topk(2 * K)  # (B, 2K)
            rows = torch.arange(B)[:, None] * K + idx // V  # (B, 2K) the row extended
            tok = idx % V
            if w is not None:
                w = w.float()
                history = w[:, None] if history is None else torch.cat([history, w[:, None]], 1)
            self._finalise(finished, done, top, rows, tok, tokens, history, t)
            # continue with the first K candidates that do not end in <eos>
            rank = torch.arange(2 * K) + 2 * K * (tok == EOS_ID)
            keep = rank.topk(K, largest=False).indices  # (B, K), in rank order
            alive = top.gather(1, keep)
            done |= self._settled(finished, alive, t) | (t >= limit.view(B, K)[:, 0] - 1)
            if bool(done.all()):
                break
            alive = alive.masked_fill(done[:, None], float("-inf"))
            src_rows = rows.gather(1, keep).view(-1)
            prev = tok.gather(1, keep).view(-1)
            tokens = torch.cat([tokens[src_rows], prev[:, None]], 1)
            history = None if history is None else history[src_rows]
            state = state.select(src_rows)
        return [sorted(f, key=lambda h: -h.score)[: self.n_best] for f in finished]

    def _settled(self, finished: list[list[Hypothesis]], alive: torch.Tensor, t: int
                 ) -> torch.Tensor:
        """(B,) whether a source has K finished hypotheses that its best live one, scored at
        its current length, no longer beats. Waiting for K finished ones alone is not enough:
        unlikely early <eos> endings would end the search while a far better hypothesis is
        still growing (on SCAN that cost 70 points of exact match)."""
        kth = torch.tensor([sorted((h.score for h in f), reverse=True)[self.K - 1]
                            if len(f) >= self.K else float("-inf") for f in finished])
        return alive.max(1).values / self.penalty(t + 1) <= kth

    def _finalise(self, finished: list[list[Hypothesis]], done: torch.Tensor, top: torch.Tensor,
                  rows: torch.Tensor, tok: torch.Tensor, tokens: torch.Tensor,
                  history: torch.Tensor | None, t: int) -> None:
        """Move <eos>-ending candidates ranked within the first K into `finished`."""
        K = self.K
        ends = (tok[:, :K] == EOS_ID) & torch.isfinite(top[:, :K]) & ~done[:, None]
        for b, j in ends.nonzero().tolist():
            r, lp = int(rows[b, j]), float(top[b, j])
            finished[b].append(Hypothesis(
                tokens[r].tolist(), lp / self.penalty(t + 1), lp,
                None if history is None else history[r].numpy()))


# --- the entry point ------------------------------------------------------------------------
def decode(model: Any, state: Any, limit: torch.Tensor, cfg: DecodeConfig,
           first_index: Sequence[int]) -> list[list[Hypothesis]]:
    """Hypotheses for one encoded batch; `first_index` numbers the sources (sampling seeds)."""
    if cfg.strategy == "greedy":
        return greedy(model, state, limit)
    if cfg.strategy == "sample":
        return sample(model, state, limit, cfg, first_index)
    return BeamSearch(cfg.beam_size, cfg.n_best, cfg.length_penalty)(model, state, limit)


def translate(model: Any, sources: Sequence[np.ndarray], cfg: DecodeConfig
              ) -> list[list[Hypothesis]]:
    """Decode id sequences in length-sorted batches; results come back in input order."""
    lengths = np.array([len(s) for s in sources], dtype=np.int64)
    if len(sources) and lengths.min() < 1:
        raise SeqlabError("expected non-empty sources, got an empty one")
    out: list[list[Hypothesis]] = [[] for _ in sources]
    for idx in length_sorted_batches(lengths, cfg.batch_size):
        src_len = torch.from_numpy(lengths[idx])
        state = model.encode(pad([sources[i] for i in idx]), src_len)
        hyps = decode(model, state, cfg.max_len(src_len), cfg, idx.tolist())
        for i, n, h in zip(idx, src_len.tolist(), hyps, strict=True):
            for hyp in h:
                hyp.attention = None if hyp.attention is None else hyp.attention[:, :n]
            out[i] = h
    return out

