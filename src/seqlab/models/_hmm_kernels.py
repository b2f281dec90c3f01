"""Compiled inner loops of the HMM (numba, cached on disk so a second process skips compiling).

All recursions work on one sequence. Notation: K states, T steps, ``A`` the (K, K) transition
matrix (rows: from), ``B`` the (T, K) frame likelihoods p(x_t | z_t = k), possibly scaled per
row (the caller keeps the log of each row's scale).

The forward-backward pair is the scaled form of Rabiner (1989), section V.A: each forward
vector is normalised to sum to one and the normaliser ``c_t`` is kept, so nothing underflows
however long the sequence, and log p(x) = sum_t log c_t. The backward pass reuses the same
``c_t``, so alpha_t * beta_t is the posterior marginal directly.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# reassoc/contract let LLVM vectorise the K-wide dot products and axpys; no flag here assumes
# away infinities, which Viterbi uses for impossible transitions (log 0 = -inf).
_FAST = {"reassoc", "contract", "arcp", "nsz"}


@nb.njit(cache=True, fastmath=_FAST)
def forward_scaled(startprob: np.ndarray, AT: np.ndarray, B: np.ndarray, idx: np.ndarray,
                   alpha: np.ndarray, c: np.ndarray) -> float:
    """Fill the normalised forward vectors alpha (T, K) and normalisers c (T,); return
    sum_t log c_t.

    ``AT`` is the transposed transition matrix (each target state's predecessors contiguous)
    and the frame likelihoods of step t are the row ``B[idx[t]]``: for categorical emissions B
    is the (M, K) emission table and idx the symbols, so no (T, K) array is built. The outputs
    are passed in so that Baum-Welch reuses them across iterations (fresh (T, K) arrays cost
    page faults comparable to the recursion itself). Returns -inf (and stops, leaving c zero
    from there on) when the sequence is impossible under the model.
    """
    T, K = len(idx), AT.shape[0]
    c[:] = 0.0
    if T == 0:
        return 0.0
    total = 0.0
    for j in range(K):
        alpha[0, j] = startprob[j] * B[idx[0], j]
        total += alpha[0, j]
    for t in range(T):
        if t > 0:
            b = B[idx[t]]
            total = 0.0
            for j in range(K):  # alpha_t = (alpha_{t-1} @ A) * b_t, as K dot products
                v = 0.0
                for i in range(K):
                    v += alpha[t - 1, i] * AT[j, i]
                v *= b[j]
                alpha[t, j] = v
                total += v
        if not total > 0.0:
            return -np.inf
        c[t] = total
        inv = 1.0 / total
        for j in range(K):
            alpha[t, j] *= inv
    return np.log(c).sum()


@nb.njit(cache=True, fastmath=_FAST)
def backward_scaled(A: np.ndarray, B: np.ndarray, idx: np.ndarray, c: np.ndarray,
                    alpha: np.ndarray, gamma: np.ndarray, w: np.ndarray, beta: np.ndarray
                    ) -> None:
    """Scaled backward pass fused with the posteriors (frames as in `forward_scaled`).

    Fills the posteriors gamma = alpha * beta (T, K); w (T, K) with w_t = b_t * beta_t / c_t,
    from which the expected transition counts are sum_t xi_t = A * (alpha[:-1].T @ w[1:])
    (one matrix product, done by the caller); and beta (T, K) itself when it has T rows
    (pass a (0, K) array to skip it: Baum-Welch does not need it).
    """
    T, K = len(idx), A.shape[0]
    keep_beta = beta.shape[0] == T
    bt = np.ones(K)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            for i in range(K):  # beta_t = A @ w_{t+1}: K dot products over rows of A
                s = 0.0
                for j in range(K):
                    s += A[i, j] * w[t + 1, j]
                bt[i] = s
        if keep_beta:
            beta[t] = bt
        b = B[idx[t]]
        inv = 1.0 / c[t]
        norm = 0.0
        for j in range(K):
            w[t, j] = b[j] * bt[j] * inv
            g = alpha[t, j] * bt[j]
            gamma[t, j] = g
            norm += g
        if norm > 0.0:  # exactly 1 in exact arithmetic; renormalise rounding away
            inv = 1.0 / norm
            for j in range(K):
                gamma[t, j] *= inv


# Log-probabilities are -inf for impossible events but never NaN, so "nnan" is safe here and
# lets LLVM vectorise the max-reductions.
_FAST_MAX = _FAST | {"nnan"}


@nb.njit(cache=True, fastmath=_FAST_MAX)
def _delta_by_rows(log_start: np.ndarray, log_AT: np.ndarray, log_B: np.ndarray,
                   idx: np.ndarray) -> np.ndarray:
    """Viterbi scores delta (T, K); the max over predecessors is one reduction per target
    state over a row of log A^T (fastest for small K)."""
    T, K = len(idx), log_AT.shape[0]
    delta = np.empty((T, K))
    for j in range(K):
        delta[0, j] = log_start[j] + log_B[idx[0], j]
    for t in range(1, T):
        b = log_B[idx[t]]
        for j in range(K):
            best = -np.inf
            for i in range(K):
                best = max(best, delta[t - 1, i] + log_AT[j, i])
            delta[t, j] = best + b[j]
    return delta


@nb.njit(cache=True, fastmath=_FAST_MAX)
def _delta_by_columns(log_start: np.ndarray, log_A: np.ndarray, log_B: np.ndarray,
                      idx: np.ndarray) -> np.ndarray:
    """Viterbi scores delta (T, K) as K element-wise maxima over rows of log A (fastest for
    large K, where the K-wide element-wise max fills the vector units)."""
    T, K = len(idx), log_A.shape[0]
    delta = np.empty((T, K))
    tmp = np.empty(K)
    for j in range(K):
        delta[0, j] = log_start[j] + log_B[idx[0], j]
    for t in range(1, T):
        tmp[:] = -np.inf
        for i in range(K):
            d = delta[t - 1, i]
            for j in range(K):
                tmp[j] = max(tmp[j], d + log_A[i, j])
        b = log_B[idx[t]]
        for j in range(K):
            delta[t, j] = tmp[j] + b[j]
    return delta


@nb.njit(cache=True)
def viterbi(log_startprob: np.ndarray, log_A: np.ndarray, log_B: np.ndarray, idx: np.ndarray
            ) -> tuple[float, np.ndarray]:
    """Most likely state path and its joint log-probability (log-space, max-product).

    Frames as in `forward_scaled`. Back-pointers are not stored: the backtrack recomputes the
    argmax for the one state on the path, O(T K) instead of T K stored integers. Ties go to the
    lowest state index.
    """
    T, K = len(idx), log_A.shape[0]
    path = np.zeros(T, dtype=np.int64)
    if T == 0:
        return 0.0, path
    log_AT = np.ascontiguousarray(log_A.T)
    if K <= 32:
        delta = _delta_by_rows(log_startprob, log_AT, log_B, idx)
    else:
        delta = _delta_by_columns(log_startprob, log_A, log_B, idx)
    k = 0
    for j in range(1, K):
        if delta[T - 1, j] > delta[T - 1, k]:
            k = j
    logp = delta[T - 1, k]
    path[T - 1] = k
    for t in range(T - 1, 0, -1):
        j = path[t]
        k = 0
        best = delta[t - 1, 0] + log_AT[j, 0]
        for i in range(1, K):
            v = delta[t - 1, i] + log_AT[j, i]
            if v > best:
                best, k = v, i
        path[t - 1] = k
    return logp, path


@nb.njit(cache=True)
def categorical_counts(X: np.ndarray, gamma: np.ndarray, n_features: int) -> np.ndarray:
    """Expected emission counts (K, M): sum of gamma_t over the steps where x_t = m."""
    T, K = gamma.shape
    out = np.zeros((K, n_features))
    for t in range(T):
        x = X[t]
        for k in range(K):
            out[k, x] += gamma[t, k]
    return out


@nb.njit(cache=True)
def sample_states(start_cdf: np.ndarray, trans_cdf: np.ndarray, u: np.ndarray, first: int
                  ) -> np.ndarray:
    """A state path from uniform draws `u`; `first` >= 0 fixes the initial state."""
    T = len(u)
    z = np.empty(T, dtype=np.int64)
    for t in range(T):
        cdf = start_cdf if t == 0 else trans_cdf[z[t - 1]]
        if t == 0 and first >= 0:
            z[t] = first
            continue
        k = np.searchsorted(cdf, u[t] * cdf[-1], side="right")
        z[t] = min(k, len(cdf) - 1)
    return z


@nb.njit(cache=True)
def sample_categorical(cdf: np.ndarray, z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One symbol per step from the rows ``cdf[z_t]`` of cumulative emission probabilities."""
    out = np.empty(len(z), dtype=np.int64)
    M = cdf.shape[1]
    for t in range(len(z)):
        row = cdf[z[t]]
        out[t] = min(np.searchsorted(row, u[t] * row[-1], side="right"), M - 1)
    return out


@nb.njit(cache=True, fastmath=_FAST)
def filter_step(belief: np.ndarray, A: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """Condition a predictive state belief on one frame likelihood `b`, then predict.

    Returns log p(x | past) = log(belief . b) and the belief over the next hidden state.
    """
    K = len(belief)
    post = belief * b
    total = post.sum()
    nxt = np.zeros(K)
    if not total > 0.0:
        return -np.inf, nxt
    post /= total
    for i in range(K):
        for j in range(K):
            nxt[j] += post[i] * A[i, j]
    return np.log(total), nxt
