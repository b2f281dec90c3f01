"""Bootstrap particle filter for non-linear, non-Gaussian state-space models.

References: N. Gordon, D. Salmond and A. Smith (1993), "Novel approach to nonlinear/non-Gaussian
Bayesian state estimation" (the bootstrap filter); G. Kitagawa (1996) for systematic
resampling; J. Liu and R. Chen (1995) for resampling only when the effective sample size
drops; P. Del Moral (2004) for the unbiased likelihood estimate; A. Doucet and A. Johansen
(2009), "A tutorial on particle filtering and smoothing", algorithm SIS/R.

The model is three Python callables, vectorised over particles:

    initial(rng, N)              -> (N, n) draws of z_1
    transition(z, t, rng)        -> (N, n) draws of z_t given z_{t-1} = z (bootstrap proposal)
    log_likelihood(x_t, z, t)    -> (N,) log p(x_t | z_t = z)

At each step the particles move by the transition, weights multiply by the likelihood, and
p(x_t | x_<t) is estimated by the weighted mean of the likelihoods (before reweighting). When
the effective sample size 1 / sum W_i^2 falls below ``ess_threshold * N``, the particles are
resampled (systematic by default) and the weights reset. A step whose observation is all NaN
is missing: the particles move, nothing is weighted. The product of the estimates is an
unbiased estimate of p(x_1..T); its log, summed here, is what ``loglikelihood`` returns.

A filter over user callables cannot be saved (code is never pickled). A filter over a built-in
parametric model, such as `linear_gaussian`'s, can: the model knows its ``kind`` and its
parameters, which go to a safetensors file as tensors beside the filter's settings as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from seqlab.errors import SeqlabError
from seqlab.io import save_tensors
from seqlab.models.base import load_family
from seqlab.models.kalman import as_observations, check_params
from seqlab.params import Params
from seqlab.protocol import split_lengths

if TYPE_CHECKING:
    import torch

Initial = Callable[[np.random.Generator, int], np.ndarray]
Transition = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
LogLikelihood = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


# --- resampling --------------------------------------------------------------------------------
def systematic_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn with one uniform: u_i = (U + i) / N against the weights' CDF.

    Particle i is copied floor(N W_i) or ceil(N W_i) times: the least variance of the usual
    schemes, at O(N).
    """
    N = len(weights)
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0  # guard against rounding: every u < 1 finds an index
    return np.searchsorted(cdf, (rng.random() + np.arange(N)) / N, side="right")


def stratified_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniform per stratum [i/N, (i+1)/N)."""
    N = len(weights)
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, (rng.random(N) + np.arange(N)) / N, side="right")


def multinomial_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N independent draws from the weights (the textbook scheme; most variance)."""
    return rng.choice(len(weights), size=len(weights), p=weights)


RESAMPLERS = {"systematic": systematic_resample, "stratified": stratified_resample,
              "multinomial": multinomial_resample}


# --- the filter ----------------------------------------------------------------------------------
@dataclass
class StateSpaceModel:
    """A state-space model as callables (see the module docstring for their signatures)."""

    initial: Initial
    transition: Transition
    log_likelihood: LogLikelihood


@dataclass
class ParticleResult:
    log_likelihood: float  # log of the unbiased estimate of p(x_1..T)
    step_log_likelihood: np.ndarray  # (T,) log p-hat(x_t | x_<t); 0 for missing steps
    filtered_means: np.ndarray  # (T, n) weighted particle means after each update
    filtered_covariances: np.ndarray  # (T, n, n)
    ess: np.ndarray  # (T,) effective sample size after each update (before resampling)
    resampled: np.ndarray  # (T,) bool: resampling happened after step t
    particles: np.ndarray  # (N, n) the final particles
    weights: np.ndarray  # (N,) their normalised weights


