"""Linear-Gaussian state-space models: Kalman filter, RTS smoother, exact likelihood, EM.

References: R. Kalman (1960); H. Rauch, F. Tung and C. Striebel (1965) for the smoother;
R. Shumway and D. Stoffer (1982, and *Time Series Analysis and Its Applications*, ch. 6) for
EM with missing data; Z. Ghahramani and G. Hinton (1996), "Parameter estimation for linear
dynamical systems"; the APIs of pykalman and statsmodels' state-space models.

    z_1 ~ N(mu0, P0),    z_t = F z_{t-1} + w_t,  w_t ~ N(0, Q)      (state, n dimensions)
                         x_t = H z_t + v_t,      v_t ~ N(0, R)      (observation, d dimensions)

(mu0, P0) is the distribution of the first state itself, as pykalman's ``initial_state_*`` and
statsmodels' ``initialize_known``. Missing observations are NaN, whole vectors or single
entries: the update uses the observed entries only, and the log-likelihood is that of the
observed entries. Several sequences run at once, batched inside the compiled loops: pass
(B, T, d) arrays, or concatenated (N, d) data with ``lengths``.

Numerical care: the covariance update is the Joseph form
``P = (I - K H) P (I - K H)^T + K R K^T``, followed by explicit symmetrisation, and every
innovation covariance is factorised by Cholesky; covariances stay symmetric positive definite
over long runs where the textbook ``(I - K H) P`` drifts.

EM (``fit``) updates any subset of the parameters (``em_vars``) and keeps the rest fixed; each
update is the exact maximiser of the expected complete-data log-likelihood given the others, so
the likelihood never decreases. With missing entries, the missing part of x_t is integrated out
in closed form (its conditional law given z_t and the observed part).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypedDict

import numba as nb
import numpy as np

from seqlab.errors import SeqlabError, describe
from seqlab.io import save_tensors
from seqlab.models.base import load_family
from seqlab.params import Params
from seqlab.protocol import split_lengths
from seqlab.run import Run

if TYPE_CHECKING:
    import torch

LOG_2PI = math.log(2 * math.pi)
PARAMS = ("transition_matrix", "observation_matrix", "transition_covariance",
          "observation_covariance", "initial_state_mean", "initial_state_covariance")
SHORT = {"F": "transition_matrix", "H": "observation_matrix", "Q": "transition_covariance",
         "R": "observation_covariance", "mu0": "initial_state_mean",
         "P0": "initial_state_covariance"}


# --- small dense linear algebra, compiled ------------------------------------------------------
# The matrices are tiny (a few states), where loops beat LAPACK calls and their overhead.
@nb.njit(cache=True)
def _cholesky(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor; a non-positive pivot gives NaN (checked by the caller)."""
    n = A.shape[0]
    L = np.zeros((n, n))
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            L[:, :] = np.nan
            return L
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, n):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / L[j, j]
    return L


