"""n-gram language model with interpolated modified Kneser-Ney smoothing.

References: Chen & Goodman (1998), "An empirical study of smoothing techniques for language
modeling", section 3 (modified KN); Heafield et al. (2013), "Scalable modified Kneser-Ney
language model estimation" (KenLM's ``lmplz``), for adjusted counts and sentence boundaries.

    p_k(w | h) = (a(hw) - D_k(a(hw))) / A(h) + gamma(h) p_{k-1}(w | h'),   h' = h minus its first
    gamma(h)   = (D_k1 N1(h) + D_k2 N2(h) + D_k3 N3+(h)) / A(h),            p_0(w) = 1 / |V|

where a are raw counts at the highest order and continuation ("adjusted") counts below it: the
number of distinct tokens seen before the n-gram, plus one per occurrence that has no left
extension (it starts the stream, or starts a sentence in ``reset_at_eos`` mode, where those
n-grams keep their raw counts, as KenLM's <s> n-grams do). The discounts come from counts of
counts, D_kj = j - (j + 1) Y n_{j+1} / n_j with Y = n_1 / (n_1 + 2 n_2). A context never seen
gets gamma = 1, so every context, seen or unseen, has an exact distribution that sums to one,
and every token (``<unk>`` included) gets non-zero probability through the uniform p_0.

Counting works on id arrays with numpy, not dicts of tuples. An n-gram is keyed by
``id(its first n-1 tokens) * |V| + last token``, where ids are positions in the sorted key table of
the order below, so keys stay small and all continuations of a context are one contiguous range.
Unigram ids are the token ids themselves.

With ``reset_at_eos`` (the sentence mode of SRILM and KenLM), contexts never reach across an
end-of-line token: the token after ``<eos>`` sees the context ``<eos>``, which plays ``<s>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.io import save_tensors
from seqlab.models.base import TokenModel
from seqlab.protocol import split_lengths
from seqlab.run import Run


@dataclass
class NGramConfig:
    """Settings of the Kneser-Ney n-gram."""

    order: int = 5  # n: the model conditions on the previous n-1 tokens
    reset_at_eos: bool = False  # sentence mode: contexts never span an end-of-line token
    discount_fallback: tuple[float, float, float] = (0.5, 1.0, 1.5)  # when counts of counts fail

    def __post_init__(self) -> None:
        if self.order < 1:
            raise SeqlabError(f"model.order must be >= 1, got {self.order}")


@dataclass
class _Positions:
    """A token array laid out for counting or scoring: ``s[t]`` with virtual boundaries."""

    s: np.ndarray  # (N,) int64 tokens; boundary positions hold eos
    barrier: np.ndarray  # (N,) bool: True at the virtual boundary before each sequence


class NGramLM(TokenModel):
    family = "ngram"
    Config = NGramConfig

    def __init__(self, config: NGramConfig, vocab: Vocab) -> None:
        self.config, self.vocab = config, vocab
        self.name = "ngram"

    # --- counting ------------------------------------------------------------------------
    def fit(self, X: np.ndarray, lengths: list[int] | None = None, *,
            valid: np.ndarray | None = None, run: Run | None = None) -> Self:
        """Count n-grams of `X` and estimate the modified Kneser-Ney model."""
        pos = self._layout(X, lengths)
        n, V = self.config.order, len(self.vocab)
        ids, valid_at = self._gram_ids(pos, lookup=None)  # per order: ids of every occurrence
        self.keys_: list[np.ndarray] = [np.arange(V, dtype=np.int64)]
        raw: list[np.ndarray] = [np.bincount(pos.s[~pos.barrier], minlength=V)]
        for k in range(2, n + 1):
            self.keys_.append(ids[k][1])
            raw.append(ids[k][2])
        self.counts_ = [
            raw[k - 1] if k == n else self._adjusted(k, pos.s, ids, valid_at)
            for k in range(1, n + 1)
        ]
        self.discounts_ = np.array([self._discounts(c) for c in self.counts_])  # (n, 3)
        self._context_stats()
        if run is not None and run.best_path is not None:
            self.save(run.best_path)  # counting has no "last": the fitted model is the best
        if run is not None:
            run.log({"kind": "fit", "step": 0, "order": n, "tokens": int((~pos.barrier).sum()),
                     "ngrams": [int((c > 0).sum()) for c in self.counts_]})
        return self

    def _layout(self, X: np.ndarray, lengths: list[int] | None) -> _Positions:
        segs = split_lengths(np.asarray(X), lengths)
        eos = self.vocab.eos_id
        s = np.concatenate([np.concatenate([[eos], seg]) for seg in segs]).astype(np.int64)
        if len(s) and (s.min() < 0 or s.max() >= len(self.vocab)):
            raise SeqlabError(f"token ids must be in [0, {len(self.vocab)}), got range "
                              f"[{s.min()}, {s.max()}]")
        barrier = np.zeros(len(s), dtype=bool)
        barrier[np.cumsum([0, *[len(g) + 1 for g in segs[:-1]]])] = True
        return _Positions(s, barrier)

    def _gram_ids(self, pos: _Positions, lookup: list[np.ndarray] | None
                  ) -> tuple[dict[int, Any], dict[int, np.ndarray]]:
        """Dense ids of the k-gram ending at every position, k = 1..n (-1 where none).

        Counting (``lookup=None``) builds the key tables; scoring looks keys up in ``lookup``.
        Returns, per order k >= 2, (ids, sorted unique keys, raw counts, first positions) when
        counting, or ids alone when scoring; and per order the validity mask.
        """
        s, barrier, V = pos.s, pos.barrier, len(self.vocab)
        eos, N = self.vocab.eos_id, len(s)
        prev_ids, out, valid_at = s.copy(), {}, {1: ~barrier}  # unigram id = token id
        for k in range(2, self.config.order + 1):
            ok = np.zeros(N, dtype=bool)
            ok[1:] = (prev_ids[:-1] >= 0) & ~barrier[1:]
            if k >= 3 and self.config.reset_at_eos:
                ok[1:] &= s[:-1] != eos  # eos may only open an n-gram (as <s>) or close it
            t = np.flatnonzero(ok)
            keys = prev_ids[t - 1] * V + s[t]
            ids = np.full(N, -1, dtype=np.int64)
            if lookup is None:
                uniq, first, inv, cnt = np.unique(keys, return_index=True, return_inverse=True,
                                                  return_counts=True)
                ids[t] = inv
                out[k] = (ids, uniq, cnt, t[first])
            else:
                table = lookup[k - 1]
                j = np.minimum(np.searchsorted(table, keys), max(len(table) - 1, 0))
                hit = (table[j] == keys) if len(table) else np.zeros(len(keys), dtype=bool)
                ids[t[hit]] = j[hit]
                out[k] = ids
            valid_at[k] = ids >= 0 if lookup is None else ok
            prev_ids = ids
        return out, valid_at

    def _adjusted(self, k: int, s: np.ndarray, ids: dict[int, Any],
                  valid_at: dict[int, np.ndarray]) -> np.ndarray:
        """Continuation counts of the k-grams: distinct left extensions + unextendable uses."""
        ids_k = s if k == 1 else ids[k][0]  # unigram ids are token ids
        first_pos = ids[k + 1][3]  # one position per distinct (k+1)-gram; its suffix is a k-gram
        lonely = valid_at[k] & ~valid_at[k + 1]  # occurrences with no valid left extension
        size = len(self.keys_[k - 1])
        return (np.bincount(ids_k[first_pos], minlength=size)
                + np.bincount(ids_k[lonely], minlength=size))

    def _discounts(self, counts: np.ndarray) -> np.ndarray:
        n = np.bincount(np.minimum(counts, 4), minlength=5)[1:5].astype(np.float64)  # n1..n4
        fallback = np.array(self.config.discount_fallback)
        if np.any(n == 0):
            return fallback
        y = n[0] / (n[0] + 2 * n[1])
        d = np.array([j - (j + 1) * y * n[j] / n[j - 1] for j in (1, 2, 3)])
        ok = (d > 0) & (d <= np.array([1, 2, 3]))
        return np.where(ok, d, fallback)

    def _context_stats(self) -> None:
        """Per context h of each order: A(h) = sum of counts, and gamma(h)."""
        V = len(self.vocab)
        self.ctx_total_, self.ctx_gamma_ = [], []
        for k, (keys, counts, d) in enumerate(
                zip(self.keys_, self.counts_, self.discounts_, strict=True), start=1):
            n_ctx = 1 if k == 1 else len(self.keys_[k - 2])
            ctx = np.zeros(len(keys), dtype=np.int64) if k == 1 else keys // V
            seen = counts > 0
            disc = np.where(seen, d[np.clip(counts, 1, 3) - 1], 0.0)
            total = np.bincount(ctx, weights=counts, minlength=n_ctx)
            mass = np.bincount(ctx, weights=disc, minlength=n_ctx)
            self.ctx_total_.append(total)
            self.ctx_gamma_.append(np.divide(mass, total, out=np.ones(n_ctx), where=total > 0))

    def _check_fitted(self) -> None:
        if not hasattr(self, "keys_"):
            raise SeqlabError("this n-gram model is not fitted yet; call fit() first")

    # --- scoring -------------------------------------------------------------------------
    def log_prob(self, X: np.ndarray, lengths: list[int] | None = None) -> np.ndarray:
        """log p(x_t | previous n-1 tokens), for every token, vectorised over positions."""
        self._check_fitted()
        pos = self._layout(X, lengths)
        ids, valid_at = self._gram_ids(pos, lookup=self.keys_)
        t = np.flatnonzero(~pos.barrier)  # predicted positions
        w = pos.s[t]
        p = np.full(len(t), 1.0 / len(self.vocab))
        for k in range(1, self.config.order + 1):
            if k == 1:
                ctx = np.zeros(len(t), dtype=np.int64)
                gram = w
            else:
                ctx = (pos.s if k == 2 else ids[k - 1])[t - 1]
                ok = valid_at[k][t] & (ctx >= 0)
                gram = np.where(ok, ids[k][t], -1)
                ctx = np.where(ok, ctx, -1)
            p = self._interpolate(k, ctx, gram, p)
        return np.log(p)

    def _interpolate(self, k: int, ctx: np.ndarray, gram: np.ndarray, lower: np.ndarray
                     ) -> np.ndarray:
        """One level of the recursion for many (context id, n-gram id) pairs; -1 = unseen."""
        total = np.where(ctx >= 0, self.ctx_total_[k - 1][np.maximum(ctx, 0)], 0.0)
        gamma = np.where(total > 0, self.ctx_gamma_[k - 1][np.maximum(ctx, 0)], 1.0)
        a = np.where(gram >= 0, self.counts_[k - 1][np.maximum(gram, 0)], 0)
        d = np.where(a > 0, self.discounts_[k - 1][np.clip(a, 1, 3) - 1], 0.0)
        own = np.divide(a - d, total, out=np.zeros(len(total)), where=total > 0)
        return own + gamma * lower

    # --- incremental interface -----------------------------------------------------------
    def initial_state(self) -> tuple[int, ...]:
        return ()

    def step(self, token: int, state: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Append `token` to the context; return log-probabilities of the next token."""
        n = self.config.order
        ctx = (*state, int(token))[-(n - 1):] if n > 1 else ()
        if self.config.reset_at_eos and self.vocab.eos_id in ctx[1:]:
            last = len(ctx) - 1 - ctx[::-1].index(self.vocab.eos_id)
            ctx = ctx[last:]
        return torch.from_numpy(np.log(self.distribution(ctx))), ctx

    def distribution(self, context: tuple[int, ...]) -> np.ndarray:
        """p(. | context) over the whole vocabulary; sums to one for any context."""
        self._check_fitted()
        V = len(self.vocab)
        p = np.full(V, 1.0 / V)
        ctx_ids = self._context_ids(context)
        for k in range(1, self.config.order + 1):
            c = ctx_ids[k - 1]
            if c < 0 or self.ctx_total_[k - 1][c] <= 0:
                continue
            keys, counts = self.keys_[k - 1], self.counts_[k - 1]
            lo, hi = (0, V) if k == 1 else np.searchsorted(keys, [c * V, (c + 1) * V])
            a = counts[lo:hi]
            d = np.where(a > 0, self.discounts_[k - 1][np.clip(a, 1, 3) - 1], 0.0)
            p *= self.ctx_gamma_[k - 1][c]
            p[keys[lo:hi] % V] += (a - d) / self.ctx_total_[k - 1][c]
        return p

    def _context_ids(self, context: tuple[int, ...]) -> list[int]:
        """Ids of the context suffixes of length 0..n-1 (-1 where unseen or too short)."""
        return [0] + [self._lookup_suffix(context[-m:]) if m <= len(context) else -1
                      for m in range(1, self.config.order)]

    def _lookup_suffix(self, gram: tuple[int, ...]) -> int:
        V, gid = len(self.vocab), int(gram[0])
        for k, tok in enumerate(gram[1:], start=2):
            table = self.keys_[k - 1]
            key = gid * V + int(tok)
            j = int(np.searchsorted(table, key))
            if j >= len(table) or table[j] != key:
                return -1
            gid = j
        return gid

    # --- persistence ---------------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors: dict[str, np.ndarray] = {"discounts": self.discounts_}
        for k in range(self.config.order):
            tensors[f"keys.{k + 1}"] = self.keys_[k]
            tensors[f"counts.{k + 1}"] = np.asarray(self.counts_[k], dtype=np.int64)
        return tensors, self.describe()

    def save(self, path: str | Path) -> None:
        save_tensors(path, *self.checkpoint())

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        model = cls(cls.config_from(meta), Vocab.from_json(meta["vocab"]))
        n = model.config.order
        try:
            model.keys_ = [tensors[f"keys.{k}"].numpy() for k in range(1, n + 1)]
            model.counts_ = [tensors[f"counts.{k}"].numpy() for k in range(1, n + 1)]
            model.discounts_ = tensors["discounts"].numpy()
        except KeyError as e:
            raise SeqlabError(f"n-gram checkpoint is missing the array {e}") from None
        model._context_stats()
        return model
