"""Bootstrap particle filter: convergence to the Kalman likelihood, resampling, ESS trigger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqlab.errors import SeqlabError
from seqlab.models.kalman import LinearGaussianSSM
from seqlab.models.particle import (
    BootstrapParticleFilter,
    StateSpaceModel,
    linear_gaussian,
    multinomial_resample,
    systematic_resample,
)

PARAMS = {"transition_matrix": np.array([[0.9, 0.2], [-0.1, 0.8]]),
          "observation_matrix": np.array([[1.0, 0.5]]),
          "transition_covariance": np.array([[0.3, 0.05], [0.05, 0.2]]),
          "observation_covariance": np.array([[0.5]]),
          "initial_state_mean": np.array([0.5, -0.5]),
          "initial_state_covariance": np.eye(2)}


def _data(T: int = 50) -> tuple[LinearGaussianSSM, np.ndarray]:
    kalman = LinearGaussianSSM(**PARAMS)
    return kalman, kalman.sample(T, random_state=0)[1]


def errors(n_particles: int, runs: int = 20, T: int = 50) -> np.ndarray:
    """Particle estimate minus the exact (Kalman) log-likelihood, over independent runs."""
    kalman, X = _data(T)
    exact = kalman.loglikelihood(X)
    model = linear_gaussian(**PARAMS)
    return np.array([BootstrapParticleFilter(model, n_particles, random_state=seed)
                     .loglikelihood(X) - exact for seed in range(runs)])


def test_log_likelihood_converges_to_kalman() -> None:
    """RMSE of the estimate at 100, 1000 and 10000 particles: it falls like 1/sqrt(N)
    (benchmarks/classical/README.md shows the table)."""
    rmse = {N: float(np.sqrt(np.mean(errors(N) ** 2))) for N in (100, 1000, 10_000)}
    assert rmse[100] > rmse[1000] > rmse[10_000]
    assert rmse[100] / rmse[10_000] > 4  # 10 for exact 1/sqrt(N) scaling
    assert rmse[10_000] < 0.1


def test_filtered_means_approach_kalman() -> None:
    kalman, X = _data()
    res = BootstrapParticleFilter(linear_gaussian(**PARAMS), 20_000, random_state=1).filter(X)
    ref = kalman.filter(X)
    sd = np.sqrt(np.diagonal(ref.filtered_covariances, axis1=1, axis2=2))
    assert np.all(np.abs(res.filtered_means - ref.filtered_means) < 5 * sd / np.sqrt(
        res.ess[:, None]))
    assert res.step_log_likelihood.sum() == pytest.approx(res.log_likelihood)


def test_systematic_resampling_copies_floor_or_ceil_of_n_w() -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        w = rng.dirichlet(np.full(37, 0.3))
        counts = np.bincount(systematic_resample(w, rng), minlength=37)
        assert counts.sum() == 37
        assert np.all(counts >= np.floor(37 * w) - 1e-9) and np.all(counts <= np.ceil(37 * w))


def test_multinomial_resampling_is_unbiased() -> None:
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(5))
    counts = np.mean([np.bincount(multinomial_resample(w, rng), minlength=5)
                      for _ in range(4000)], axis=0)
    assert np.allclose(counts, 5 * w, atol=0.05)


@pytest.mark.parametrize(("threshold", "expect"), [(0.0, "never"), (1.0, "always"),
                                                   (0.5, "below")])
def test_ess_trigger(threshold: float, expect: str) -> None:
    _, X = _data(30)
    res = BootstrapParticleFilter(linear_gaussian(**PARAMS), 500, ess_threshold=threshold,
                                  random_state=4).filter(X)
    if expect == "never":
        assert not res.resampled.any()
    elif expect == "always":
        assert res.resampled[:-1].all()
    else:
        assert np.array_equal(res.resampled[:-1], res.ess[:-1] < 250)
        assert 0 < res.resampled.sum() < 29
    assert np.all((res.ess >= 1 - 1e-9) & (res.ess <= 500 + 1e-9))


def test_missing_steps_move_particles_without_weighting() -> None:
    kalman, X = _data(20)
    X[5] = np.nan
    res = BootstrapParticleFilter(linear_gaussian(**PARAMS), 20_000, random_state=5).filter(X)
    assert res.step_log_likelihood[5] == 0.0
    assert res.log_likelihood == pytest.approx(kalman.loglikelihood(X), abs=0.1)


def test_bad_input_is_a_clear_value_error() -> None:
    model = linear_gaussian(**PARAMS)
    _, X = _data(5)
    cases = [
        (BootstrapParticleFilter(model, 0), "n_particles must be a positive integer, got 0"),
        (BootstrapParticleFilter(model, ess_threshold=1.5), r"ess_threshold must be in \[0, 1\]"),
        (BootstrapParticleFilter(model, resampling="residual"), "resampling must be one of"),
        (BootstrapParticleFilter(StateSpaceModel(model.initial, model.transition, None)),
         "the model must have a callable log_likelihood, got NoneType"),
        (BootstrapParticleFilter(StateSpaceModel(lambda rng, n: np.zeros((n + 1, 2)),
                                                 model.transition, model.log_likelihood), 10),
         r"model.initial must return particles of shape \(10, n\), got \(11, 2\)"),
        (BootstrapParticleFilter(StateSpaceModel(model.initial, model.transition,
                                                 lambda x, z, t: np.full(len(z), np.nan)), 10),
         "must return log-densities"),
        (BootstrapParticleFilter(StateSpaceModel(model.initial, model.transition,
                                                 lambda x, z, t: np.zeros(3)), 10),
         r"must return shape \(10,\), got \(3,\)"),
    ]
    for pf, match in cases:
        with pytest.raises(SeqlabError, match=match):
            pf.filter(X)


# --- per-step scores and checkpoints --------------------------------------------------------------
def test_log_prob_is_per_step_and_each_sequence_restarts_the_filter() -> None:
    kalman, X = _data(40)
    pf = BootstrapParticleFilter(linear_gaussian(**PARAMS), 20_000, random_state=6)
    lp = pf.log_prob(X)
    assert lp.shape == (40,) and np.array_equal(lp, pf.filter(X).step_log_likelihood)
    assert lp.sum() == pf.loglikelihood(X)
    both = pf.log_prob(X, lengths=[25, 15])
    assert both.shape == (40,)
    assert np.array_equal(both[:25], lp[:25])  # the first sequence draws the same stream
    # the second starts again from the prior of z_1, so it estimates p(x_26..40) on its own
    assert both[25:].sum() == pytest.approx(kalman.loglikelihood(X[25:]), abs=0.1)
    assert pf.loglikelihood(X, lengths=[25, 15]) == pytest.approx(both.sum(), rel=1e-12)


def test_checkpoint_round_trip_gives_identical_log_prob(tmp_path: Path) -> None:
    from seqlab.models import load
    from seqlab.models.base import load_checkpoint_file

    _, X = _data(30)
    pf = BootstrapParticleFilter(linear_gaussian(**PARAMS), 400, ess_threshold=0.7,
                                 resampling="stratified", random_state=11)
    path = tmp_path / "pf.safetensors"
    pf.save(path)
    tensors, meta = load_checkpoint_file(path)
    assert meta["family"] == "particle" and meta["model"] == {"kind": "linear_gaussian"}
    assert meta["config"] == {"n_particles": 400, "ess_threshold": 0.7,
                              "resampling": "stratified", "random_state": 11}
    back = BootstrapParticleFilter.from_checkpoint(tensors, meta)
    assert np.array_equal(back.log_prob(X), pf.log_prob(X))
    for name, value in PARAMS.items():
        assert np.array_equal(getattr(back.model, name), value)
    assert np.array_equal(BootstrapParticleFilter.load(path).log_prob(X), pf.log_prob(X))
    assert np.array_equal(load(path).log_prob(X), pf.log_prob(X))  # the registry's loader
    other_seed = BootstrapParticleFilter.from_checkpoint(tensors, meta).set_params(
        random_state=12)
    assert not np.array_equal(other_seed.log_prob(X), pf.log_prob(X))  # the seed was used


def test_what_cannot_be_saved_is_a_one_line_error(tmp_path: Path) -> None:
    model = linear_gaussian(**PARAMS)
    callables = StateSpaceModel(model.initial, model.transition, model.log_likelihood)
    cases = [
        (BootstrapParticleFilter(callables, 10),
         "cannot save a particle filter over StateSpaceModel: user callables cannot be stored, "
         "only built-in parametric models \\(linear_gaussian\\)"),
        (BootstrapParticleFilter(model, 10, random_state=np.random.default_rng(0)),
         "cannot save a particle filter whose random_state is a Generator"),
        (BootstrapParticleFilter(linear_gaussian(**{**PARAMS, "observation_covariance": [[-1.0]]}),
                                 10),
         "observation_covariance must be positive definite, got smallest eigenvalue -1"),
    ]
    for pf, match in cases:
        with pytest.raises(SeqlabError, match=match) as info:
            pf.save(tmp_path / "pf.safetensors")
        assert "\n" not in str(info.value)
    assert not (tmp_path / "pf.safetensors").exists()


def test_damaged_particle_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    from seqlab.io import save_tensors

    tensors = {f"model.{k}": v for k, v in PARAMS.items()}
    good = {"family": "particle", "model": {"kind": "linear_gaussian"},
            "config": {"n_particles": 10}}
    files = {
        "a": (tensors, {**good, "model": {"kind": "neural"}},
              "expected a particle model kind among linear_gaussian, got 'neural'"),
        "b": ({k: v for k, v in tensors.items() if k != "model.observation_matrix"}, good,
              "the particle checkpoint is missing the array 'model.observation_matrix'"),
        "c": (tensors, {**good, "config": {"n_particle": 10}},
              "the particle checkpoint has unknown settings n_particle; valid: n_particles, "),
        "d": (tensors, {**good, "config": {"resampling": "residual"}},
              "resampling must be one of"),
        "e": (tensors, {**good, "family": "kalman"}, "expected a particle checkpoint, got"),
    }
    for name, (arrays, meta, match) in files.items():
        save_tensors(tmp_path / f"{name}.safetensors", arrays, meta)
        with pytest.raises(SeqlabError, match=f"{name}.safetensors: {match}") as info:
            BootstrapParticleFilter.load(tmp_path / f"{name}.safetensors")
        assert "\n" not in str(info.value)
