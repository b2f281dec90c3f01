"""Hidden Markov models with exact inference, and an HMM language model.

References: L. Rabiner (1989), "A tutorial on hidden Markov models and selected applications in
speech recognition" (scaled forward-backward, Baum-Welch, Viterbi); C. Bishop (2006), *Pattern
Recognition and Machine Learning*, section 13.2; the API of hmmlearn (``hmmlearn/base.py``).

The API follows scikit-learn and hmmlearn: ``__init__`` only stores hyperparameters,
``fit(X, lengths=None)`` returns ``self``, learned parameters end in ``_`` (``startprob_``,
``transmat_``, ``emissionprob_``, ``means_``, ``covars_``), several sequences are passed as one
concatenated ``X`` plus ``lengths``, and randomness comes from ``random_state``.

* ``CategoricalHMM``: symbols 0..M-1, emission matrix ``emissionprob_`` (K, M).
* ``GaussianHMM``: vectors in R^D, ``means_`` (K, D) and ``covars_`` in the shape of its
  ``covariance_type``: spherical (K,), diag (K, D), full (K, D, D), tied (D, D).
* ``HMMLM``: a categorical HMM as a seqlab language model over a `Vocab` (family "hmm"): the
  one-step predictive distribution p(x_t | x_<t) is the forward filter, and the sampler's
  "state" is the belief over the next hidden state.

Inference runs in compiled loops (`seqlab.models._hmm_kernels`). Forward-backward is scaled:
every forward vector is normalised and its normaliser kept, so sequences of any length are safe
from underflow; frame likelihoods are scaled per step too, so Gaussian densities far in a tail
cannot underflow either. Baum-Welch runs ``n_init`` random restarts and keeps the best;
``convergence_`` reports every restart's log-likelihood curve.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch

from seqlab.config import check_range
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError, describe
from seqlab.io import save_tensors
from seqlab.models import _hmm_kernels as kernels
from seqlab.models.base import TokenModel
from seqlab.params import Params
from seqlab.protocol import split_lengths
from seqlab.run import Run

LOG_2PI = math.log(2 * math.pi)
# Called after every EM iteration with (restart, iteration, log-likelihood before the M-step);
# returning True stops the current restart.
IterationHook = Callable[[int, int, float], bool | None]


# --- input checks ------------------------------------------------------------------------------
def check_distribution(name: str, p: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`p` as float64 of `shape`, finite, non-negative, each row summing to 1."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape != shape:
        raise SeqlabError(f"{name} must have shape {shape}, got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise SeqlabError(f"{name} must be finite and non-negative, got min {np.nanmin(p)}"
                          f"{' and NaN' if np.isnan(p).any() else ''}")
    sums = p.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0, atol=1e-8):
        what = "must sum to 1" if p.ndim == 1 else "rows must sum to 1"
        bad = np.atleast_1d(sums)[~np.isclose(np.atleast_1d(sums), 1.0, rtol=0, atol=1e-8)]
        raise SeqlabError(f"{name} {what} (got {'a sum' if p.ndim == 1 else 'row sums'} of "
                          f"{describe(np.round(bad, 6).tolist(), 4)})")
    return p


def check_covariances(name: str, covars: np.ndarray, kind: str, K: int, D: int) -> np.ndarray:
    """Covariances of `kind` as float64, checked positive (definite); returns them."""
    shapes = {"spherical": (K,), "diag": (K, D), "full": (K, D, D), "tied": (D, D)}
    covars = np.asarray(covars, dtype=np.float64)
    if covars.shape != shapes[kind]:
        raise SeqlabError(f"{name} for covariance_type={kind!r} must have shape "
                          f"{shapes[kind]}, got {covars.shape}")
    if not np.all(np.isfinite(covars)):
        raise SeqlabError(f"{name} must be finite, got NaN or infinity")
    if kind in ("spherical", "diag"):
        if np.any(covars <= 0):
            raise SeqlabError(f"{name} must be positive, got minimum {covars.min():.6g}")
        return covars
    mats = covars.reshape(-1, D, D)
    for k, m in enumerate(mats):
        if not np.allclose(m, m.T, rtol=1e-8, atol=1e-12):
            raise SeqlabError(f"{name} must be symmetric, got an asymmetric matrix"
                              + (f" for state {k}" if kind == "full" else ""))
        eig = np.linalg.eigvalsh(m)
        if eig[0] <= 0:
            raise SeqlabError(f"{name} must be positive definite, got smallest eigenvalue "
                              f"{eig[0]:.6g}" + (f" for state {k}" if kind == "full" else ""))
    return covars


def _as_symbols(X: Any, n_features: int | None) -> np.ndarray:
    """Categorical data as int64 symbols (T,); accepts (T,) or hmmlearn's (T, 1)."""
    X = np.asarray(X)
    if X.ndim == 2 and X.shape[1] == 1:
        X = X[:, 0]
    if X.ndim != 1:
        raise SeqlabError(f"categorical data must have shape (T,) or (T, 1), got {X.shape}")
    if X.dtype.kind == "f":
        if np.isnan(X).any():
            raise SeqlabError(f"categorical data must be integer symbols, got NaN at position "
                              f"{int(np.flatnonzero(np.isnan(X))[0])}")
        if not np.all(np.round(X) == X):
            raise SeqlabError("categorical data must be integer symbols, got non-integer values")
    elif X.dtype.kind not in "iub" and X.size:
        raise SeqlabError(f"categorical data must be integer symbols, got dtype {X.dtype}")
    X = X.astype(np.int64)
    if X.size and X.min() < 0:
        raise SeqlabError(f"symbols must be >= 0, got {X.min()}")
    if n_features is not None and X.size and X.max() >= n_features:
        raise SeqlabError(f"symbols must be in [0, {n_features}) (the alphabet of n_features="
                          f"{n_features}), got {X.max()}")
    return X