@nb.njit(cache=True)
def _chol_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve (L L^T) X = B for X (B: n x m)."""
    n, m = B.shape
    Y = np.empty((n, m))
    for c in range(m):
        for i in range(n):  # forward: L y = b
            s = B[i, c]
            for k in range(i):
                s -= L[i, k] * Y[k, c]
            Y[i, c] = s / L[i, i]
        for i in range(n - 1, -1, -1):  # backward: L^T x = y
            s = Y[i, c]
            for k in range(i + 1, n):
                s -= L[k, i] * Y[k, c]
            Y[i, c] = s / L[i, i]
    return Y


@nb.njit(cache=True)
def _mm(A: np.ndarray, B: np.ndarray, out: np.ndarray, transpose_b: bool = False) -> None:
    """out = A @ B (or A @ B^T), written into a preallocated array."""
    n, k = A.shape
    m = B.shape[0] if transpose_b else B.shape[1]
    for i in range(n):
        for j in range(m):
            s = 0.0
            for p in range(k):
                s += A[i, p] * (B[j, p] if transpose_b else B[p, j])
            out[i, j] = s


@nb.njit(cache=True)
def _symmetrise(P: np.ndarray) -> None:
    n = P.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            v = 0.5 * (P[i, j] + P[j, i])
            P[i, j] = v
            P[j, i] = v


@nb.njit(cache=True)
def _update_full(m: np.ndarray, P: np.ndarray, x: np.ndarray, H: np.ndarray, R: np.ndarray,
                 mf: np.ndarray, Pf: np.ndarray, PHt: np.ndarray, S: np.ndarray,
                 K: np.ndarray, A: np.ndarray, T1: np.ndarray, KR: np.ndarray) -> float:
    """Condition N(m, P) on a fully observed x: Joseph form, no allocation per step.

    Writes the filtered mean and covariance into mf and Pf (the other arrays are scratch) and
    returns log N(x; H m, S); NaN when S = H P H^T + R is not positive definite.
    """
    n, d = PHt.shape
    _mm(P, H, PHt, True)  # P H^T (n, d)
    _mm(H, PHt, S)  # H P H^T (d, d)
    for i in range(d):
        for j in range(d):
            S[i, j] += R[i, j]
    _symmetrise(S)
    L = _cholesky(S)
    if np.isnan(L[0, 0]):
        return np.nan
    Kt = _chol_solve(L, PHt.T.copy())  # (d, n) = S^-1 H P
    e = np.empty(d)
    for i in range(d):
        s = x[i]
        for j in range(n):
            s -= H[i, j] * m[j]
        e[i] = s
    sol = _chol_solve(L, e.reshape(d, 1))
    quad, logdet = 0.0, 0.0
    for i in range(d):
        quad += e[i] * sol[i, 0]
        logdet += 2.0 * math.log(L[i, i])
    for i in range(n):
        s = m[i]
        for j in range(d):
            K[i, j] = Kt[j, i]
            s += K[i, j] * e[j]
        mf[i] = s
    _mm(K, H, A)  # A = I - K H
    for i in range(n):
        for j in range(n):
            A[i, j] = (1.0 if i == j else 0.0) - A[i, j]
    _mm(A, P, T1)
    _mm(T1, A, Pf, True)  # (I - KH) P (I - KH)^T
    _mm(K, R, KR)
    _mm(KR, K, T1, True)  # K R K^T
    for i in range(n):
        for j in range(n):
            Pf[i, j] += T1[i, j]
    _symmetrise(Pf)
    return -0.5 * (d * math.log(2 * math.pi) + logdet + quad)


@nb.njit(cache=True)
def _update_partial(m: np.ndarray, P: np.ndarray, x: np.ndarray, H: np.ndarray,
                    R: np.ndarray, mf: np.ndarray, Pf: np.ndarray) -> float:
    """`_update_full` on the observed entries of x only (NaN = missing)."""
    n, d = len(m), len(x)
    obs = np.empty(d, dtype=np.int64)
    k = 0
    for i in range(d):
        if not np.isnan(x[i]):
            obs[k] = i
            k += 1
    if k == 0:  # nothing observed: the filtered state is the predicted one
        mf[:] = m
        Pf[:, :] = P
        return 0.0
    Ho, Ro, xo = np.empty((k, n)), np.empty((k, k)), np.empty(k)
    for a in range(k):
        xo[a] = x[obs[a]]
        for j in range(n):
            Ho[a, j] = H[obs[a], j]
        for b in range(k):
            Ro[a, b] = R[obs[a], obs[b]]
    return _update_full(m, P, xo, Ho, Ro, mf, Pf, np.empty((n, k)), np.empty((k, k)),
                        np.empty((n, k)), np.empty((n, n)), np.empty((n, n)), np.empty((n, k)))


@nb.njit(cache=True)
def _filter(X: np.ndarray, lens: np.ndarray, F: np.ndarray, H: np.ndarray, Q: np.ndarray,
            R: np.ndarray, mu0: np.ndarray, P0: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kalman filter over a batch X (B, T, d), sequence b running for lens[b] steps.

    Returns predicted means/covariances (prior of z_t given x_<t), filtered ones (given x_<=t)
    and the per-step log-likelihood log p(x_t | x_<t) (B, T); entries past lens[b] are zero.
    Fully observed steps take the allocation-free path; steps with missing entries the general
    one.
    """
    B, T, d = X.shape
    n = len(mu0)
    mp, mf = np.zeros((B, T, n)), np.zeros((B, T, n))
    Pp, Pf = np.zeros((B, T, n, n)), np.zeros((B, T, n, n))
    ll = np.zeros((B, T))
    PHt, S, K, A = np.empty((n, d)), np.empty((d, d)), np.empty((n, d)), np.empty((n, n))
    T1, KR, FP = np.empty((n, n)), np.empty((n, d)), np.empty((n, n))
    for b in range(B):
        for t in range(lens[b]):
            if t == 0:
                mp[b, t], Pp[b, t] = mu0, P0
            else:
                for i in range(n):
                    s = 0.0
                    for j in range(n):
                        s += F[i, j] * mf[b, t - 1, j]
                    mp[b, t, i] = s
                _mm(F, Pf[b, t - 1], FP)
                _mm(FP, F, Pp[b, t], True)
                for i in range(n):
                    for j in range(n):
                        Pp[b, t, i, j] += Q[i, j]
                _symmetrise(Pp[b, t])
            x = X[b, t]
            if not np.isnan(x).any():
                ll[b, t] = _update_full(mp[b, t], Pp[b, t], x, H, R, mf[b, t], Pf[b, t],
                                        PHt, S, K, A, T1, KR)
            else:
                ll[b, t] = _update_partial(mp[b, t], Pp[b, t], x, H, R, mf[b, t], Pf[b, t])
    return mp, Pp, mf, Pf, ll