class BootstrapParticleFilter(Params):
    """Bootstrap particle filter.

    Args:
        model: a `StateSpaceModel` (or any object with the three callables), or a built-in
            parametric model such as `linear_gaussian`'s (which can be saved).
        n_particles: N.
        ess_threshold: resample when ESS < ess_threshold * N (0 never resamples, 1 always).
        resampling: "systematic" (default), "stratified" or "multinomial".
        random_state: seed or `numpy.random.Generator`; every call to ``filter``,
            ``log_prob`` or ``loglikelihood`` starts a fresh stream from it.
    """

    family: ClassVar[str] = "particle"
    # The constructor's arguments, stored unchanged by `_store`.
    model: StateSpaceModel | Any
    n_particles: int
    ess_threshold: float
    resampling: str
    random_state: int | np.random.Generator | None

    def __init__(self, model: StateSpaceModel | Any, n_particles: int = 1000, *,
                 ess_threshold: float = 0.5, resampling: str = "systematic",
                 random_state: int | np.random.Generator | None = None) -> None:
        self._store(locals())

    def _check(self) -> None:
        if not (isinstance(self.n_particles, int | np.integer) and self.n_particles >= 1):
            raise SeqlabError(f"n_particles must be a positive integer, got {self.n_particles!r}")
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise SeqlabError(f"ess_threshold must be in [0, 1], got {self.ess_threshold}")
        if self.resampling not in RESAMPLERS:
            raise SeqlabError(f"resampling must be one of {', '.join(RESAMPLERS)}, got "
                              f"{self.resampling!r}")
        for name in ("initial", "transition", "log_likelihood"):
            if not callable(getattr(self.model, name, None)):
                raise SeqlabError(f"the model must have a callable {name}, got "
                                  f"{type(getattr(self.model, name, None)).__name__}")

    def filter(self, X: Any) -> ParticleResult:
        """Run the filter over observations X (T, d) (or (T,) for scalars)."""
        self._check()
        return self._run(_as_steps(X), np.random.default_rng(self.random_state))

    def _run(self, X: np.ndarray, rng: np.random.Generator) -> ParticleResult:
        """The filter over one sequence X (T, d), drawing from `rng`."""
        N, T = self.n_particles, len(X)
        z = self._states(self.model.initial(rng, N), "initial", N)
        logw = np.full(N, -np.log(N))  # normalised log-weights
        out = _Record(T, z.shape[1])
        for t in range(T):
            if t > 0:
                z = self._states(self.model.transition(z, t, rng), "transition", N, z.shape[1])
            step = 0.0
            if not np.all(np.isnan(X[t])):
                lik = self._log_lik(X[t], z, t)
                step = _logsumexp(logw + lik)
                logw = logw + lik - step
            w = np.exp(logw)
            ess = 1.0 / np.sum(w**2)
            out.add(t, step, z, w, ess)
            if ess < self.ess_threshold * N and t < T - 1:
                z = z[RESAMPLERS[self.resampling](w, rng)]
                logw = np.full(N, -np.log(N))
                out.resampled[t] = True
        return out.result(z, np.exp(logw))

    def _sequences(self, X: Any, lengths: Any) -> list[ParticleResult]:
        """The filter over each sequence of X in turn, all from one random stream."""
        self._check()
        rng = np.random.default_rng(self.random_state)
        segs = split_lengths(_as_steps(X), None if lengths is None else list(lengths))
        return [self._run(x, rng) for x in segs]

    def loglikelihood(self, X: Any, lengths: Any = None) -> float:
        """log p-hat(X), summed over the sequences."""
        return float(sum(r.log_likelihood for r in self._sequences(X, lengths)))

    def log_prob(self, X: Any, lengths: Any = None) -> np.ndarray:
        """log p-hat(x_t | x_<t) per step (T,), the protocol's per-step scores; each sequence
        of concatenated X (with ``lengths``) starts from the initial distribution."""
        return np.concatenate([r.step_log_likelihood for r in self._sequences(X, lengths)])

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """The model's parameters as tensors; its kind and the filter's settings as JSON."""
        self._check()
        kind = getattr(self.model, "kind", None)
        if kind is None or MODEL_KINDS.get(kind) is not type(self.model):
            raise SeqlabError(f"cannot save a particle filter over {type(self.model).__name__}: "
                              "user callables cannot be stored, only built-in parametric models "
                              f"({', '.join(MODEL_KINDS)}); rebuild the filter in code instead")
        if not (self.random_state is None or isinstance(self.random_state, int | np.integer)):
            raise SeqlabError("cannot save a particle filter whose random_state is a "
                              f"{type(self.random_state).__name__} (not JSON); pass an int "
                              "seed or None")
        tensors = {f"model.{k}": v for k, v in self.model.checked().items()}
        config = {"n_particles": int(self.n_particles), "ess_threshold": float(self.ess_threshold),
                  "resampling": self.resampling, "random_state": None if self.random_state is None
                  else int(self.random_state)}
        save_tensors(path, tensors, {"family": self.family, "model": {"kind": kind},
                                     "config": config})

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        """The filter a checkpoint describes (see `seqlab.models.load`)."""
        kind = (meta.get("model") or {}).get("kind")
        if kind not in MODEL_KINDS:
            raise SeqlabError(f"expected a particle model kind among {', '.join(MODEL_KINDS)}, "
                              f"got {kind!r}")
        model_cls = MODEL_KINDS[kind]
        try:
            model = model_cls(**{k: tensors[f"model.{k}"].double().numpy()
                                 for k in model_cls._param_names()})
        except KeyError as e:
            raise SeqlabError(f"the {cls.family} checkpoint is missing the array {e}") from None
        cfg = meta.get("config", {})
        valid = [k for k in cls._param_names() if k != "model"]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise SeqlabError(f"the {cls.family} checkpoint has unknown settings "
                              f"{', '.join(unknown)}; valid: {', '.join(valid)}")
        pf = cls(model, **cfg)
        pf._check()
        model.checked()  # bad matrices fail at load, not at the first filter call
        return pf

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return load_family(cls, path)

    def _states(self, z: Any, who: str, N: int, n: int | None = None) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        z = z[:, None] if z.ndim == 1 else z
        if z.ndim != 2 or z.shape[0] != N or (n is not None and z.shape[1] != n):
            want = f"({N}, {n if n is not None else 'n'})"
            raise SeqlabError(f"model.{who} must return particles of shape {want}, got "
                              f"{z.shape}")
        return z

    def _log_lik(self, x: np.ndarray, z: np.ndarray, t: int) -> np.ndarray:
        lik = np.asarray(self.model.log_likelihood(x, z, t), dtype=np.float64)
        if lik.shape != (len(z),):
            raise SeqlabError(f"model.log_likelihood must return shape ({len(z)},), got "
                              f"{lik.shape}")
        if np.isnan(lik).any() or np.isposinf(lik).any():
            raise SeqlabError(f"model.log_likelihood must return log-densities (finite or "
                              f"-inf), got NaN or +inf at step {t}")
        if np.all(np.isneginf(lik)):
            raise SeqlabError(f"every particle gives observation {t} probability 0; the "
                              "filter has lost the state (use more particles)")
        return lik