def _as_frames(X: Any, n_features: int | None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise SeqlabError(f"Gaussian HMM data must have shape (T, D), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise SeqlabError("Gaussian HMM data must be finite, got NaN or infinity")
    if n_features is not None and X.shape[1] != n_features:
        raise SeqlabError(f"expected {n_features} features per step, got {X.shape[1]}")
    return X


# --- convergence report -------------------------------------------------------------------------
@dataclass
class ConvergenceReport:
    """What Baum-Welch did: the log-likelihood after each E-step, for every restart."""

    tol: float  # convergence threshold on the log-likelihood gain per iteration
    n_iter: int  # iteration budget per restart
    history: list[list[float]] = field(default_factory=list)  # per restart
    converged: list[bool] = field(default_factory=list)  # per restart
    best: int = 0  # the restart that was kept

    @property
    def log_likelihood(self) -> float:
        """Final log-likelihood of the kept restart (before its last M-step)."""
        return self.history[self.best][-1]

    def summary(self) -> str:
        rows = [f"restart {i}: {len(h)} iterations, log-likelihood {h[-1]:.6f}"
                f"{'' if c else ' (not converged)'}{' <- kept' if i == self.best else ''}"
                for i, (h, c) in enumerate(zip(self.history, self.converged, strict=True))]
        return "\n".join(rows)


@dataclass
class _Stats:
    """Sufficient statistics accumulated over sequences in one E-step."""

    log_prob: float
    start: np.ndarray  # (K,) expected initial states
    trans: np.ndarray  # (K, K) expected transitions
    post: np.ndarray  # (K,) expected state occupancy
    emission: dict[str, np.ndarray]  # family-specific


# --- the model families ---------------------------------------------------------------------------
class BaseHMM(Params):
    """Shared inference and Baum-Welch; subclasses define the emission model.

    Args:
        n_components: K, the number of hidden states.
        startprob_prior, transmat_prior: Dirichlet concentrations (1.0 = maximum likelihood).
        algorithm: the decoder ``predict`` uses: "viterbi" or "map" (posterior argmax).
        random_state: seed or `numpy.random.Generator` for initialisation and sampling.
        n_iter, tol: iteration budget and convergence threshold (log-likelihood gain).
        n_init: random restarts; the one with the highest final log-likelihood is kept.
        params, init_params: letters of the parameters to update / initialise at random
            (s = startprob, t = transmat, e = emissions, m = means, c = covars).
        verbose: print the log-likelihood of every iteration to stderr.

    Subclasses list every argument in their own ``__init__`` (no ``**kwargs``): `Params` reads
    the signature, so ``get_params``, ``set_params`` and ``sklearn.base.clone`` see them all.
    """

    emission_letters: ClassVar[str] = "e"
    # The hyperparameters every subclass's __init__ lists (and stores with `_store`).
    n_components: int
    startprob_prior: float
    transmat_prior: float
    algorithm: str
    random_state: int | np.random.Generator | None
    n_iter: int
    tol: float
    n_init: int
    params: str
    init_params: str
    verbose: bool
    # Learned by fit (or set by hand); absent until then, which `_check` tests with hasattr.
    startprob_: np.ndarray
    transmat_: np.ndarray

    # --- the emission model (subclasses) ---------------------------------------------------
    def _prepare(self, X: Any, fitting: bool = False) -> np.ndarray:
        """Checked data; `fitting` checks it against the hyperparameters only, not the fitted
        ``n_features_`` (a refit, e.g. after ``set_params``, must behave like a fresh fit)."""
        raise NotImplementedError

    def _log_frames(self, X: np.ndarray) -> np.ndarray:
        """log p(x_t | z_t = k), (T, K)."""
        raise NotImplementedError

    def _init_emissions(self, X: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _check_emissions(self) -> None:
        raise NotImplementedError

    def _emission_stats(self, X: np.ndarray, gamma: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _mstep_emissions(self, stats: _Stats) -> None:
        raise NotImplementedError

    def _sample_emissions(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _emission_params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # --- checks ----------------------------------------------------------------------------
    def _check_hyper(self) -> None:
        if not (isinstance(self.n_components, int | np.integer) and self.n_components >= 1):
            raise SeqlabError(f"n_components must be a positive integer, got "
                              f"{self.n_components!r}")
        if self.n_iter < 1 or self.n_init < 1:
            raise SeqlabError(f"n_iter and n_init must be >= 1, got {self.n_iter} and "
                              f"{self.n_init}")
        if self.algorithm not in ("viterbi", "map"):
            raise SeqlabError(f"algorithm must be 'viterbi' or 'map', got {self.algorithm!r}")

    def _check(self) -> None:
        """Validate the current parameters (set by fit or by hand)."""
        if not hasattr(self, "startprob_") or not hasattr(self, "transmat_"):
            raise SeqlabError(f"this {type(self).__name__} has no parameters yet; call fit() "
                              "or set startprob_ and transmat_")
        K = self.n_components
        self.startprob_ = check_distribution("startprob_", self.startprob_, (K,))
        self.transmat_ = check_distribution("transmat_", self.transmat_, (K, K))
        self._check_emissions()

    def _sequences(self, X: Any, lengths: Any, fitting: bool = False) -> list[np.ndarray]:
        return split_lengths(self._prepare(X, fitting),
                             None if lengths is None else list(lengths))

    # --- inference -------------------------------------------------------------------------
    def _frames(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame likelihoods for the kernels: a table, the row of each step, and per step the
        log of the scale divided out (rows are scaled to a maximum of 1, so no density
        underflows)."""
        logB = self._log_frames(x)
        shift = logB.max(axis=1) if len(x) else np.zeros(0)
        if not np.all(np.isfinite(shift)):  # some frame is impossible in every state
            return np.zeros_like(logB), np.arange(len(x)), np.full(len(x), -np.inf)
        return np.exp(logB - shift[:, None]), np.arange(len(x)), shift

    def _log_table(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log frame likelihoods as a table and the row of each step (for Viterbi)."""
        return self._log_frames(x), np.arange(len(x))

    def _forward(self, x: np.ndarray, work: _Workspace | None = None
                 ) -> tuple[float, np.ndarray, np.ndarray, tuple]:
        work = work or _Workspace(len(x), self.n_components)
        alpha, c = work.alpha[: len(x)], work.c[: len(x)]
        B, idx, shift = self._frames(x)
        AT = np.ascontiguousarray(self.transmat_.T)
        logp = kernels.forward_scaled(self.startprob_, AT, B, idx, alpha, c)
        return logp + shift.sum(), alpha, c, (B, idx, shift)

    def _forward_backward(self, x: np.ndarray, work: _Workspace | None = None,
                          keep_beta: bool = False
                          ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """log p(x), alpha (normalised), beta (scaled; empty unless `keep_beta`), the
        posteriors gamma, and w for the xi sums (see `kernels.backward_scaled`)."""
        T, K = len(x), self.n_components
        work = work or _Workspace(T, K)
        logp, alpha, c, (B, idx, _) = self._forward(x, work)
        if not np.isfinite(logp):
            return -np.inf, alpha, alpha, alpha, alpha
        gamma, w = work.gamma[:T], work.w[:T]
        beta = np.empty((T if keep_beta else 0, K))
        kernels.backward_scaled(self.transmat_, B, idx, c, alpha, gamma, w, beta)
        return logp, alpha, beta, gamma, w

    def forward_backward(self, X: Any) -> dict[str, Any]:
        """Lattices of one sequence: ``log_prob``, ``alpha`` (each row normalised to sum to 1,
        p(z_t | x_1..t)), ``beta`` (backward messages, scaled by the same normalisers) and
        ``posteriors`` p(z_t | x) = alpha * beta."""
        self._check()
        logp, alpha, beta, gamma, _ = self._forward_backward(self._prepare(X), keep_beta=True)
        return {"log_prob": logp, "alpha": alpha, "beta": beta, "posteriors": gamma}

    def score(self, X: Any, lengths: Any = None) -> float:
        """log p(X), summed over the sequences."""
        self._check()
        total = 0.0
        for x in self._sequences(X, lengths):
            total += self._forward(x)[0]
        return total

    def score_steps(self, X: Any, lengths: Any = None) -> np.ndarray:
        """log p(x_t | x_1..t-1) for every step (T,): the one-step predictive densities."""
        self._check()
        out = []
        for x in self._sequences(X, lengths):
            _, _, c, (_, _, shift) = self._forward(x)
            with np.errstate(divide="ignore"):
                out.append(np.log(c) + shift)  # c_t = 0 from an impossible step on: -inf
        return np.concatenate(out) if out else np.zeros(0)

    def score_samples(self, X: Any, lengths: Any = None) -> tuple[float, np.ndarray]:
        """log p(X) and the posterior marginals p(z_t | x) (T, K)."""
        self._check()
        total, post = 0.0, []
        for x in self._sequences(X, lengths):
            logp, _, _, gamma, _ = self._forward_backward(x)
            total += logp
            post.append(gamma)
        return total, np.concatenate(post) if post else np.zeros((0, self.n_components))

    def predict_proba(self, X: Any, lengths: Any = None) -> np.ndarray:
        return self.score_samples(X, lengths)[1]

    def decode(self, X: Any, lengths: Any = None, algorithm: str | None = None
               ) -> tuple[float, np.ndarray]:
        """The most likely state path: joint log-probability and states (T,).

        "viterbi" maximises p(z, x) over whole paths; "map" takes the argmax of every posterior
        marginal (its log-probability is the sum of the chosen log-posteriors, as hmmlearn).
        """
        algorithm = algorithm or self.algorithm
        if algorithm not in ("viterbi", "map"):
            raise SeqlabError(f"algorithm must be 'viterbi' or 'map', got {algorithm!r}")
        self._check()
        total, paths = 0.0, []
        for x in self._sequences(X, lengths):
            if algorithm == "viterbi":
                with np.errstate(divide="ignore"):
                    logp, path = kernels.viterbi(np.log(self.startprob_),
                                                 np.log(self.transmat_), *self._log_table(x))
            else:
                _, _, _, gamma, _ = self._forward_backward(x)
                path = gamma.argmax(axis=1)
                with np.errstate(divide="ignore"):
                    logp = float(np.log(gamma.max(axis=1)).sum())
            total += logp
            paths.append(path)
        return total, np.concatenate(paths) if paths else np.zeros(0, dtype=np.int64)

    def predict(self, X: Any, lengths: Any = None) -> np.ndarray:
        return self.decode(X, lengths)[1]

    def sample(self, n_samples: int = 1, random_state: int | np.random.Generator | None = None,
               currstate: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw one sequence: observations and hidden states (n_samples,)."""
        self._check()
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        if currstate is not None and not 0 <= currstate < self.n_components:
            raise SeqlabError(f"currstate must be in [0, {self.n_components}), got {currstate}")
        z = kernels.sample_states(np.cumsum(self.startprob_), np.cumsum(self.transmat_, axis=1),
                                  rng.random(n_samples), -1 if currstate is None else currstate)
        return self._sample_emissions(z, rng), z

    # --- Baum-Welch ------------------------------------------------------------------------
    def fit(self, X: Any, lengths: Any = None, *, on_iteration: IterationHook | None = None
            ) -> Self:
        """Baum-Welch from ``n_init`` random starts; keeps the best and fills ``convergence_``."""
        self._check_hyper()
        seqs = self._sequences(X, lengths, fitting=True)
        data = np.concatenate(seqs) if seqs else self._prepare(X, fitting=True)
        if len(data) == 0:
            raise SeqlabError("fit needs at least one observation, got an empty X")
        seeds = np.random.SeedSequence(_entropy(self.random_state)).spawn(self.n_init)
        report, best, fixed = ConvergenceReport(self.tol, self.n_iter), None, self._params()
        for r, seed in enumerate(seeds):
            self._set_params(fixed)
            self._init(data, np.random.default_rng(seed))
            history, converged = self._em(seqs, r, on_iteration)
            report.history.append(history)
            report.converged.append(converged)
            if best is None or history[-1] > report.history[report.best][-1]:
                report.best, best = r, self._params()
        self._set_params(best)
        self.convergence_ = report
        return self

    def _em(self, seqs: list[np.ndarray], restart: int, hook: IterationHook | None
            ) -> tuple[list[float], bool]:
        history: list[float] = []
        work = _Workspace(max(len(x) for x in seqs), self.n_components)
        for it in range(self.n_iter):
            stats = self._estep(seqs, work)
            if not np.isfinite(stats.log_prob):
                raise SeqlabError("the data has probability 0 under the current parameters "
                                  "(a symbol or transition the fixed parameters forbid)")
            self._mstep(stats)
            history.append(float(stats.log_prob))
            if self.verbose:
                print(f"restart {restart} iteration {it}: log-likelihood {stats.log_prob:.6f}",
                      file=sys.stderr)
            if hook is not None and hook(restart, it, stats.log_prob):
                return history, False
            if len(history) > 1 and history[-1] - history[-2] < self.tol:
                return history, True
        return history, False

    def _init(self, X: np.ndarray, rng: np.random.Generator) -> None:
        K = self.n_components
        if "s" in self.init_params or not hasattr(self, "startprob_"):
            self.startprob_ = rng.dirichlet(np.ones(K))
        if "t" in self.init_params or not hasattr(self, "transmat_"):
            self.transmat_ = rng.dirichlet(np.ones(K), size=K)
        self._init_emissions(X, rng)
        self._check()

    def _estep(self, seqs: list[np.ndarray], work: _Workspace) -> _Stats:
        K = self.n_components
        stats = _Stats(0.0, np.zeros(K), np.zeros((K, K)), np.zeros(K), {})
        for x in seqs:
            if len(x) == 0:
                continue
            logp, alpha, _, gamma, w = self._forward_backward(x, work)
            stats.log_prob += logp
            if not np.isfinite(logp):
                return stats
            stats.start += gamma[0]
            if len(x) > 1:
                stats.trans += self.transmat_ * (alpha[:-1].T @ w[1:])  # sum_t xi_t (K, K)
            stats.post += gamma.sum(axis=0)
            for k, v in self._emission_stats(x, gamma).items():
                stats.emission[k] = stats.emission.get(k, 0) + v
        return stats

    def _mstep(self, stats: _Stats) -> None:
        # MAP under Dirichlet priors; like hmmlearn, entries fixed at 0 stay 0 (left-right
        # models), and negative pseudo-counts (prior < 1) clip to 0.
        if "s" in self.params:
            self.startprob_ = _normalise(np.where(
                self.startprob_ == 0, 0, np.maximum(self.startprob_prior - 1 + stats.start, 0)))
        if "t" in self.params:
            self.transmat_ = _normalise(np.where(
                self.transmat_ == 0, 0, np.maximum(self.transmat_prior - 1 + stats.trans, 0)))
        self._mstep_emissions(stats)

    # --- parameters as a dict (restarts, checkpoints) -------------------------------------
    def _params(self) -> dict[str, np.ndarray]:
        out = {k: getattr(self, k) for k in ("startprob_", "transmat_") if hasattr(self, k)}
        return {**out, **self._emission_params()}

    def _set_params(self, params: dict[str, np.ndarray] | None) -> None:
        for k, v in (params or {}).items():
            setattr(self, k, np.array(v, dtype=np.float64))


class _Workspace:
    """(T, K) buffers the kernels fill, allocated once and reused by every EM iteration."""

    def __init__(self, T: int, K: int) -> None:
        self.alpha, self.gamma, self.w = (np.empty((T, K)) for _ in range(3))
        self.c = np.empty(T)


def _normalise(a: np.ndarray) -> np.ndarray:
    s = a.sum(axis=-1, keepdims=True)
    return np.divide(a, s, out=np.full_like(a, 1.0 / a.shape[-1]), where=s > 0)


def _entropy(random_state: int | np.random.Generator | None) -> int | None:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    return random_state


class CategoricalHMM(BaseHMM):
    """HMM with categorical emissions over symbols 0..n_features-1.

    Args (beyond `BaseHMM`):
        n_features: M, the alphabet size (default: 1 + the largest symbol seen by fit).
        emissionprob_prior: Dirichlet concentration on each emission row; 1 + c adds c
            pseudo-counts, so symbols never seen in training keep non-zero probability.
    """

    n_features: int | None  # stored by `_store`, as BaseHMM's hyperparameters
    emissionprob_prior: float

    def __init__(self, n_components: int = 1, *, n_features: int | None = None,
                 emissionprob_prior: float = 1.0, startprob_prior: float = 1.0,
                 transmat_prior: float = 1.0, algorithm: str = "viterbi",
                 random_state: int | np.random.Generator | None = None, n_iter: int = 10,
                 tol: float = 1e-2, n_init: int = 1, params: str = "ste",
                 init_params: str = "ste", verbose: bool = False) -> None:
        self._store(locals())

    def _prepare(self, X: Any, fitting: bool = False) -> np.ndarray:
        fitted = None if fitting else getattr(self, "n_features_", None)
        return _as_symbols(X, fitted or self.n_features)

    def _init_emissions(self, X: np.ndarray, rng: np.random.Generator) -> None:
        self.n_features_ = self.n_features or int(X.max()) + 1
        if "e" in self.init_params or not hasattr(self, "emissionprob_"):
            self.emissionprob_ = rng.dirichlet(np.ones(self.n_features_), size=self.n_components)

    def _check_emissions(self) -> None:
        if not hasattr(self, "emissionprob_"):
            raise SeqlabError("this CategoricalHMM has no emissionprob_; call fit() or set it")
        M = np.shape(self.emissionprob_)[-1] if np.ndim(self.emissionprob_) == 2 else -1
        if self.n_features is not None and self.n_features != M:
            raise SeqlabError(f"emissionprob_ must have n_features={self.n_features} columns, "
                              f"got {M}")
        self.emissionprob_ = check_distribution("emissionprob_", self.emissionprob_,
                                                (self.n_components, max(M, 1)))
        self.n_features_ = M

    def _log_frames(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.emissionprob_.T)[X]  # (T, K)

    def _frames(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # the (M, K) emission table indexed by the symbols; probabilities need no scaling
        self._check_symbols(x)
        return np.ascontiguousarray(self.emissionprob_.T), x, np.zeros(len(x))

    def _log_table(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._check_symbols(x)
        with np.errstate(divide="ignore"):
            return np.log(np.ascontiguousarray(self.emissionprob_.T)), x

    def _check_symbols(self, x: np.ndarray) -> None:
        if len(x) and x.max() >= self.n_features_:
            raise SeqlabError(f"symbols must be in [0, {self.n_features_}) (the alphabet of "
                              f"emissionprob_), got {x.max()}")

    def _emission_stats(self, X: np.ndarray, gamma: np.ndarray) -> dict[str, np.ndarray]:
        return {"counts": kernels.categorical_counts(X, gamma, self.n_features_)}

    def _mstep_emissions(self, stats: _Stats) -> None:
        if "e" in self.params:
            e = np.maximum(self.emissionprob_prior - 1 + stats.emission["counts"], 0)
            self.emissionprob_ = _normalise(np.where(self.emissionprob_ == 0, 0, e))

    def _sample_emissions(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return kernels.sample_categorical(np.cumsum(self.emissionprob_, axis=1), z,
                                          rng.random(len(z)))

    def _emission_params(self) -> dict[str, np.ndarray]:
        return {"emissionprob_": self.emissionprob_} if hasattr(self, "emissionprob_") else {}


CovarianceType = Literal["spherical", "diag", "full", "tied"]


class GaussianHMM(BaseHMM):
    """HMM with Gaussian emissions; M-step with hmmlearn's conjugate priors.

    Args (beyond `BaseHMM`):
        covariance_type: spherical, diag, full or tied (see the module docstring for shapes).
        min_covar: added to the diagonal of the data covariance that initialises ``covars_``.
        means_prior, means_weight: Normal prior on the means (weight 0 = none).
        covars_prior, covars_weight: inverse-gamma / inverse-Wishart prior on covariances;
            the default 1e-2 keeps a state that owns a single point from collapsing.
    """

    emission_letters = "mc"
    covariance_type: CovarianceType  # stored by `_store`, as BaseHMM's hyperparameters
    min_covar: float
    means_prior: float
    means_weight: float
    covars_prior: float
    covars_weight: float

    def __init__(self, n_components: int = 1, *, covariance_type: CovarianceType = "diag",
                 min_covar: float = 1e-3, means_prior: float = 0.0, means_weight: float = 0.0,
                 covars_prior: float = 1e-2, covars_weight: float = 1.0,
                 startprob_prior: float = 1.0, transmat_prior: float = 1.0,
                 algorithm: str = "viterbi", random_state: int | np.random.Generator | None = None,
                 n_iter: int = 10, tol: float = 1e-2, n_init: int = 1, params: str = "stmc",
                 init_params: str = "stmc", verbose: bool = False) -> None:
        self._store(locals())

    def _prepare(self, X: Any, fitting: bool = False) -> np.ndarray:
        return _as_frames(X, None if fitting else getattr(self, "n_features_", None))

    def _check_hyper(self) -> None:
        super()._check_hyper()
        if self.covariance_type not in ("spherical", "diag", "full", "tied"):
            raise SeqlabError("covariance_type must be spherical, diag, full or tied, got "
                              f"{self.covariance_type!r}")

    def _init_emissions(self, X: np.ndarray, rng: np.random.Generator) -> None:
        K, D = self.n_components, X.shape[1]
        self.n_features_ = D
        if "m" in self.init_params or not hasattr(self, "means_"):
            self.means_ = _kmeans(X, K, rng)
        if "c" in self.init_params or not hasattr(self, "covars_"):
            cv = np.atleast_2d(np.cov(X.T)) + self.min_covar * np.eye(D) if len(X) > 1 \
                else np.eye(D)
            self.covars_ = {"spherical": np.full(K, np.diag(cv).mean()),
                            "diag": np.tile(np.diag(cv), (K, 1)),
                            "full": np.tile(cv, (K, 1, 1)), "tied": cv}[self.covariance_type]

    def _check_emissions(self) -> None:
        if not hasattr(self, "means_") or not hasattr(self, "covars_"):
            raise SeqlabError("this GaussianHMM has no means_/covars_; call fit() or set them")
        self.means_ = np.asarray(self.means_, dtype=np.float64)
        if self.means_.ndim != 2 or self.means_.shape[0] != self.n_components:
            raise SeqlabError(f"means_ must have shape ({self.n_components}, D), got "
                              f"{self.means_.shape}")
        self.n_features_ = self.means_.shape[1]
        self.covars_ = check_covariances("covars_", self.covars_, self.covariance_type,
                                         self.n_components, self.n_features_)

    def _full_covars(self) -> np.ndarray:
        """(K, D, D) covariance matrices whatever the covariance_type."""
        K, D, c = self.n_components, self.n_features_, self.covars_
        return {"spherical": lambda: c[:, None, None] * np.eye(D),
                "diag": lambda: np.einsum("kd,de->kde", c, np.eye(D)),
                "full": lambda: c, "tied": lambda: np.tile(c, (K, 1, 1))}[self.covariance_type]()

    def _log_frames(self, X: np.ndarray) -> np.ndarray:
        D = X.shape[1]
        if self.covariance_type in ("spherical", "diag"):
            var = self.covars_[:, None] * np.ones(D) if self.covariance_type == "spherical" \
                else self.covars_  # (K, D)
            m, prec = self.means_, 1.0 / var
            quad = (X**2) @ prec.T - 2 * X @ (m * prec).T + (m**2 * prec).sum(1)  # (T, K)
            return -0.5 * (D * LOG_2PI + np.log(var).sum(1) + quad)
        out = np.empty((len(X), self.n_components))
        for k, (mu, cov) in enumerate(zip(self.means_, self._full_covars(), strict=True)):
            L = np.linalg.cholesky(cov)
            z = np.linalg.solve(L, (X - mu).T)  # (D, T)
            out[:, k] = -0.5 * (D * LOG_2PI + 2 * np.log(np.diag(L)).sum() + (z**2).sum(0))
        return out

    def _emission_stats(self, X: np.ndarray, gamma: np.ndarray) -> dict[str, np.ndarray]:
        stats = {"obs": gamma.T @ X}  # (K, D)
        if self.covariance_type in ("spherical", "diag"):
            stats["obs**2"] = gamma.T @ X**2
        else:
            stats["obs*obs.T"] = np.einsum("tk,td,te->kde", gamma, X, X)
        return stats

    def _mstep_emissions(self, stats: _Stats) -> None:
        # hmmlearn's MAP updates (GaussianHMM._do_mstep), with the same priors
        post, obs = stats.post[:, None], stats.emission["obs"]
        if "m" in self.params:
            self.means_ = (self.means_weight * self.means_prior + obs) / (self.means_weight + post)
        if "c" not in self.params:
            return
        m, diff = self.means_, self.means_ - self.means_prior
        if self.covariance_type in ("spherical", "diag"):
            num = (self.means_weight * diff**2 + stats.emission["obs**2"] - 2 * m * obs
                   + m**2 * post)
            cv = (self.covars_prior + num) / np.maximum(max(self.covars_weight - 1, 0) + post,
                                                        1e-5)
            self.covars_ = cv.mean(1) if self.covariance_type == "spherical" else cv
            return
        om = np.einsum("kd,ke->kde", obs, m)
        num = (self.means_weight * np.einsum("kd,ke->kde", diff, diff)
               + stats.emission["obs*obs.T"] - om - om.transpose(0, 2, 1)
               + np.einsum("kd,ke->kde", m, m) * stats.post[:, None, None])
        w = max(self.covars_weight - self.n_features_, 0)
        if self.covariance_type == "tied":
            self.covars_ = (self.covars_prior + num.sum(0)) / (w + stats.post.sum())
        else:
            self.covars_ = (self.covars_prior + num) / (w + stats.post[:, None, None])

    def _sample_emissions(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        chol = np.linalg.cholesky(self._full_covars())  # (K, D, D)
        eps = rng.standard_normal((len(z), self.n_features_))
        return self.means_[z] + np.einsum("tde,te->td", chol[z], eps)

    def _emission_params(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("means_", "covars_") if hasattr(self, k)}


def _kmeans(X: np.ndarray, K: int, rng: np.random.Generator, iters: int = 20) -> np.ndarray:
    """Cluster centres for initial means: k-means++ seeding, then Lloyd iterations."""
    centres = [X[rng.integers(len(X))]]
    for _ in range(1, K):
        d2 = ((X[:, None, :] - np.array(centres)[None]) ** 2).sum(-1).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(X), 1 / len(X))
        centres.append(X[rng.choice(len(X), p=p)])
    c = np.array(centres, dtype=np.float64)
    for _ in range(iters):
        label = ((X[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        for k in range(K):
            if np.any(label == k):
                c[k] = X[label == k].mean(0)
    return c


# --- the language model ------------------------------------------------------------------------
@dataclass
class HMMConfig:
    """Settings of the HMM language model (a categorical HMM over the vocabulary)."""

    n_states: int = 32  # K: hidden states
    n_iter: int = 100  # Baum-Welch iterations at most (train.max_steps caps them too)
    tol: float = 1e-4  # stop when training nats per token improve by less than this
    n_init: int = 1  # random restarts, each run to convergence; the best training fit is kept
    pseudocount: float = 1e-2  # added to every emission count: unseen tokens keep p > 0

    def __post_init__(self) -> None:
        if self.n_states < 1 or self.n_iter < 1 or self.n_init < 1:
            raise SeqlabError(f"model.n_states, model.n_iter and model.n_init must be >= 1, got "
                              f"{self.n_states}, {self.n_iter} and {self.n_init}")
        check_range("model.pseudocount", self.pseudocount, ">= 0")
        check_range("model.tol", self.tol, ">= 0")


class HMMLM(TokenModel):
    """A categorical HMM as a language model: p(x_t | x_<t) from the forward filter.

    Every stream is the virtual end-of-line token followed by the data (see `seqlab.protocol`):
    the end-of-line token is an observation of the HMM, never scored. The sampler's state is the
    belief over the next hidden state, p(z_t | x_<t).
    """

    family = "hmm"
    Config = HMMConfig

    def __init__(self, config: HMMConfig, vocab: Vocab) -> None:
        self.config, self.vocab = config, vocab
        self.name = "hmm"

    def _streams(self, X: np.ndarray, lengths: list[int] | None) -> tuple[np.ndarray, list[int]]:
        """Each sequence with the virtual end-of-line token in front, and the new lengths."""
        segs = split_lengths(_as_symbols(X, len(self.vocab)), lengths)
        eos = self.vocab.eos_id
        return (np.concatenate([np.concatenate([[eos], s]) for s in segs]).astype(np.int64),
                [len(s) + 1 for s in segs])

    # --- training ------------------------------------------------------------------------
    def fit(self, X: np.ndarray, lengths: list[int] | None = None, *,
            valid: np.ndarray | None = None, run: Run | None = None) -> Self:
        """Baum-Welch on the training stream; logs the EM curve and keeps the best valid fit."""
        run = run or Run()
        data, lens = self._streams(X, lengths)
        cfg, n_tok = self.config, len(data) - len(lens)
        self.hmm_ = CategoricalHMM(
            cfg.n_states, n_features=len(self.vocab), emissionprob_prior=1 + cfg.pseudocount,
            n_iter=min(cfg.n_iter, run.train.max_steps), tol=cfg.tol * max(n_tok, 1),
            n_init=cfg.n_init, random_state=run.train.seed)
        tracker = _FitTracker(self, run, valid, n_tok)
        self.hmm_.fit(data, lens, on_iteration=tracker)
        tracker.finish()
        return self

    # --- scoring -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "hmm_"):
            raise SeqlabError("this HMM language model is not fitted yet; call fit() first")

    def log_prob(self, X: np.ndarray, lengths: list[int] | None = None) -> np.ndarray:
        """log p(x_t | x_<t) per token: the forward filter's normalisers after the virtual eos."""
        self._check_fitted()
        data, lens = self._streams(X, lengths)
        steps = self.hmm_.score_steps(data, lens)
        keep = np.ones(len(data), dtype=bool)
        keep[np.cumsum([0, *lens[:-1]])] = False  # drop each stream's virtual end-of-line
        return steps[keep]

    # --- incremental interface -----------------------------------------------------------
    def initial_state(self) -> np.ndarray:
        self._check_fitted()
        return self.hmm_.startprob_.copy()  # belief over the first hidden state

    def step(self, token: int, state: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Condition the belief on `token`, predict the next state and the next token."""
        h = self.hmm_
        _, belief = kernels.filter_step(state, h.transmat_, h.emissionprob_[:, int(token)])
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(belief @ h.emissionprob_)), belief

    # --- persistence ---------------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        h = self.hmm_
        return ({"startprob": h.startprob_, "transmat": h.transmat_,
                 "emissionprob": h.emissionprob_}, self.describe())

    def save(self, path: str | Path) -> None:
        save_tensors(path, *self.checkpoint())

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        model = cls(cls.config_from(meta), cls.vocab_type.from_json(meta["vocab"]))
        K, V = model.config.n_states, len(model.vocab)
        h = CategoricalHMM(K, n_features=V)
        try:
            h.startprob_, h.transmat_, h.emissionprob_ = (
                tensors[k].double().numpy() for k in ("startprob", "transmat", "emissionprob"))
        except KeyError as e:
            raise SeqlabError(f"HMM checkpoint is missing the array {e}") from None
        h._check()
        model.hmm_ = h
        return model


class _FitTracker:
    """The EM hook of `HMMLM.fit`: logs each iteration, scores the validation split, keeps
    the parameters with the best validation score, and stops at ``train.max_minutes``."""

    def __init__(self, model: HMMLM, run: Run, valid: np.ndarray | None, n_tok: int) -> None:
        self.model, self.run, self.n_tok = model, run, n_tok
        self.valid = None if valid is None or len(valid) == 0 else np.asarray(valid)
        self.best: tuple[float, dict[str, np.ndarray]] | None = None
        self.t0, self.step = time.perf_counter(), 0

    def __call__(self, restart: int, iteration: int, log_prob: float) -> bool:
        self.step += 1
        record = {"kind": "train", "step": self.step, "restart": restart, "iteration": iteration,
                  "loss": -log_prob / max(self.n_tok, 1)}  # nats per token, before the M-step
        self.run.log(record)
        if self.valid is not None:
            bits = float(-self.model.log_prob(self.valid).mean() / math.log(2))
            self.run.log({"kind": "eval", "step": self.step, "bits_per_token": bits})
            if self.best is None or bits < self.best[0]:
                self.best = (bits, self.model.hmm_._params())
        budget = self.run.train.max_minutes
        return budget is not None and time.perf_counter() - self.t0 > 60 * budget

    def finish(self) -> None:
        """Keep the best validation parameters (EM's own choice when there is no valid split)."""
        if self.best is not None:
            self.model.hmm_._set_params(self.best[1])
