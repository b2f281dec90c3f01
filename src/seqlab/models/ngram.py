"""n-gram language model with interpolated modified Kneser-Ney smoothing, at KenLM fidelity.

References: Chen & Goodman (1998), "An empirical study of smoothing techniques for language
modeling", section 3 (modified KN); Heafield et al. (2013), "Scalable modified Kneser-Ney
language model estimation" (KenLM's ``lmplz``), whose rules this module reproduces; the ARPA
back-off format as written by SRILM and KenLM.

    p_k(w | h) = (a(hw) - D_k(a(hw))) / A(h) + gamma(h) p_{k-1}(w | h'),   h' = h minus its first
    gamma(h)   = (D_k1 N1(h) + D_k2 N2(h) + D_k3 N3+(h)) / A(h),            p_0(w) = 1 / |V|

where a are raw counts at the highest order and continuation ("adjusted") counts below it: the
number of distinct tokens seen before the n-gram, plus one per occurrence that has no left
extension (it starts the stream, or starts a sentence in ``reset_at_eos`` mode, where those
n-grams keep their raw counts, as KenLM's <s> n-grams do). A(h) sums a(hw) over w. The discounts
come from counts of counts of each order, n_j = #{n-grams with a = j} for j = 1..4 exactly:
D_kj = j - (j + 1) Y n_{j+1} / n_j with Y = n_1 / (n_1 + 2 n_2), computed in float32 as lmplz
does. When n_1, n_2 or n_3 is zero or a discount leaves [0, j], the whole order falls back to
``discount_fallback`` (lmplz ``--discount_fallback``; lmplz without it stops with an error).
p_0 is uniform over the vocabulary (``<unk>`` and end-of-line included; lmplz's vocabulary is
the training types plus <unk>, </s>, and its uniform excludes <s>), so ``<unk>`` gets
gamma(empty) / |V| (lmplz ``--interpolate_unigrams``, its default). No pruning (lmplz's
default).

Sentence mode (``reset_at_eos``) is KenLM's treatment of lines: the end-of-line token is
``</s>`` when predicted and ``<s>`` when in context. Contexts never reach across it, the token
after it sees the context ``<s>``, and n-grams that open with it keep raw counts at every order.

After counting, the model is turned into back-off form, the form of an ARPA file: for every
stored n-gram its interpolated probability, and for every n-gram that is a context its
back-off weight gamma. Scoring reads only these tables, so a model read from an ARPA file
(lmplz's, say) and a model fitted here score the same way, and
``p(w | h) = p(hw)`` when hw is stored, else ``bo(h) p(w | h')``.

Counting works on id arrays with numpy, not dicts of tuples. An n-gram is keyed by
``id(its first n-1 tokens) * |V| + last token``, where ids are positions in the sorted key table
of the order below, so keys stay small and all continuations of a context are one contiguous
range. Unigram ids are the token ids themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, cast

import numba as nb
import numpy as np
import torch

from seqlab.config import check_range
from seqlab.data.vocab import EOS, UNK, Level, Vocab
from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, save_tensors
from seqlab.models.base import TokenModel
from seqlab.protocol import split_lengths
from seqlab.run import Run

LN10 = math.log(10.0)
ARPA_IMPOSSIBLE = -99.0  # log10 probability SRILM and KenLM write for "never" (e.g. <s>)


@dataclass
class NGramConfig:
    """Settings of the Kneser-Ney n-gram (defaults follow KenLM's lmplz)."""

    order: int = 5  # n: the model conditions on the previous n-1 tokens
    reset_at_eos: bool = False  # sentence mode: contexts never span an end-of-line token
    discount_fallback: tuple[float, float, float] = (0.5, 1.0, 1.5)  # D1, D2, D3+ when n_j fail
    interpolate_unigrams: bool = True  # False: <unk> takes the unigram back-off mass (SRILM)

    def __post_init__(self) -> None:
        if self.order < 1:
            raise SeqlabError(f"model.order must be >= 1, got {self.order}")
        if len(self.discount_fallback) != 3:
            raise SeqlabError("model.discount_fallback must hold 3 discounts (D1, D2, D3+), got "
                              f"{len(self.discount_fallback)}")
        for j, d in enumerate(self.discount_fallback, 1):  # D_j <= j, as kenlm_discounts demands
            check_range(f"model.discount_fallback[{j - 1}]", d, f"in [0, {j}]")


@dataclass
class _Positions:
    """A token array laid out for counting or scoring: ``s[t]`` with virtual boundaries."""

    s: np.ndarray  # (N,) int64 tokens; boundary positions hold eos
    barrier: np.ndarray  # (N,) bool: True at the virtual boundary before each sequence


def _lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Positions of `keys` in the sorted `table`, -1 where absent."""
    if len(table) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    j = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return np.where(table[j] == keys, j, -1)


@nb.njit(cache=True)
def _find_grams(keys: np.ndarray, starts: np.ndarray, prev: np.ndarray, tok: np.ndarray,
                V: int) -> np.ndarray:
    """Ids of the n-grams (prev id, token) in the sorted table `keys`, -1 where absent.

    ``starts[c]`` is where context c's continuations begin, so each search is a binary search
    in one context's short range rather than in the whole table (fewer cache misses).
    """
    out = np.full(len(prev), -1, dtype=np.int64)
    for i in range(len(prev)):
        c = prev[i]
        if c < 0 or c + 1 >= len(starts):
            continue
        lo, hi, key = starts[c], starts[c + 1], c * V + tok[i]
        end = hi
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < end and keys[lo] == key:
            out[i] = lo
    return out


@nb.njit(cache=True)
def _counting_sort(keys: np.ndarray, n_keys: int, idx: np.ndarray) -> np.ndarray:
    """The positions `idx` stably sorted by keys[idx] (keys in [0, n_keys)): O(len + n_keys)."""
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for i in idx:
        start[keys[i] + 1] += 1
    for v in range(n_keys):
        start[v + 1] += start[v]
    out = np.empty(len(idx), dtype=np.int64)
    for i in idx:
        out[start[keys[i]]] = i
        start[keys[i]] += 1
    return out


@nb.njit(cache=True)
def _count_grams(prev: np.ndarray, tok: np.ndarray, n_prev: int, V: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct n-grams (prev id, token) of a list of occurrences, like ``np.unique`` on the
    keys prev * V + tok with return_index/inverse/counts, but by two stable counting sorts
    (by token, then by prev id): O(N + V + n_prev) instead of a comparison sort, the bulk of
    counting time. Returns sorted keys, first occurrence of each, id of every occurrence, and
    counts.
    """
    N = len(tok)
    order = _counting_sort(prev, n_prev, _counting_sort(tok, V, np.arange(N)))
    keys, first, counts = np.empty(N, dtype=np.int64), np.empty(N, dtype=np.int64), \
        np.zeros(N, dtype=np.int64)
    inv = np.empty(N, dtype=np.int64)
    g = -1
    for j in range(N):
        i = order[j]
        key = prev[i] * V + tok[i]
        if g < 0 or key != keys[g]:
            g += 1
            keys[g], first[g] = key, i  # stable sorts: the first in sorted order comes first
        counts[g] += 1
        inv[i] = g
    return keys[: g + 1], first[: g + 1], inv, counts[: g + 1]


def kenlm_discounts(counts: np.ndarray, fallback: tuple[float, float, float]) -> np.ndarray:
    """D1, D2, D3+ of one order from its adjusted counts, in float32 like lmplz."""
    n = np.bincount(np.minimum(counts, 5), minlength=6)[1:5].astype(np.float32)  # n1..n4
    if np.any(n[:3] == 0):
        return np.array(fallback, dtype=np.float64)
    f32 = np.float32
    y = f32(n[0] / np.float64(n[0] + 2.0 * np.float64(n[1])))
    d = np.array([f32(j) - f32(j + 1) * y * n[j] / n[j - 1] for j in (1, 2, 3)], dtype=np.float32)
    if np.any(d < 0) or np.any(d > np.array([1, 2, 3])):
        return np.array(fallback, dtype=np.float64)
    return d.astype(np.float64)


class NGramLM(TokenModel):
    family = "ngram"
    Config = NGramConfig

    def __init__(self, config: NGramConfig, vocab: Vocab) -> None:
        self.config, self.vocab = config, vocab
        self.name = "ngram"

    # --- counting ------------------------------------------------------------------------
    def fit(self, X: np.ndarray, lengths: list[int] | None = None, *,
            valid: np.ndarray | None = None, run: Run | None = None) -> Self:
        """Count n-grams of `X`, estimate modified Kneser-Ney and its back-off tables."""
        pos = self._layout(X, lengths)
        n, V = self.config.order, len(self.vocab)
        ids, valid_at = self._gram_ids(pos, count=True)  # per order: ids of every occurrence
        self.keys_: list[np.ndarray] = [np.arange(V, dtype=np.int64)]
        raw: list[np.ndarray] = [np.bincount(pos.s[~pos.barrier], minlength=V)]
        for k in range(2, n + 1):
            self.keys_.append(ids[k][1])
            raw.append(ids[k][2])
        self.counts_ = [
            raw[k - 1] if k == n else self._adjusted(k, pos.s, ids, valid_at)
            for k in range(1, n + 1)
        ]
        fb = self.config.discount_fallback
        stats = self._kenlm_flush_quirk(pos, raw) if self.config.reset_at_eos else self.counts_
        self.discounts_ = np.array([kenlm_discounts(c, fb) for c in stats])  # (n, 3)
        # the suffix of a k-gram ends where it ends: read its id at one occurrence
        suffixes = {k: (pos.s if k == 2 else ids[k - 1][0])[ids[k][3]] for k in range(2, n + 1)}
        self._backoff_tables(suffixes)
        if run is not None:
            run.log({"kind": "fit", "step": 0, "order": n, "tokens": int((~pos.barrier).sum()),
                     "ngrams": [int((c > 0).sum()) for c in self.counts_],
                     "discounts": self.discounts_.tolist()})
        return self

    def _layout(self, X: np.ndarray, lengths: list[int] | None) -> _Positions:
        X = np.asarray(X)
        if X.ndim != 1 or not (np.issubdtype(X.dtype, np.integer) or X.size == 0):
            raise SeqlabError(f"expected a 1-D array of integer token ids, got dtype {X.dtype} "
                              f"and shape {X.shape}")
        segs = split_lengths(X, lengths)
        eos = self.vocab.eos_id
        s = np.concatenate([np.concatenate([[eos], seg]) for seg in segs]).astype(np.int64)
        if len(s) and (s.min() < 0 or s.max() >= len(self.vocab)):
            raise SeqlabError(f"token ids must be in [0, {len(self.vocab)}), got range "
                              f"[{s.min()}, {s.max()}]")
        barrier = np.zeros(len(s), dtype=bool)
        barrier[np.cumsum([0, *[len(g) + 1 for g in segs[:-1]]])] = True
        return _Positions(s, barrier)

    def _gram_ids(self, pos: _Positions, count: bool
                  ) -> tuple[dict[int, Any], dict[int, np.ndarray]]:
        """Dense ids of the k-gram ending at every position, k = 1..n (-1 where none).

        Counting (``count``) builds the key tables; scoring looks the n-grams up in them.
        Returns, per order k >= 2, (ids, sorted unique keys, raw counts, first positions) when
        counting, or ids alone when scoring; and per order the mask of positions where a k-gram
        may end (it crosses no boundary and, in sentence mode, has eos only first or last).
        """
        s, barrier, V = pos.s, pos.barrier, len(self.vocab)
        eos, N = self.vocab.eos_id, len(s)
        prev_ok = ~barrier | True  # a unigram may sit anywhere (at a boundary it is <s>)
        prev_ids, valid_at = s.copy(), {1: ~barrier}  # unigram id = token id
        out: dict[int, Any] = {}  # a tuple per order when counting, ids alone when scoring
        for k in range(2, self.config.order + 1):
            ok = np.zeros(N, dtype=bool)
            ok[1:] = prev_ok[:-1] & (prev_ids[:-1] >= 0) & ~barrier[1:]
            if k >= 3 and self.config.reset_at_eos:
                ok[1:] &= s[:-1] != eos  # eos may only open an n-gram (as <s>) or close it
            t = np.flatnonzero(ok)
            ids = np.full(N, -1, dtype=np.int64)
            if count:
                n_prev = int(prev_ids.max()) + 1 if len(t) else 0
                uniq, first, inv, cnt = _count_grams(prev_ids[t - 1], s[t], n_prev, V)
                ids[t] = inv
                out[k] = (ids, uniq, cnt, t[first])
            else:
                ids[t] = _find_grams(self.keys_[k - 1], self._context_starts(k), prev_ids[t - 1],
                                     s[t], V)
                out[k] = ids
            valid_at[k] = ok
            prev_ids, prev_ok = ids, ok
        return out, valid_at

    def _context_starts(self, k: int) -> np.ndarray:
        """Where each (k-1)-gram's continuations start in the order-k table (cached)."""
        cache = self.__dict__.setdefault("_starts", {})
        keys = self.keys_[k - 1]
        if k not in cache or cache[k][0] is not keys:
            n_ctx = len(self.keys_[k - 2])
            cache[k] = (keys, np.searchsorted(keys, np.arange(n_ctx + 1) * len(self.vocab)))
        return cache[k][1]

    def _adjusted(self, k: int, s: np.ndarray, ids: dict[int, Any],
                  valid_at: dict[int, np.ndarray]) -> np.ndarray:
        """Continuation counts of the k-grams: distinct left extensions + unextendable uses."""
        ids_k = s if k == 1 else ids[k][0]  # unigram ids are token ids
        first_pos = ids[k + 1][3]  # one position per distinct (k+1)-gram; its suffix is a k-gram
        lonely = valid_at[k] & ~valid_at[k + 1]  # occurrences with no valid left extension
        size = len(self.keys_[k - 1])
        return (np.bincount(ids_k[first_pos], minlength=size)
                + np.bincount(ids_k[lonely], minlength=size))

    def _kenlm_flush_quirk(self, pos: _Positions, raw: list[np.ndarray]) -> list[np.ndarray]:
        """The counts lmplz's counts of counts see: adjusted counts but for one n-gram per order.

        lmplz streams the padded highest-order n-grams in suffix order (its word ids: <unk> 0,
        <s> 1, </s> 2, then words by first appearance) and, after the last one, records the
        suffixes still pending with their raw counts instead of their adjusted counts
        (adjust_counts.cc, the loop after the main one). Reproduced so that discounts match.
        """
        s, n, V, eos = pos.s, self.config.order, len(self.vocab), self.vocab.eos_id
        words = ~pos.barrier & (s != eos)
        if n == 1 or not words.any():
            return self.counts_
        at = np.flatnonzero(words)
        first = np.full(V, len(s))
        first[s[at[::-1]]] = at[::-1]  # repeated indices: the last write, the first position, wins
        types = np.flatnonzero(first < len(s))
        kid = np.zeros(V, dtype=np.int64)
        kid[types[np.argsort(first[types])]] = np.arange(3, 3 + len(types))
        kid[eos] = 2
        occ = np.flatnonzero(words & (s == types[np.argmax(kid[types])]))
        mat, started = np.empty((len(occ), n), dtype=np.int64), np.zeros(len(occ), dtype=bool)
        for j in range(n):  # column n-1-j holds the token j steps back; <s> pads the start
            t = np.maximum(occ - j, 0)
            started |= (j > 0) & ((s[t] == eos) | pos.barrier[t] | (occ - j < 0))
            mat[:, n - 1 - j] = np.where(started, 1, kid[s[t]])
        last = mat[np.lexsort(mat.T)[-1]]  # the largest in suffix order
        bos = np.flatnonzero(last == 1)
        stats = [c.copy() for c in self.counts_]
        for k in range(1, n - max(1, bos[-1] if len(bos) else 1) + 1):
            g = [eos if x == 1 else int(np.argmax(kid == x)) for x in last[n - k:]]
            gid = g[0] if k == 1 else self._lookup_suffix(tuple(g))
            stats[k - 1][gid] = raw[k - 1][gid]
        return stats

    # --- back-off form -------------------------------------------------------------------
    def _backoff_tables(self, suffixes: dict[int, np.ndarray] | None = None) -> None:
        """Interpolated log-probabilities of every stored n-gram and back-offs of contexts.

        `suffixes` (from counting) gives, per order k, the id of each k-gram's suffix (its last
        k-1 tokens); without it, the suffixes are looked up in the tables.
        """
        V = len(self.vocab)
        probs, self.logbo_, sfx = [self._unigram_probs()], [], np.zeros(0, dtype=np.int64)
        for k in range(2, self.config.order + 1):
            keys, a, d = self.keys_[k - 1], self.counts_[k - 1], self.discounts_[k - 1]
            ctx, last = keys // V, keys % V
            if suffixes is not None:
                sfx = suffixes[k]
            else:
                sfx = last if k == 2 else _lookup(self.keys_[k - 2], sfx[ctx] * V + last)
            assert np.all(sfx >= 0), "every suffix of a counted n-gram is counted"
            total, gamma = self._context_sums(k, ctx, a, d)
            own = (a - np.where(a > 0, d[np.clip(a, 1, 3) - 1], 0.0)) / total[ctx]
            probs.append(own + gamma[ctx] * probs[-1][sfx])
            self.logbo_.append(np.log(gamma))  # (k-1)-grams as contexts; 0 where none
        self.logp_ = [np.log(p) for p in probs]

    def _unigram_probs(self) -> np.ndarray:
        a, d = self.counts_[0], self.discounts_[0]
        total, gamma = self._context_sums(1, np.zeros(len(a), dtype=np.int64), a, d)
        p = (a - np.where(a > 0, d[np.clip(a, 1, 3) - 1], 0.0)) / max(total[0], 1.0)
        if self.config.interpolate_unigrams or not np.any(a == 0):
            return p + gamma[0] / len(a)
        return p + np.where(a == 0, gamma[0] / np.count_nonzero(a == 0), 0.0)  # to zerotons

    def _context_sums(self, k: int, ctx: np.ndarray, a: np.ndarray, d: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """A(h) and gamma(h) of every context of order k (gamma = 1 where A(h) = 0)."""
        n_ctx = 1 if k == 1 else len(self.keys_[k - 2])
        disc = np.where(a > 0, d[np.clip(a, 1, 3) - 1], 0.0)
        total = np.bincount(ctx, weights=a, minlength=n_ctx)
        mass = np.bincount(ctx, weights=disc, minlength=n_ctx)
        return total, np.divide(mass, total, out=np.ones(n_ctx), where=total > 0)

    def _check_fitted(self) -> None:
        if not hasattr(self, "logp_"):
            raise SeqlabError("this n-gram model is not fitted yet; call fit() first")

    # --- scoring -------------------------------------------------------------------------
    def log_prob(self, X: np.ndarray, lengths: list[int] | None = None) -> np.ndarray:
        """log p(x_t | previous n-1 tokens) for every token: KenLM's back-off lookup, vectorised.

        The longest stored n-gram ending at t gives the probability; every longer context
        ending at t-1 that is stored (but not followed by x_t) multiplies in its back-off.
        """
        self._check_fitted()
        pos = self._layout(X, lengths)
        ids, _ = self._gram_ids(pos, count=False)
        t = np.flatnonzero(~pos.barrier)  # predicted positions
        out, done = np.zeros(len(t)), np.zeros(len(t), dtype=bool)
        for k in range(self.config.order, 0, -1):
            g = pos.s[t] if k == 1 else ids[k][t]
            hit = ~done & (g >= 0)
            out[hit] += self.logp_[k - 1][g[hit]]
            done |= hit
            if k >= 2:
                c = self._context_at(k - 1, pos, ids, t - 1)
                miss = ~done & (c >= 0)
                out[miss] += self.logbo_[k - 2][c[miss]]
        return out

    def _context_at(self, j: int, pos: _Positions, ids: dict[int, Any], at: np.ndarray
                    ) -> np.ndarray:
        """Ids of the j-grams ending at positions `at`, as contexts (-1 where none)."""
        if j == 1:
            return pos.s[at]
        c = ids[j][at]
        if self.config.reset_at_eos:
            c = np.where(pos.s[at] == self.vocab.eos_id, -1, c)  # "... </s>" is no context
        return c

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
        p = np.exp(self.logp_[0])
        ctx_ids = self._context_ids(context)
        for k in range(2, self.config.order + 1):
            c = ctx_ids[k - 1]
            if c < 0:
                break  # a longer context cannot be stored when this one is not
            keys = self.keys_[k - 1]
            lo, hi = np.searchsorted(keys, [c * V, (c + 1) * V])
            p *= math.exp(self.logbo_[k - 2][c])
            p[keys[lo:hi] % V] = np.exp(self.logp_[k - 1][lo:hi])
        return p

    def _context_ids(self, context: tuple[int, ...]) -> list[int]:
        """Ids of the context suffixes of length 0..n-1 (-1 where unseen or too short)."""
        eos = self.vocab.eos_id
        if self.config.reset_at_eos and len(context) > 1 and context[-1] == eos:
            context = (eos,)  # a context ending in </s> is <s>
        return [0] + [self._lookup_suffix(context[-m:]) if m <= len(context) else -1
                      for m in range(1, self.config.order)]

    def _lookup_suffix(self, gram: tuple[int, ...]) -> int:
        V, gid = len(self.vocab), int(gram[0])
        for k, tok in enumerate(gram[1:], start=2):
            j = int(_lookup(self.keys_[k - 1], np.array([gid * V + int(tok)]))[0])
            if j < 0:
                return -1
            gid = j
        return gid

    # --- ARPA ----------------------------------------------------------------------------
    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA back-off file (log10 values, as lmplz writes them).

        In sentence mode the end-of-line token is written ``<s>`` where it opens an n-gram and
        ``</s>`` where it closes one; ``<s>`` gets lmplz's unigram entry (probability 1) holding
        the back-off of the context "start of sentence". At char level, whitespace characters
        are written ``<U+0020>`` etc., since ARPA fields are whitespace-separated.
        """
        self._check_fitted()
        V, reset, eos = len(self.vocab), self.config.reset_at_eos, self.vocab.eos_id
        first, last = _arpa_names(self.vocab), _arpa_names(self.vocab)
        if reset:
            first[eos], last[eos] = "<s>", "</s>"
        with atomic_open(path, "w") as f:
            f.write("\\data\\\n")
            for k, keys in enumerate(self.keys_, start=1):
                f.write(f"ngram {k}={len(keys) + (k == 1 and reset)}\n")
            prefix = first  # how each n-gram of the order below reads as the start of one longer
            for k, keys in enumerate(self.keys_, start=1):
                words = [last[w] for w in keys.tolist()] if k == 1 else [
                    prefix[c] + " " + last[w]
                    for c, w in zip((keys // V).tolist(), (keys % V).tolist(), strict=True)]
                f.write(f"\n\\{k}-grams:\n")
                f.writelines(self._arpa_lines(k, words))
                prefix = first if k == 1 else words  # no stored prefix ends in </s>
            f.write("\n\\end\\\n")

    def _arpa_lines(self, k: int, words: list[str]) -> list[str]:
        reset, eos = self.config.reset_at_eos, self.vocab.eos_id
        lp = [f"{x:.10g}" for x in (self.logp_[k - 1] / LN10).tolist()]
        if k == self.config.order:
            head = ["0\t<s>\n"] if k == 1 and reset else []
            return head + [f"{p}\t{w}\n" for p, w in zip(lp, words, strict=True)]
        bo = [f"{x:.10g}" for x in (self.logbo_[k - 1] / LN10).tolist()]
        head = []
        if k == 1 and reset:  # lmplz's <s> entry: p(<s>) = 1, back-off of "start of sentence"
            head, bo[eos] = [f"0\t<s>\t{bo[eos]}\n"], "0"  # </s> is never a context
        return head + [f"{p}\t{w}\t{b}\n" for p, w, b in zip(lp, words, bo, strict=True)]

    @classmethod
    def read_arpa(cls, path: str | Path, vocab: Vocab | None = None, level: str = "word"
                  ) -> NGramLM:
        """Load an ARPA back-off model (lmplz's, SRILM's, or `write_arpa`'s).

        With no `vocab`, the vocabulary is the file's unigrams (``<unk>`` and the end-of-line
        token first). A file with ``<s>``/``</s>`` gives a sentence-mode model. Vocabulary tokens
        the file lacks get log10 probability -99, the ARPA convention for "never".
        """
        counts, sections = _parse_arpa(Path(path))
        words = [w[0] for _, w, _ in sections[0]]
        reset = "<s>" in words or "</s>" in words
        vocab = vocab or _vocab_from_arpa(words, level)
        model = cls(NGramConfig(order=len(counts), reset_at_eos=reset), vocab)
        model._tables_from_arpa(sections, _arpa_ids(vocab, reset), Path(path))
        return model

    def _tables_from_arpa(self, sections: list[list[tuple[float, list[str], float]]],
                          index: dict[str, int], path: Path) -> None:
        V, n, eos = len(self.vocab), self.config.order, self.vocab.eos_id
        self.keys_, self.logp_, self.logbo_ = [np.arange(V, dtype=np.int64)], [], []
        lp1, bo1 = np.full(V, ARPA_IMPOSSIBLE * LN10), np.zeros(V)
        for p, (w,), b in sections[0]:
            if w == "<s>":
                bo1[eos] = b * LN10  # the context "start of sentence"
                continue
            i = _arpa_word(index, w, path)
            lp1[i] = p * LN10
            if w != "</s>":
                bo1[i] = b * LN10
        self.logp_.append(lp1)
        if n > 1:
            self.logbo_.append(bo1)
        for k in range(2, n + 1):
            W = np.array([[_arpa_word(index, w, path) for w in ws] for _, ws, _ in sections[k - 1]],
                         dtype=np.int64).reshape(-1, k)  # (m, k)
            self._check_sentence_marks(sections[k - 1], path)
            prefix = W[:, 0]
            for j in range(2, k):
                prefix = _lookup(self.keys_[j - 1], prefix * V + W[:, j - 1])
            if np.any(prefix < 0):
                bad = " ".join(sections[k - 1][int(np.argmax(prefix < 0))][1])
                raise SeqlabError(f"{path}: expected every n-gram's prefix to be listed, got "
                                  f"{bad!r} without its first {k - 1} words")
            keys = prefix * V + W[:, -1]
            order = np.argsort(keys, kind="stable")
            if np.any(np.diff(keys[order]) == 0):
                raise SeqlabError(f"{path}: expected each {k}-gram once, got duplicates")
            self.keys_.append(keys[order])
            self.logp_.append(np.array([e[0] for e in sections[k - 1]])[order] * LN10)
            if k < n:
                self.logbo_.append(np.array([e[2] for e in sections[k - 1]])[order] * LN10)

    @staticmethod
    def _check_sentence_marks(entries: list[tuple[float, list[str], float]], path: Path) -> None:
        for _, ws, _ in entries:
            if "<s>" in ws[1:] or "</s>" in ws[:-1]:
                raise SeqlabError(f"{path}: expected <s> only first and </s> only last in an "
                                  f"n-gram, got {' '.join(ws)!r}")

    # --- persistence ---------------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors: dict[str, np.ndarray] = {}
        for k in range(1, self.config.order + 1):
            tensors[f"keys.{k}"] = self.keys_[k - 1]
            tensors[f"logp.{k}"] = self.logp_[k - 1]
            if k < self.config.order:
                tensors[f"logbo.{k}"] = self.logbo_[k - 1]
            if hasattr(self, "counts_"):  # a model read from ARPA has no counts
                tensors[f"counts.{k}"] = np.asarray(self.counts_[k - 1], dtype=np.int64)
        if hasattr(self, "discounts_"):
            tensors["discounts"] = self.discounts_
        return tensors, self.describe()

    def save(self, path: str | Path) -> None:
        save_tensors(path, *self.checkpoint())

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        model = cls(cls.config_from(meta), cls.vocab_type.from_json(meta["vocab"]))
        n = model.config.order
        arr = {k: v.numpy() for k, v in tensors.items()}
        try:
            model.keys_ = [arr[f"keys.{k}"] for k in range(1, n + 1)]
            if "counts.1" in arr:
                model.counts_ = [arr[f"counts.{k}"] for k in range(1, n + 1)]
                model.discounts_ = arr["discounts"]
            if "logp.1" in arr:
                model.logp_ = [arr[f"logp.{k}"] for k in range(1, n + 1)]
                model.logbo_ = [arr[f"logbo.{k}"] for k in range(1, n)]
            else:  # counts only (format of seqlab 0.1's first release): derive the tables
                model._backoff_tables()
        except KeyError as e:
            raise SeqlabError(f"n-gram checkpoint is missing the array {e}") from None
        return model


# --- ARPA helpers ----------------------------------------------------------------------------
def _arpa_names(vocab: Vocab) -> list[str]:
    """ARPA spelling of every token: as is, except that whitespace becomes ``<U+0020>`` etc."""
    def name(tok: str) -> str:
        if tok == UNK or (vocab.level != "char" and tok.strip() == tok and tok):
            return tok
        return "".join(f"<U+{ord(c):04X}>" if c.isspace() else c for c in tok) or "<U+>"
    return [name(t) for t in vocab.tokens]


def _arpa_ids(vocab: Vocab, reset: bool) -> dict[str, int]:
    index = {name: i for i, name in enumerate(_arpa_names(vocab))}
    if reset:
        index["</s>"] = index["<s>"] = vocab.eos_id
    return index


def _arpa_word(index: dict[str, int], word: str, path: Path) -> int:
    try:
        return index[word]
    except KeyError:
        raise SeqlabError(f"{path}: expected words of the given vocabulary, got {word!r}"
                          ) from None


def _vocab_from_arpa(words: list[str], level: str) -> Vocab:
    if level not in ("word", "char"):
        raise SeqlabError(f"ARPA vocabulary level must be word or char, got {level!r}")
    checked = cast(Level, level)  # mypy does not narrow a str through `not in`
    specials = [UNK, EOS] if level == "word" else [UNK, "\n"]
    eos_name = _arpa_names(Vocab(checked, specials))[1]
    rest = [w for w in words if w not in (UNK, "<s>", "</s>", eos_name)]
    if level == "char":
        rest = [_unescape(w) for w in rest]
        if any(len(c) != 1 for c in rest):
            bad = next(c for c in rest if len(c) != 1)
            raise SeqlabError(f"expected one character per ARPA word at char level, got {bad!r}")
    return Vocab(checked, specials + rest)


def _unescape(word: str) -> str:
    import re

    return re.sub(r"<U\+([0-9A-F]{4,6})>", lambda m: chr(int(m.group(1), 16)), word)


def _parse_arpa(path: Path) -> tuple[list[int], list[list[tuple[float, list[str], float]]]]:
    """The header counts and, per order, (log10 p, words, log10 back-off) of every entry."""
    if not path.is_file():
        raise SeqlabError(f"{path}: ARPA file not found")
    counts: list[int] = []
    sections: list[list[tuple[float, list[str], float]]] = []
    k = 0
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("ngram ") and not sections:
                counts.append(int(line.partition("=")[2]))
            elif line.startswith("\\") and line.endswith("-grams:"):
                k = int(line[1:-7])
                sections.append([])
                if k != len(sections):
                    raise SeqlabError(f"{path}:{lineno}: expected \\{len(sections)}-grams:, got "
                                      f"{line}")
            elif line == "\\end\\":
                break
            elif k:
                sections[-1].append(_arpa_entry(line, k, f"{path}:{lineno}"))
    if not counts or [len(s) for s in sections] != counts:
        raise SeqlabError(f"{path}: expected an ARPA file whose sections match its header "
                          f"{counts}, got {[len(s) for s in sections]} entries")
    return counts, sections


def _arpa_entry(line: str, k: int, where: str) -> tuple[float, list[str], float]:
    fields = line.split()
    if len(fields) not in (k + 1, k + 2):
        raise SeqlabError(f"{where}: expected a log10 probability, {k} words and an optional "
                          f"back-off, got {line!r}")
    try:
        return float(fields[0]), fields[1 : k + 1], float(fields[k + 1]) if len(fields) == k + 2 \
            else 0.0
    except ValueError:
        raise SeqlabError(f"{where}: expected numbers around the words, got {line!r}") from None