class _Record:
    """Per-step outputs collected by `BootstrapParticleFilter.filter`."""

    def __init__(self, T: int, n: int) -> None:
        self.step, self.ess = np.zeros(T), np.zeros(T)
        self.means, self.covs = np.zeros((T, n)), np.zeros((T, n, n))
        self.resampled = np.zeros(T, dtype=bool)

    def add(self, t: int, step: float, z: np.ndarray, w: np.ndarray, ess: float) -> None:
        self.step[t], self.ess[t] = step, ess
        self.means[t] = w @ z
        d = z - self.means[t]
        self.covs[t] = (d * w[:, None]).T @ d

    def result(self, z: np.ndarray, w: np.ndarray) -> ParticleResult:
        return ParticleResult(float(self.step.sum()), self.step, self.means, self.covs,
                              self.ess, self.resampled, z, w)


def _logsumexp(a: np.ndarray) -> float:
    m = float(np.max(a))
    return m + float(np.log(np.sum(np.exp(a - m)))) if np.isfinite(m) else m


def _as_steps(X: Any) -> np.ndarray:
    """Observations as float64 (T, d); (T,) means scalar observations."""
    X = as_observations(X)
    shape = X.shape
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2:
        raise SeqlabError(f"observations must have shape (T,) or (T, d), got {shape}")
    return X