@nb.njit(cache=True)
def _smoother(F: np.ndarray, lens: np.ndarray, mp: np.ndarray, Pp: np.ndarray, mf: np.ndarray,
              Pf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rauch-Tung-Striebel smoother: smoothed means, covariances, and the lag-one covariances
    Cov(z_t, z_{t-1} | x) (zero at t = 0), which EM needs."""
    B, T, n = mf.shape
    ms, Ps, Pl = mf.copy(), Pf.copy(), np.zeros((B, T, n, n))
    FP, D, JD = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
    for b in range(B):
        for t in range(lens[b] - 2, -1, -1):
            L = _cholesky(Pp[b, t + 1])
            _mm(F, Pf[b, t], FP)
            J = _chol_solve(L, FP).T  # P_t|t F^T P_t+1|t^-1
            for i in range(n):
                s = mf[b, t, i]
                for j in range(n):
                    s += J[i, j] * (ms[b, t + 1, j] - mp[b, t + 1, j])
                    D[i, j] = Ps[b, t + 1, i, j] - Pp[b, t + 1, i, j]
                ms[b, t, i] = s
            _mm(J, D, JD)
            _mm(JD, J, Ps[b, t], True)
            for i in range(n):
                for j in range(n):
                    Ps[b, t, i, j] += Pf[b, t, i, j]
            _symmetrise(Ps[b, t])
            _mm(Ps[b, t + 1], J, Pl[b, t + 1], True)
    return ms, Ps, Pl


def _observation_moments(X: np.ndarray, valid: np.ndarray, H: np.ndarray, R: np.ndarray,
                         ms: np.ndarray, Ps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums over steps of E[x z^T] (d, n) and E[x x^T] (d, d) under the smoothed posterior.

    A missing part x_m of x_t is, given z_t and the observed part x_o, Gaussian with mean
    H_m z + G (x_o - H_o z), G = R_mo R_oo^-1, and covariance R_mm - G R_om; so x_t = a_t + C z_t
    + e with C and Cov(e) fixed by the pattern of missing entries, and the moments follow from
    E[z z^T] = P + m m^T. Steps are grouped by that pattern and each group is summed at once.
    """
    d, n = H.shape
    x, m, P = X[valid], ms[valid], Ps[valid]  # (N, d), (N, n), (N, n, n)
    seen = ~np.isnan(x)
    Sxz, Sxx = np.zeros((d, n)), np.zeros((d, d))
    patterns, which = np.unique(seen, axis=0, return_inverse=True)
    for p, o in enumerate(patterns):
        rows = which.reshape(-1) == p
        mis = ~o
        G = np.linalg.solve(R[np.ix_(o, o)], R[np.ix_(o, mis)]).T if o.any() else np.zeros(
            (mis.sum(), 0))  # (m, o)
        a = np.zeros((int(rows.sum()), d))
        a[:, o] = x[rows][:, o]
        a[:, mis] = x[rows][:, o] @ G.T
        C, E = np.zeros((d, n)), np.zeros((d, d))
        C[mis] = H[mis] - G @ H[o]
        E[np.ix_(mis, mis)] = R[np.ix_(mis, mis)] - G @ R[np.ix_(o, mis)]
        mz, Pz = m[rows], P[rows].sum(0)
        Ezz = Pz + mz.T @ mz
        mean = a + mz @ C.T  # (k, d): E[x_t]
        Sxz += a.T @ mz + C @ Ezz
        Sxx += mean.T @ mean + C @ Pz @ C.T + len(mz) * E
    return Sxz, Sxx


# --- the model --------------------------------------------------------------------------------
@dataclass
class FilterResult:
    """Filter (and smoother) output in the layout of the input: (T, n) for one (T, d) sequence,
    (B, T, n) for a (B, T, d) batch, (N, n) for concatenated data with lengths."""

    log_likelihood: float  # sum over all sequences and steps
    step_log_likelihood: np.ndarray  # log p(x_t | x_<t), 0 for fully missing steps
    predicted_means: np.ndarray
    predicted_covariances: np.ndarray
    filtered_means: np.ndarray
    filtered_covariances: np.ndarray
    smoothed_means: np.ndarray | None = None
    smoothed_covariances: np.ndarray | None = None
    lag_covariances: np.ndarray | None = None  # Cov(z_t, z_{t-1} | x); zero at each start


@dataclass
class _Batch:
    """Sequences padded to a (B, T, d) batch, and how to lay results out like the input."""

    X: np.ndarray  # (B, T, d), NaN past each length
    lens: np.ndarray  # (B,) int64
    layout: str  # "single", "batch" or "lengths"

    def unpad(self, a: np.ndarray) -> np.ndarray:
        if self.layout == "single":
            return a[0]
        if self.layout == "batch":
            return a
        return np.concatenate([a[b, :n] for b, n in enumerate(self.lens)])


@dataclass
class KalmanConfig:
    """The ``model`` section for ``--model kalman`` (the series task): EM from the defaults."""

    n_dim_state: int | None = None  # n; None: the observation dimension
    em_vars: str = "all"  # comma-separated parameters EM updates (F, H, Q, R, mu0, P0), or all
    n_iter: int = 10  # EM iterations at most
    tol: float = 0.0  # stop when the log-likelihood gains less than this

    def __post_init__(self) -> None:
        if (self.n_dim_state is not None and self.n_dim_state < 1) or self.n_iter < 1:
            raise SeqlabError("model.n_dim_state and model.n_iter must be >= 1, got "
                              f"{self.n_dim_state} and {self.n_iter}")
        if not (math.isfinite(self.tol) and self.tol >= 0):
            raise SeqlabError(f"model.tol must be finite and >= 0, got {self.tol}")


class LinearGaussianSSM(Params):
    """Linear-Gaussian state-space model (see the module docstring for the equations).

    Args:
        n_dim_state, n_dim_obs: n and d (inferred from the matrices or the data when None).
        transition_matrix, observation_matrix, transition_covariance, observation_covariance,
        initial_state_mean, initial_state_covariance: F, H, Q, R, mu0, P0; the starting point
            of EM, or the model itself when used without ``fit``. Defaults: F = I, H = the first
            d rows of I, Q = I, R = I, mu0 = 0, P0 = I (as pykalman).
        em_vars: the parameters EM updates ("all", or names from F, H, Q, R, mu0, P0 and the
            long names); the others stay fixed.
        n_iter, tol: EM iterations at most; stop when the log-likelihood gains less than tol.
        random_state: seed for ``sample`` and ``generate``.

    ``__init__`` only stores its arguments (scikit-learn's contract, which ``clone`` and
    ``set_params`` rely on); ``fit`` always starts EM from them, never from an earlier fit.
    """

    family: ClassVar[str] = "kalman"
    Config: ClassVar[type] = KalmanConfig
    name: str = "kalman"  # the registry name, for tables
    # The constructor's arguments, stored unchanged by `_store`.
    n_dim_state: int | None
    n_dim_obs: int | None
    transition_matrix: Any
    observation_matrix: Any
    transition_covariance: Any
    observation_covariance: Any
    initial_state_mean: Any
    initial_state_covariance: Any
    em_vars: str | tuple[str, ...]
    n_iter: int
    tol: float
    random_state: int | None

    @classmethod
    def from_config(cls, config: KalmanConfig, vocab: Any = None) -> Self:
        """The CLI's builder (`seqlab.models.build`): real-valued data has no vocabulary."""
        em = "all" if config.em_vars == "all" else tuple(
            v.strip() for v in config.em_vars.split(",") if v.strip())
        return cls(config.n_dim_state, em_vars=em, n_iter=config.n_iter, tol=config.tol)

    def __init__(self, n_dim_state: int | None = None, n_dim_obs: int | None = None, *,
                 transition_matrix: Any = None, observation_matrix: Any = None,
                 transition_covariance: Any = None, observation_covariance: Any = None,
                 initial_state_mean: Any = None, initial_state_covariance: Any = None,
                 em_vars: str | tuple[str, ...] = "all", n_iter: int = 10, tol: float = 0.0,
                 random_state: int | None = None) -> None:
        self._store(locals())

    # --- parameters ------------------------------------------------------------------------
    def _dims(self, d_data: int | None) -> tuple[int, int]:
        H = self.observation_matrix
        n = self.n_dim_state or next((np.shape(v)[-1] for v in (
            self.transition_matrix, H, self.transition_covariance, self.initial_state_mean,
            self.initial_state_covariance) if v is not None), None) or d_data or 1
        d = self.n_dim_obs or (np.shape(H)[0] if H is not None else None) or (
            np.shape(self.observation_covariance)[0] if self.observation_covariance is not None
            else None) or d_data or n
        return int(n), int(d)

    def params(self) -> dict[str, np.ndarray]:
        """The current parameters: fitted ones (``*_``) or, before fit, the constructor's."""
        if hasattr(self, "transition_matrix_"):
            return {p: getattr(self, p + "_") for p in PARAMS}
        return self._initial_params()

    def _initial_params(self, d_data: int | None = None) -> dict[str, np.ndarray]:
        """The constructor's parameters, defaults filled in and checked; dimensions nothing
        else fixes come from the data (`d_data` entries per step), as in pykalman."""
        n, d = self._dims(d_data)
        defaults = {"transition_matrix": np.eye(n), "observation_matrix": np.eye(d, n),
                    "transition_covariance": np.eye(n), "observation_covariance": np.eye(d),
                    "initial_state_mean": np.zeros(n), "initial_state_covariance": np.eye(n)}
        given = {p: getattr(self, p) for p in PARAMS}
        return check_params({p: defaults[p] if v is None else v for p, v in given.items()})

    def _set(self, params: dict[str, np.ndarray]) -> None:
        for p, v in params.items():
            setattr(self, p + "_", np.array(v, dtype=np.float64))

    def _em_set(self) -> set[str]:
        names = self.em_vars
        if names == "all":
            return set(PARAMS)
        names = (names,) if isinstance(names, str) else tuple(names)
        out = {SHORT.get(v, v) for v in names}
        unknown = sorted(out - set(PARAMS))
        if unknown:
            raise SeqlabError(f"em_vars must name parameters among {', '.join(SHORT)} (or "
                              f"their long names), got {unknown[0]!r}")
        return out

    # --- data ------------------------------------------------------------------------------
    def _batch(self, X: Any, lengths: Any = None, d: int | None = None) -> _Batch:
        """Checked observations as a padded batch (`d` defaults to the model's)."""
        X = as_observations(X)
        shape = X.shape
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim not in (2, 3):
            raise SeqlabError(f"observations must have shape (T, d) or (B, T, d), got {shape}")
        if X.shape[-2] == 0 or X.shape[0] == 0:  # nothing to filter; EM would divide by 0 steps
            raise SeqlabError(f"expected at least one observation step, got an empty array of "
                              f"shape {shape}")
        d = d or self.params()["observation_matrix"].shape[0]
        if X.shape[-1] != d:
            raise SeqlabError(f"expected observations with d = {d} entries per step, got "
                              f"{X.shape[-1]} (observations of shape {shape})")
        if np.isinf(X).any():
            raise SeqlabError("observations must be finite or NaN (missing), got infinity")
        if X.ndim == 3:
            if lengths is not None:
                raise SeqlabError("pass lengths only with concatenated (N, d) observations, "
                                  f"got a (B, T, d) batch of shape {X.shape}")
            return _Batch(X, np.full(X.shape[0], X.shape[1], dtype=np.int64), "batch")
        if lengths is None:
            return _Batch(X[None], np.array([len(X)], dtype=np.int64), "single")
        segs = split_lengths(X, _check_lengths(lengths, len(X)))
        pad = np.full((len(segs), max((len(s) for s in segs), default=0), d), np.nan)
        for b, s in enumerate(segs):
            pad[b, : len(s)] = s
        return _Batch(pad, np.array([len(s) for s in segs], dtype=np.int64), "lengths")

    # --- inference -------------------------------------------------------------------------
    def _run_filter(self, batch: _Batch, p: dict[str, np.ndarray]) -> tuple:
        out = _filter(batch.X, batch.lens, p["transition_matrix"], p["observation_matrix"],
                      p["transition_covariance"], p["observation_covariance"],
                      p["initial_state_mean"], p["initial_state_covariance"])
        if np.isnan(out[4]).any():
            raise SeqlabError("the innovation covariance H P H^T + R is not positive definite "
                              "at some step; check observation_covariance")
        return out

    def filter(self, X: Any, lengths: Any = None, *, smooth: bool = False) -> FilterResult:
        """Kalman filter (and, with ``smooth``, the RTS smoother) over X."""
        p, batch = self.params(), self._batch(X, lengths)
        mp, Pp, mf, Pf, ll = self._run_filter(batch, p)
        res = FilterResult(float(ll.sum()), *(batch.unpad(a) for a in (ll, mp, Pp, mf, Pf)))
        if smooth:
            ms, Ps, Pl = _smoother(p["transition_matrix"], batch.lens, mp, Pp, mf, Pf)
            res.smoothed_means, res.smoothed_covariances, res.lag_covariances = (
                batch.unpad(a) for a in (ms, Ps, Pl))
        return res

    def smooth(self, X: Any, lengths: Any = None) -> FilterResult:
        return self.filter(X, lengths, smooth=True)

    def loglikelihood(self, X: Any, lengths: Any = None) -> float:
        """log p(X): the exact marginal likelihood of the observed entries."""
        return self.filter(X, lengths).log_likelihood

    def log_prob(self, X: Any, lengths: Any = None) -> np.ndarray:
        """log p(x_t | x_<t) for every step (densities; 0 for a fully missing step)."""
        return self.filter(X, lengths).step_log_likelihood

    def forecast(self, X: Any, steps: int, lengths: Any = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Means (.., steps, d) and covariances (.., steps, d, d) of x_{T+1..T+steps} given X.

        The leading axes follow the input: none for one (T, d) sequence, B for a batch or for
        concatenated sequences with lengths.
        """
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise SeqlabError(f"steps must be an integer >= 1, got {steps!r}")
        p, batch = self.params(), self._batch(X, lengths)
        _, _, mf, Pf, _ = self._run_filter(batch, p)
        F, H, Q, R = (p[k] for k in PARAMS[:4])
        B, last = len(batch.lens), np.maximum(batch.lens - 1, 0)
        m = mf[np.arange(B), last] @ F.T  # (B, n): one step past each sequence
        P = F @ Pf[np.arange(B), last] @ F.T + Q  # (B, n, n)
        empty = batch.lens == 0  # an empty sequence forecasts from the prior of z_1
        m[empty], P[empty] = p["initial_state_mean"], p["initial_state_covariance"]
        step_means, step_covs = [], []
        for h in range(steps):
            if h > 0:
                m, P = m @ F.T, F @ P @ F.T + Q
            step_means.append(m @ H.T)
            step_covs.append(H @ P @ H.T + R)
        means, covs = np.stack(step_means, 1), np.stack(step_covs, 1)  # (B, steps, d), (.., d)
        return (means[0], covs[0]) if batch.layout == "single" else (means, covs)

    # --- sampling --------------------------------------------------------------------------
    def sample(self, n_timesteps: int, n_sequences: int | None = None,
               random_state: int | np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """States (T, n) and observations (T, d), or (B, T, ...) with ``n_sequences``."""
        p = self.params()
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        B = n_sequences or 1
        z = _draw(rng, p["initial_state_mean"], p["initial_state_covariance"], B)
        return self._roll(z, n_timesteps, rng, p, squeeze=n_sequences is None)

    def _roll(self, z: np.ndarray, T: int, rng: np.random.Generator, p: dict[str, np.ndarray],
              squeeze: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run the model forward from states z (B, n) for T steps, z itself first."""
        F, H, Q, R = (p[k] for k in PARAMS[:4])
        states, obs = [], []
        for t in range(T):
            if t > 0:
                z = z @ F.T + _draw(rng, np.zeros(len(F)), Q, len(z))
            states.append(z)
            obs.append(z @ H.T + _draw(rng, np.zeros(len(R)), R, len(z)))
        zs, xs = np.stack(states, 1), np.stack(obs, 1)  # (B, T, n), (B, T, d)
        return (zs[0], xs[0]) if squeeze else (zs, xs)

    def generate(self, n: int, *, prompt: np.ndarray | None = None, seed: int | None = None
                 ) -> np.ndarray:
        """Sample n observations (n, d) continuing `prompt` (T, d), or from the start."""
        p = self.params()
        rng = np.random.default_rng(self.random_state if seed is None else seed)
        if prompt is None or len(prompt) == 0:
            return self.sample(n, random_state=rng)[1]
        res = self.filter(prompt)
        m, P = res.filtered_means[-1], res.filtered_covariances[-1]
        F, Q = p["transition_matrix"], p["transition_covariance"]
        z = _draw(rng, F @ m, F @ P @ F.T + Q, 1)  # the state after the prompt
        return self._roll(z, n, rng, p, squeeze=True)[1]

    # --- EM --------------------------------------------------------------------------------
    def fit(self, X: Any, lengths: Any = None, *, valid: Any = None, run: Run | None = None
            ) -> Self:
        """EM for the parameters in ``em_vars``; ``history_`` holds log p(X) per iteration
        (computed in each E-step, before that iteration's M-step)."""
        X = as_observations(X)
        p, which = self._initial_params(X.shape[-1] if X.ndim > 1 else 1), self._em_set()
        batch = self._batch(X, lengths, d=p["observation_matrix"].shape[0])
        if self.n_iter < 1:
            raise SeqlabError(f"n_iter must be >= 1, got {self.n_iter}")
        self.history_, t0 = [], time.perf_counter()
        for it in range(self.n_iter):
            ll, p = self._em_step(batch, p, which)
            self.history_.append(ll)
            if run is not None:
                run.log({"kind": "train", "step": it + 1, "loss": -ll / max(batch.lens.sum(), 1)})
                if run.train.max_minutes and time.perf_counter() - t0 > 60 * run.train.max_minutes:
                    break
            if it > 0 and self.history_[-1] - self.history_[-2] < self.tol:
                break
        self._set(p)
        return self

    def _em_step(self, batch: _Batch, p: dict[str, np.ndarray], which: set[str]
                 ) -> tuple[float, dict[str, np.ndarray]]:
        F, H = p["transition_matrix"], p["observation_matrix"]
        mp, Pp, mf, Pf, ll = self._run_filter(batch, p)
        ms, Ps, Pl = _smoother(F, batch.lens, mp, Pp, mf, Pf)
        valid = np.arange(batch.X.shape[1])[None, :] < batch.lens[:, None]  # (B, T)
        m, P = ms[valid], Ps[valid]  # (N, n), (N, n, n)
        Ezz = P + np.einsum("ti,tj->tij", m, m)
        trans = valid[:, 1:]  # pairs (t-1, t) inside a sequence
        prev, cur = (ms[:, :-1][trans], Ps[:, :-1][trans]), (ms[:, 1:][trans], Ps[:, 1:][trans])
        S10 = (Pl[:, 1:][trans] + np.einsum("ti,tj->tij", cur[0], prev[0])).sum(0)  # E z_t z_t-1
        S00 = (prev[1] + np.einsum("ti,tj->tij", prev[0], prev[0])).sum(0)
        S11 = (cur[1] + np.einsum("ti,tj->tij", cur[0], cur[0])).sum(0)
        new = dict(p)
        if "observation_matrix" in which or "observation_covariance" in which:
            Sxz, Sxx = _observation_moments(batch.X, valid, H, p["observation_covariance"],
                                            ms, Ps)
            if "observation_matrix" in which:
                new["observation_matrix"] = np.linalg.solve(Ezz.sum(0), Sxz.T).T
            if "observation_covariance" in which:
                Hn = new["observation_matrix"]
                R = (Sxx - Hn @ Sxz.T - Sxz @ Hn.T + Hn @ Ezz.sum(0) @ Hn.T) / len(m)
                new["observation_covariance"] = 0.5 * (R + R.T)
        if "transition_matrix" in which and trans.any():
            new["transition_matrix"] = np.linalg.solve(S00, S10.T).T
        if "transition_covariance" in which and trans.any():
            Fn = new["transition_matrix"]
            Q = (S11 - Fn @ S10.T - S10 @ Fn.T + Fn @ S00 @ Fn.T) / int(trans.sum())
            new["transition_covariance"] = 0.5 * (Q + Q.T)
        first = ms[:, 0][batch.lens > 0], Ps[:, 0][batch.lens > 0]
        if "initial_state_mean" in which:
            new["initial_state_mean"] = first[0].mean(0)
        if "initial_state_covariance" in which:
            diff = first[0] - new["initial_state_mean"]
            P0 = (first[1] + np.einsum("bi,bj->bij", diff, diff)).mean(0)
            new["initial_state_covariance"] = 0.5 * (P0 + P0.T)
        return float(ll.sum()), check_params(new)

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """The current parameters as tensors; the EM settings as JSON."""
        which = self._em_set()  # validates em_vars before anything is written
        if not (self.random_state is None or isinstance(self.random_state, int | np.integer)):
            raise SeqlabError("cannot save a model whose random_state is a "
                              f"{type(self.random_state).__name__} (not JSON); pass an int "
                              "seed or None")
        tensors = {k: np.ascontiguousarray(v) for k, v in self.params().items()}
        config = {"em_vars": [p for p in PARAMS if p in which], "n_iter": self.n_iter,
                  "tol": self.tol, "random_state": None if self.random_state is None
                  else int(self.random_state)}
        save_tensors(path, tensors, {"family": self.family, "config": config})

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        """The model whose parameters are the checkpoint's (see `seqlab.models.load`).

        They become the constructor arguments too, so ``clone`` or a refit starts from them.
        """
        try:
            # dict[str, Any]: the six matrix arguments, which __init__ takes as Any
            params: dict[str, Any] = check_params({p: tensors[p].double().numpy() for p in PARAMS})
        except KeyError as e:
            raise SeqlabError(f"the {cls.family} checkpoint is missing the array {e}") from None
        cfg = meta.get("config", {})
        model = cls(**params, em_vars=tuple(cfg.get("em_vars", PARAMS)),
                    n_iter=cfg.get("n_iter", 10), tol=cfg.get("tol", 0.0),
                    random_state=cfg.get("random_state"))
        model._em_set()  # a damaged em_vars list fails here, not at the next fit
        model._set(params)
        return model

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return load_family(cls, path)


class SSMParams(TypedDict):
    """The six matrices of a linear-Gaussian state-space model, named as `LinearGaussianSSM`
    takes them."""

    transition_matrix: np.ndarray
    observation_matrix: np.ndarray
    transition_covariance: np.ndarray
    observation_covariance: np.ndarray
    initial_state_mean: np.ndarray
    initial_state_covariance: np.ndarray


def constant_velocity(dt: float = 0.1, q: float = 0.5, r: float = 0.3) -> SSMParams:
    """Parameters of the 4-d constant-velocity model (x, y, vx, vy) observed in position, with
    white-noise acceleration of intensity q (Bar-Shalom's discretisation) and observation noise
    variance r; ``LinearGaussianSSM(**constant_velocity())``."""
    F = np.eye(4)
    F[0, 2] = F[1, 3] = dt
    block = q * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    Q = np.zeros((4, 4))
    Q[np.ix_([0, 2], [0, 2])] = block
    Q[np.ix_([1, 3], [1, 3])] = block
    return {"transition_matrix": F, "observation_matrix": np.eye(2, 4),
            "transition_covariance": Q, "observation_covariance": r * np.eye(2),
            "initial_state_mean": np.array([0.0, 0.0, 1.0, -1.0]),
            "initial_state_covariance": np.eye(4)}


def _draw(rng: np.random.Generator, mean: np.ndarray, cov: np.ndarray, size: int) -> np.ndarray:
    """`size` draws from N(mean, cov) (cov may be singular, e.g. Q = 0)."""
    w, V = np.linalg.eigh(cov)
    root = V * np.sqrt(np.clip(w, 0, None))
    return mean + rng.standard_normal((size, len(mean))) @ root.T


def check_params(p: dict[str, Any]) -> dict[str, np.ndarray]:
    """Shapes agree, everything is finite, covariances are symmetric positive (semi)definite.

    Q may be singular (deterministic dynamics); R and P0 must be positive definite.
    """
    p = {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}
    F, H = p["transition_matrix"], p["observation_matrix"]
    if F.ndim != 2 or F.shape[0] != F.shape[1]:
        raise SeqlabError(f"transition_matrix must be square (n, n), got shape {F.shape}")
    n = F.shape[0]
    d = H.shape[0] if H.ndim == 2 else -1
    want = {"observation_matrix": (d, n), "transition_covariance": (n, n),
            "observation_covariance": (d, d), "initial_state_mean": (n,),
            "initial_state_covariance": (n, n)}
    for k, shape in want.items():
        if p[k].shape != shape or d < 1:
            raise SeqlabError(f"{k} must have shape {shape if d >= 1 else '(d, n)'} for "
                              f"n = {n} states, got {p[k].shape}")
    for k, v in p.items():
        if not np.all(np.isfinite(v)):
            raise SeqlabError(f"{k} must be finite, got NaN or infinity")
    for k, strict in (("transition_covariance", False), ("observation_covariance", True),
                      ("initial_state_covariance", True)):
        _check_covariance(k, p[k], strict)
    return p


def _check_covariance(name: str, C: np.ndarray, strict: bool) -> None:
    if not np.allclose(C, C.T, rtol=1e-10, atol=1e-12):
        raise SeqlabError(f"{name} must be symmetric, got max |C - C^T| = "
                          f"{np.abs(C - C.T).max():.3g}")
    low = float(np.linalg.eigvalsh(0.5 * (C + C.T))[0])
    scale = max(float(np.abs(C).max()), 1e-300)
    if low <= 0 if strict else low < -1e-12 * scale:
        need = "positive definite" if strict else "positive semidefinite"
        raise SeqlabError(f"{name} must be {need}, got smallest eigenvalue {low:.6g}")


# --- input checks --------------------------------------------------------------------------------
def as_observations(X: Any) -> np.ndarray:
    """X as a float64 array: one line saying what was expected for ragged or non-numeric X.

    NaN (and None in a list) marks a missing entry; the shape is checked by the caller.
    """
    try:
        arr = np.asarray(X)
    except ValueError:  # numpy refuses nested lists of unequal lengths
        raise SeqlabError(_ragged(X)) from None
    if arr.dtype == object:
        if any(np.ndim(v) > 0 for v in arr.flat):  # a list of arrays of unequal lengths
            raise SeqlabError(_ragged(X))
        bad = next((v for v in arr.flat if v is not None and not _is_real(v)), None)
        if bad is not None:
            raise SeqlabError(f"observations must be real numbers, got a {type(bad).__name__} "
                              f"entry ({bad!r:.40})")
        return arr.astype(np.float64)  # None -> NaN, i.e. missing
    if arr.dtype.kind not in "biuf":
        raise SeqlabError(f"observations must be real numbers, got an array of dtype "
                          f"{arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating | np.bool_)  # bool is an int


def _ragged(X: Any) -> str:
    """The message for sequences of unequal lengths, with their lengths when they have any."""
    try:
        lens = [len(s) for s in X]
    except TypeError:
        lens = []
    got = f"sequences of lengths {describe(lens, 6)}" if lens else "a ragged nested list"
    return ("observations must be one array, (T, d) or (B, T, d); pass sequences of different "
            f"lengths concatenated, with lengths=[...] (got {got})")


def _check_lengths(lengths: Any, N: int) -> list[int]:
    """`lengths` as a list of non-negative ints summing to N (the count of rows in X)."""
    try:
        arr = np.asarray(lengths)
    except ValueError:
        arr = np.asarray(None)
    ok = arr.ndim == 1 and (arr.dtype.kind in "iu" or (
        arr.dtype.kind == "f" and np.all(arr == np.round(arr))))
    if not ok or np.any(arr < 0):
        got = f"[{describe(arr.tolist(), 6)}]" if arr.ndim == 1 else f"{lengths!r:.60}"
        raise SeqlabError(f"lengths must be a list of non-negative integers summing to len(X) = "
                          f"{N}, got {got}")
    if int(arr.sum()) != N:
        raise SeqlabError(f"lengths must be non-negative and sum to len(X) = {N}, got sum "
                          f"{int(arr.sum())} over {len(arr)} sequences")
    return [int(n) for n in arr]
