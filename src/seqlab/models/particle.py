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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqlab.errors import SeqlabError

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


class BootstrapParticleFilter:
    """Bootstrap particle filter.

    Args:
        model: a `StateSpaceModel` (or any object with the three callables).
        n_particles: N.
        ess_threshold: resample when ESS < ess_threshold * N (0 never resamples, 1 always).
        resampling: "systematic" (default), "stratified" or "multinomial".
        random_state: seed or `numpy.random.Generator`.
    """

    def __init__(self, model: StateSpaceModel | Any, n_particles: int = 1000, *,
                 ess_threshold: float = 0.5, resampling: str = "systematic",
                 random_state: int | np.random.Generator | None = None) -> None:
        self.model = model
        self.n_particles = n_particles
        self.ess_threshold = ess_threshold
        self.resampling = resampling
        self.random_state = random_state

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
        X = np.asarray(X, dtype=np.float64)
        X = X[:, None] if X.ndim == 1 else X
        if X.ndim != 2:
            raise SeqlabError(f"observations must have shape (T,) or (T, d), got {X.shape}")
        rng = np.random.default_rng(self.random_state)
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

    def loglikelihood(self, X: Any) -> float:
        return self.filter(X).log_likelihood

    def log_prob(self, X: Any) -> np.ndarray:
        """log p-hat(x_t | x_<t) per step."""
        return self.filter(X).step_log_likelihood

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


def linear_gaussian(transition_matrix: np.ndarray, observation_matrix: np.ndarray,
                    transition_covariance: np.ndarray, observation_covariance: np.ndarray,
                    initial_state_mean: np.ndarray, initial_state_covariance: np.ndarray
                    ) -> StateSpaceModel:
    """The callables of a linear-Gaussian model (to check the filter against Kalman's)."""
    F, H = np.asarray(transition_matrix), np.asarray(observation_matrix)
    Lq = np.linalg.cholesky(transition_covariance)
    L0 = np.linalg.cholesky(initial_state_covariance)
    Rinv = np.linalg.inv(observation_covariance)
    _, logdet = np.linalg.slogdet(observation_covariance)
    const = -0.5 * (len(H) * np.log(2 * np.pi) + logdet)

    def initial(rng: np.random.Generator, N: int) -> np.ndarray:
        return initial_state_mean + rng.standard_normal((N, len(F))) @ L0.T

    def transition(z: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
        return z @ F.T + rng.standard_normal(z.shape) @ Lq.T

    def log_likelihood(x: np.ndarray, z: np.ndarray, t: int) -> np.ndarray:
        e = x - z @ H.T
        return const - 0.5 * np.einsum("ni,ij,nj->n", e, Rinv, e)

    return StateSpaceModel(initial, transition, log_likelihood)