# --- built-in parametric models ------------------------------------------------------------------
@dataclass
class _Factors:
    """What the linear-Gaussian callables use, derived from the parameters."""

    F: np.ndarray  # (n, n)
    H: np.ndarray  # (d, n)
    mu0: np.ndarray  # (n,)
    Lq: np.ndarray  # (n, n) Cholesky factor of Q
    L0: np.ndarray  # (n, n) Cholesky factor of P0
    Rinv: np.ndarray  # (d, d)
    const: float  # -0.5 (d log 2 pi + log det R)


class LinearGaussianModel(Params):
    """The linear-Gaussian model of `seqlab.models.kalman` as particle-filter callables.

    Holds F, H, Q, R, mu0, P0 under their long names (as `LinearGaussianSSM`); unlike a
    `StateSpaceModel` of user callables it knows its ``kind`` and its parameters, so a filter
    over it can be saved. Q and P0 must be positive definite (they are sampled by Cholesky).
    """

    kind: ClassVar[str] = "linear_gaussian"

    def __init__(self, transition_matrix: Any, observation_matrix: Any,
                 transition_covariance: Any, observation_covariance: Any,
                 initial_state_mean: Any, initial_state_covariance: Any) -> None:
        self._store(locals())

    def checked(self) -> dict[str, np.ndarray]:
        """The parameters as float64 arrays, checked as the Kalman filter checks them."""
        return check_params(self.get_params(deep=False))

    def _factors(self) -> _Factors:
        # Derived at use time (``__init__`` must only store), cached under the parameters'
        # bytes: set_params, assignment and in-place edits all invalidate it, and the filter
        # calls the model twice per step, where redoing the checks would dominate small N.
        key = tuple((np.shape(v), np.asarray(v, dtype=np.float64).tobytes())
                    for v in self.get_params(deep=False).values())
        cached = self.__dict__.get("_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        p = self.checked()
        try:
            Lq, L0 = (np.linalg.cholesky(p[k]) for k in ("transition_covariance",
                                                         "initial_state_covariance"))
        except np.linalg.LinAlgError:
            raise SeqlabError("transition_covariance and initial_state_covariance must be "
                              "positive definite for the particle filter's Gaussian draws, got "
                              "a singular one") from None
        R = p["observation_covariance"]
        const = -0.5 * (len(R) * np.log(2 * np.pi) + np.linalg.slogdet(R)[1])
        f = _Factors(p["transition_matrix"], p["observation_matrix"], p["initial_state_mean"],
                     Lq, L0, np.linalg.inv(R), const)
        self._cache = (key, f)
        return f

    def initial(self, rng: np.random.Generator, N: int) -> np.ndarray:
        f = self._factors()
        return f.mu0 + rng.standard_normal((N, len(f.F))) @ f.L0.T

    def transition(self, z: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
        f = self._factors()
        return z @ f.F.T + rng.standard_normal(z.shape) @ f.Lq.T

    def log_likelihood(self, x: np.ndarray, z: np.ndarray, t: int) -> np.ndarray:
        f = self._factors()
        e = x - z @ f.H.T  # (N, d) innovations
        return f.const - 0.5 * np.einsum("ni,ij,nj->n", e, f.Rinv, e)


# kind -> class, for checkpoints: what `BootstrapParticleFilter.from_checkpoint` can rebuild
MODEL_KINDS: dict[str, type[LinearGaussianModel]] = {LinearGaussianModel.kind: LinearGaussianModel}


def linear_gaussian(transition_matrix: np.ndarray, observation_matrix: np.ndarray,
                    transition_covariance: np.ndarray, observation_covariance: np.ndarray,
                    initial_state_mean: np.ndarray, initial_state_covariance: np.ndarray
                    ) -> LinearGaussianModel:
    """A linear-Gaussian model for the filter (to check it against Kalman's); savable."""
    return LinearGaussianModel(transition_matrix, observation_matrix, transition_covariance,
                               observation_covariance, initial_state_mean,
                               initial_state_covariance)
