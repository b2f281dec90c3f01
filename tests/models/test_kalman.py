"""Kalman filter, RTS smoother and EM: closed forms, statsmodels/pykalman, missing data, EM."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pykalman import KalmanFilter
from scipy.stats import multivariate_normal
from statsmodels.tsa.statespace.kalman_smoother import KalmanSmoother

from seqlab.errors import SeqlabError
from seqlab.models.kalman import PARAMS, LinearGaussianSSM, constant_velocity


def _random_model(n: int = 3, d: int = 2, seed: int = 0) -> LinearGaussianSSM:
    rng = np.random.default_rng(seed)
    A, G = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    return LinearGaussianSSM(
        transition_matrix=0.9 * G / np.abs(np.linalg.eigvals(G)).max(),  # stable: radius 0.9
        observation_matrix=rng.normal(size=(d, n)), transition_covariance=0.1 * A @ A.T + 0.1 *
        np.eye(n), observation_covariance=np.diag(rng.uniform(0.2, 1.0, d)),
        initial_state_mean=rng.normal(size=n), initial_state_covariance=np.eye(n))


# --- closed forms ------------------------------------------------------------------------------
def test_static_level_has_closed_form_posteriors() -> None:
    """z constant (F = 1, Q = 0), x_t = z + noise: after t observations the posterior is
    N((mu0/P0 + sum x / R) / prec, 1 / prec) with prec = 1/P0 + t/R; every smoothed state is
    the final posterior."""
    mu0, P0, R = 1.0, 4.0, 0.5
    m = LinearGaussianSSM(transition_matrix=[[1.0]], observation_matrix=[[1.0]],
                          transition_covariance=[[0.0]], observation_covariance=[[R]],
                          initial_state_mean=[mu0], initial_state_covariance=[[P0]])
    x = np.random.default_rng(0).normal(2.0, math.sqrt(R), size=50)
    res = m.smooth(x[:, None])
    t = np.arange(1, 51)
    prec = 1 / P0 + t / R
    assert np.allclose(res.filtered_means[:, 0], (mu0 / P0 + np.cumsum(x) / R) / prec, rtol=1e-12)
    assert np.allclose(res.filtered_covariances[:, 0, 0], 1 / prec, rtol=1e-12)
    assert np.allclose(res.smoothed_means[:, 0], res.filtered_means[-1, 0], rtol=1e-12)
    assert np.allclose(res.smoothed_covariances[:, 0, 0], 1 / prec[-1], rtol=1e-10)
    # the exact marginal: x ~ N(mu0 1, P0 1 1^T + R I)
    ref = multivariate_normal(np.full(50, mu0), P0 + R * np.eye(50)).logpdf(x)
    assert res.log_likelihood == pytest.approx(ref, rel=1e-12)


def test_random_walk_reaches_the_riccati_steady_state() -> None:
    """Random walk plus noise: the predicted variance converges to the positive root of
    P^2 - Q P - Q R = 0, the filtered one to P R / (P + R)."""
    Q, R = 0.3, 2.0
    m = LinearGaussianSSM(transition_matrix=[[1.0]], observation_matrix=[[1.0]],
                          transition_covariance=[[Q]], observation_covariance=[[R]],
                          initial_state_mean=[0.0], initial_state_covariance=[[10.0]])
    _, x = m.sample(200, random_state=1)
    res = m.filter(x)
    P = (Q + math.sqrt(Q * Q + 4 * Q * R)) / 2
    assert res.predicted_covariances[-1, 0, 0] == pytest.approx(P, rel=1e-12)
    assert res.filtered_covariances[-1, 0, 0] == pytest.approx(P * R / (P + R), rel=1e-12)


# --- reference agreement -------------------------------------------------------------------------
def _statsmodels(p: dict[str, np.ndarray], X: np.ndarray) -> object:
    ks = KalmanSmoother(k_endog=X.shape[1], k_states=len(p["initial_state_mean"]))
    ks.bind(X.copy())
    ks["design"], ks["obs_cov"] = p["observation_matrix"], p["observation_covariance"]
    ks["transition"], ks["state_cov"] = p["transition_matrix"], p["transition_covariance"]
    ks["selection"] = np.eye(len(p["initial_state_mean"]))
    ks.initialize_known(p["initial_state_mean"], p["initial_state_covariance"])
    return ks.smooth()


def _pykalman(p: dict[str, np.ndarray]) -> KalmanFilter:
    return KalmanFilter(
        transition_matrices=p["transition_matrix"], observation_matrices=p["observation_matrix"],
        transition_covariance=p["transition_covariance"],
        observation_covariance=p["observation_covariance"],
        initial_state_mean=p["initial_state_mean"],
        initial_state_covariance=p["initial_state_covariance"])


def test_constant_velocity_matches_statsmodels_and_pykalman() -> None:
    p = constant_velocity()
    m = LinearGaussianSSM(**p)
    _, X = m.sample(500, random_state=0)
    res = m.smooth(X)
    sm = _statsmodels(p, X)
    close = {"rtol": 1e-8, "atol": 1e-8}
    assert res.log_likelihood == pytest.approx(sm.llf_obs.sum(), rel=1e-8)
    assert np.allclose(res.step_log_likelihood, sm.llf_obs, **close)
    assert np.allclose(res.filtered_means, sm.filtered_state.T, **close)
    assert np.allclose(res.filtered_covariances, sm.filtered_state_cov.transpose(2, 0, 1), **close)
    assert np.allclose(res.predicted_means, sm.predicted_state.T[:-1], **close)
    assert np.allclose(res.smoothed_means, sm.smoothed_state.T, **close)
    assert np.allclose(res.smoothed_covariances, sm.smoothed_state_cov.transpose(2, 0, 1), **close)
    kf = _pykalman(p)
    (fm, fc), (sm_, sc) = kf.filter(X), kf.smooth(X)
    assert np.allclose(res.filtered_means, fm, **close)
    assert np.allclose(res.filtered_covariances, fc, **close)
    assert np.allclose(res.smoothed_means, sm_, **close)
    assert np.allclose(res.smoothed_covariances, sc, **close)
    assert res.log_likelihood == pytest.approx(kf.loglikelihood(X), rel=1e-10)


def test_em_matches_pykalman_iteration_by_iteration() -> None:
    truth = _random_model()
    _, X = truth.sample(300, random_state=1)
    rng = np.random.default_rng(2)
    start = {"transition_matrix": 0.5 * np.eye(3), "observation_matrix": rng.normal(size=(2, 3)),
             "transition_covariance": np.eye(3), "observation_covariance": np.eye(2),
             "initial_state_mean": np.ones(3), "initial_state_covariance": 2 * np.eye(3)}
    ours = LinearGaussianSSM(**start, n_iter=5).fit(X)
    ref = _pykalman(start).em(X, n_iter=5, em_vars=[
        "transition_matrices", "observation_matrices", "transition_covariance",
        "observation_covariance", "initial_state_mean", "initial_state_covariance"])
    for name, ref_name in zip(PARAMS, ("transition_matrices", "observation_matrices",
                                       "transition_covariance", "observation_covariance",
                                       "initial_state_mean", "initial_state_covariance"),
                              strict=True):
        assert np.allclose(getattr(ours, name + "_"), getattr(ref, ref_name), rtol=1e-10,
                           atol=1e-12), name


# --- missing data --------------------------------------------------------------------------------
def _brute_force_loglik(m: LinearGaussianSSM, X: np.ndarray) -> float:
    """The joint Gaussian of all observations, with the missing entries' rows and columns
    deleted: the likelihood of the model with those observations removed."""
    p = m.params()
    F, H, Q, R, mu, P0 = (p[k] for k in PARAMS)
    T, n = len(X), len(mu)
    means, covs = [mu], [P0]
    for _ in range(1, T):
        means.append(F @ means[-1])
        covs.append(F @ covs[-1] @ F.T + Q)
    C = np.zeros((T * n, T * n))
    for s in range(T):
        for t in range(s, T):
            block = np.linalg.matrix_power(F, t - s) @ covs[s]  # Cov(z_t, z_s)
            C[t * n:(t + 1) * n, s * n:(s + 1) * n] = block
            C[s * n:(s + 1) * n, t * n:(t + 1) * n] = block.T
    HH = np.kron(np.eye(T), H)
    cov = HH @ C @ HH.T + np.kron(np.eye(T), R)
    x = X.reshape(-1)
    seen = ~np.isnan(x)
    return multivariate_normal((HH @ np.concatenate(means))[seen],
                               cov[np.ix_(seen, seen)]).logpdf(x[seen])


def test_missing_observations_are_integrated_out() -> None:
    m = _random_model()
    _, X = m.sample(25, random_state=3)
    X[3] = np.nan  # a whole step
    X[7, 0] = X[10, 1] = X[11, 1] = X[12, 0] = np.nan  # single entries
    X[20:] = np.nan  # a gap at the end
    assert m.loglikelihood(X) == pytest.approx(_brute_force_loglik(m, X), rel=1e-10)
    res = m.filter(X)
    assert res.step_log_likelihood[3] == 0.0  # nothing observed, nothing to explain
    assert np.allclose(res.filtered_means[3], res.predicted_means[3])
    # filtering on through missing steps is forecasting: the same numbers as forecast()
    means, covs = m.forecast(X[:20], steps=5)
    H, R = m.params()["observation_matrix"], m.params()["observation_covariance"]
    assert np.allclose(means, res.predicted_means[20:] @ H.T, rtol=1e-12)
    assert np.allclose(covs, H @ res.predicted_covariances[20:] @ H.T + R, rtol=1e-12)


# --- EM ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("em_vars", "missing"), [("all", False), ("all", True),
                                                  (("Q", "R", "mu0"), False), (("F", "H"), True)])
def test_em_never_decreases_the_likelihood(em_vars, missing: bool) -> None:
    truth = _random_model(seed=4)
    _, X = truth.sample(400, random_state=5)
    if missing:
        rng = np.random.default_rng(6)
        X[rng.random(X.shape) < 0.2] = np.nan
    start = _random_model(seed=7)
    m = LinearGaussianSSM(**start.params(), em_vars=em_vars, n_iter=25).fit(X)
    h = np.array(m.history_)
    assert np.all(np.diff(h) >= -1e-8 * np.abs(h[1:])), np.diff(h).min()
    assert h[-1] > h[0] + 1.0
    fixed = set(PARAMS) - m._em_set()
    for name in fixed:  # parameters outside em_vars do not move
        assert np.array_equal(getattr(m, name + "_"), start.params()[name])


def test_em_with_several_sequences_uses_them_all() -> None:
    truth = _random_model(seed=8)
    _, X = truth.sample(100, n_sequences=6, random_state=9)  # (6, 100, 2)
    flat = X.reshape(-1, 2)
    a = LinearGaussianSSM(**_random_model(seed=10).params(), n_iter=5).fit(X)
    b = LinearGaussianSSM(**_random_model(seed=10).params(), n_iter=5).fit(flat, [100] * 6)
    assert np.allclose(a.history_, b.history_, rtol=1e-12)
    for name in PARAMS:
        assert np.allclose(getattr(a, name + "_"), getattr(b, name + "_"), rtol=1e-10)


# --- batching ------------------------------------------------------------------------------------
def test_batch_and_lengths_equal_one_sequence_at_a_time() -> None:
    m = _random_model()
    _, X = m.sample(40, n_sequences=3, random_state=11)
    batch = m.smooth(X)
    for b in range(3):
        one = m.smooth(X[b])
        assert np.allclose(batch.smoothed_means[b], one.smoothed_means, rtol=1e-12)
        assert np.allclose(batch.filtered_covariances[b], one.filtered_covariances, rtol=1e-12)
    lens = [40, 25, 10]
    flat = np.concatenate([X[b, :n] for b, n in enumerate(lens)])
    res = m.smooth(flat, lens)
    parts = np.split(res.smoothed_means, np.cumsum(lens)[:-1])
    for b, n in enumerate(lens):
        assert np.allclose(parts[b], m.smooth(X[b, :n]).smoothed_means, rtol=1e-12)
    assert res.log_likelihood == pytest.approx(sum(m.loglikelihood(X[b, :n])
                                                   for b, n in enumerate(lens)), rel=1e-12)
    assert np.array_equal(m.log_prob(flat, lens), res.step_log_likelihood)


# --- numerical care ------------------------------------------------------------------------------
def test_covariances_stay_symmetric_positive_definite_over_1e5_steps() -> None:
    """A near-deterministic, badly scaled model: state noise 1e-10, observation noise 1e-8,
    positions in the thousands. Joseph-form updates keep every covariance SPD."""
    p = constant_velocity(dt=1.0, q=1e-10, r=1e-8)
    p["initial_state_mean"] = np.array([1e3, -2e3, 5.0, 3.0])
    p["initial_state_covariance"] = np.diag([1e6, 1e6, 1e2, 1e2])
    m = LinearGaussianSSM(**p)
    _, X = m.sample(100_000, random_state=12)
    res = m.smooth(X)
    for covs in (res.filtered_covariances, res.smoothed_covariances):
        assert np.array_equal(covs, covs.transpose(0, 2, 1))
        assert np.linalg.eigvalsh(covs).min() > 0
    assert np.isfinite(res.log_likelihood)


# --- sampling, forecasting, persistence ----------------------------------------------------------
def test_sampling_matches_the_model_moments() -> None:
    m = _random_model()
    p = m.params()
    _, X = m.sample(3, n_sequences=40_000, random_state=13)
    H, R, F, Q = (p[k] for k in ("observation_matrix", "observation_covariance",
                                 "transition_matrix", "transition_covariance"))
    P1 = p["initial_state_covariance"]
    P2 = F @ P1 @ F.T + Q
    assert np.allclose(X[:, 0].mean(0), H @ p["initial_state_mean"], atol=0.03)
    assert np.allclose(np.cov(X[:, 0].T), H @ P1 @ H.T + R, atol=0.06)
    assert np.allclose(np.cov(X[:, 1].T), H @ P2 @ H.T + R, atol=0.06)
    assert np.allclose(np.cov(X[:, 1].T, X[:, 0].T)[:2, 2:], H @ F @ P1 @ H.T, atol=0.06)


def test_forecast_and_generate(tmp_path: Path) -> None:
    m = _random_model()
    _, X = m.sample(50, random_state=14)
    means, covs = m.forecast(X, steps=3)
    p = m.params()
    F, H, Q, R = (p[k] for k in PARAMS[:4])
    res = m.filter(X)
    mz, Pz = res.filtered_means[-1], res.filtered_covariances[-1]
    for h in range(3):
        mz, Pz = F @ mz, F @ Pz @ F.T + Q
        assert np.allclose(means[h], H @ mz) and np.allclose(covs[h], H @ Pz @ H.T + R)
    draws = np.stack([m.generate(1, prompt=X, seed=s)[0] for s in range(4000)])
    assert np.allclose(draws.mean(0), means[0], atol=4 * np.sqrt(np.diag(covs[0]) / 4000).max())
    m.save(tmp_path / "m.safetensors")
    back = LinearGaussianSSM.load(tmp_path / "m.safetensors")
    assert np.array_equal(back.log_prob(X), m.log_prob(X))
    fitted = LinearGaussianSSM(**m.params(), em_vars=("Q",), n_iter=2).fit(X)
    fitted.save(tmp_path / "f.safetensors")
    again = LinearGaussianSSM.load(tmp_path / "f.safetensors")
    assert np.array_equal(again.params()["transition_covariance"], fitted.transition_covariance_)
    assert again._em_set() == {"transition_covariance"}


# --- bad input -----------------------------------------------------------------------------------
def _with(**change: object) -> LinearGaussianSSM:
    return LinearGaussianSSM(**{**constant_velocity(), **change})


@pytest.mark.parametrize(("model", "X", "match"), [
    (lambda: _with(observation_covariance=np.array([[1.0, 2.0], [2.0, 1.0]])), np.zeros((3, 2)),
     "observation_covariance must be positive definite, got smallest eigenvalue -1"),
    (lambda: _with(initial_state_covariance=np.zeros((4, 4))), np.zeros((3, 2)),
     "initial_state_covariance must be positive definite, got smallest eigenvalue 0"),
    (lambda: _with(transition_covariance=-np.eye(4)), np.zeros((3, 2)),
     "transition_covariance must be positive semidefinite, got smallest eigenvalue -1"),
    (lambda: _with(observation_covariance=np.array([[1.0, 0.5], [0.0, 1.0]])), np.zeros((3, 2)),
     "observation_covariance must be symmetric"),
    (lambda: _with(observation_matrix=np.eye(2, 3)), np.zeros((3, 2)),
     r"observation_matrix must have shape \(2, 4\) for n = 4 states, got \(2, 3\)"),
    (lambda: _with(transition_matrix=np.full((4, 4), np.nan)), np.zeros((3, 2)),
     "transition_matrix must be finite, got NaN"),
    (lambda: _with(), np.zeros((3, 3)), "expected observations with d = 2 entries per step, got 3"),
    (lambda: _with(), np.array([[0.0, np.inf]]), "finite or NaN"),
    (lambda: _with(), np.zeros((5, 2)), "lengths must be non-negative and sum to len"),
    (lambda: _with(em_vars=("F", "B")), np.zeros((5, 2)), "em_vars must name parameters"),
])
def test_bad_input_is_a_clear_value_error(model, X, match) -> None:
    m = model()
    call = (lambda: m.loglikelihood(X, lengths=[2, 2])) if "lengths" in match else (
        (lambda: m.fit(X)) if "em_vars" in match else (lambda: m.loglikelihood(X)))
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert info.type is SeqlabError and "\n" not in str(info.value)


def test_follows_the_sequence_model_protocol(tmp_path: Path) -> None:
    from seqlab.protocol import SequenceModel
    from seqlab.run import Run

    truth = _random_model(seed=15)
    _, X = truth.sample(200, random_state=16)
    m = LinearGaussianSSM(**_random_model(seed=17).params(), n_iter=4)
    assert isinstance(m, SequenceModel)
    run = Run(dir=tmp_path)
    m.fit(X, run=run)
    records = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 4
    m.save(tmp_path / "m.safetensors")  # the pipeline, not the family, writes the run folder
    back = LinearGaussianSSM.load(tmp_path / "m.safetensors")
    assert np.array_equal(back.log_prob(X), m.log_prob(X))
    assert m.log_prob(X).shape == (200,) and m.generate(7, seed=0).shape == (7, 2)


# --- input checks on every entry point -----------------------------------------------------------
ENTRY_POINTS = {
    "fit": lambda m, X, lengths: m.fit(X, lengths),
    "filter": lambda m, X, lengths: m.filter(X, lengths),
    "smooth": lambda m, X, lengths: m.smooth(X, lengths),
    "log_prob": lambda m, X, lengths: m.log_prob(X, lengths),
    "forecast": lambda m, X, lengths: m.forecast(X, 2, lengths),
}
BAD_INPUT = {  # name: (X, lengths, the message, as a regular expression)
    "1-d for d = 2": (np.zeros(5), None,
                      r"expected observations with d = 2 entries per step, got 1 \(observations "
                      r"of shape \(5,\)\)"),
    "4-d": (np.zeros((1, 2, 3, 2)), None,
            r"observations must have shape \(T, d\) or \(B, T, d\), got \(1, 2, 3, 2\)"),
    "scalar": (1.5, None, r"observations must have shape \(T, d\) or \(B, T, d\), got \(\)"),
    "T = 0": (np.zeros((0, 2)), None,
              r"expected at least one observation step, got an empty array of shape \(0, 2\)"),
    "empty list": ([], None, r"expected at least one observation step, got an empty array of "
                             r"shape \(0,\)"),
    "batch of T = 0": (np.zeros((3, 0, 2)), None, r"got an empty array of shape \(3, 0, 2\)"),
    "ragged list": ([np.zeros((3, 2)), np.zeros((5, 2))], None,
                    r"observations must be one array, \(T, d\) or \(B, T, d\); pass sequences of "
                    r"different lengths concatenated, with lengths=\[...\] \(got sequences of "
                    r"lengths 3, 5\)"),
    "ragged rows": ([[1.0, 2.0], [3.0]], None, r"got sequences of lengths 2, 1\)"),
    "strings": ([["1.0", "2.0"]], None,
                "observations must be real numbers, got an array of dtype <U3"),
    "object entries": (np.array([[1.0, "x"]], dtype=object), None,
                       r"observations must be real numbers, got a str entry \('x'\)"),
    "complex": (np.ones((3, 2), dtype=complex), None,
                "observations must be real numbers, got an array of dtype complex128"),
    "lengths short": (np.zeros((5, 2)), [2, 2],
                      "lengths must be non-negative and sum to len\\(X\\) = 5, got sum 4 over 2 "
                      "sequences"),
    "lengths negative": (np.zeros((5, 2)), [-1, 6], r"lengths must be a list of non-negative "
                         r"integers summing to len\(X\) = 5, got \[-1, 6\]"),
    "lengths fractional": (np.zeros((5, 2)), [2.5, 2.5], r"got \[2.5, 2.5\]"),
    "lengths scalar": (np.zeros((5, 2)), 5, r"summing to len\(X\) = 5, got 5$"),
    "lengths with a batch": (np.zeros((2, 3, 2)), [3, 3],
                             r"pass lengths only with concatenated \(N, d\) observations"),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_observations_are_one_line_errors_everywhere(entry: str, case: str) -> None:
    X, lengths, match = BAD_INPUT[case]
    with pytest.raises(SeqlabError, match=match) as info:
        ENTRY_POINTS[entry](_with(), X, lengths)
    assert "\n" not in str(info.value)


def test_forecast_steps_must_be_a_positive_integer() -> None:
    X = np.zeros((4, 2))
    for steps in (0, 2.5, True, "3"):
        with pytest.raises(SeqlabError, match=f"steps must be an integer >= 1, got {steps!r}"):
            _with().forecast(X, steps)


def test_lists_none_and_integral_lengths_are_accepted() -> None:
    """What the checks let through means what it says: None in a list is a missing entry, and
    lengths may be floats with integral values, or include empty sequences."""
    m = _random_model(seed=3)
    _, X = m.sample(6, random_state=4)
    with_gap = X.copy()
    with_gap[2, 1] = np.nan
    as_list = [[None if np.isnan(v) else float(v) for v in row] for row in with_gap]
    assert np.array_equal(m.log_prob(as_list), m.log_prob(with_gap))
    assert np.array_equal(m.log_prob(X, [2.0, 0, 4.0]), m.log_prob(X, [2, 0, 4]))
    assert np.array_equal(m.log_prob(X, [2, 0, 4])[:2], m.log_prob(X[:2]))


# --- checkpoints through the registry's path ------------------------------------------------------
def test_checkpoint_round_trip_through_from_checkpoint(tmp_path: Path) -> None:
    from seqlab.models.base import load_checkpoint_file

    _, X = _random_model(seed=20).sample(80, random_state=21)
    m = LinearGaussianSSM(**_random_model(seed=22).params(), em_vars=("R", "Q"), n_iter=3,
                          random_state=5).fit(X)
    m.save(tmp_path / "k.safetensors")
    tensors, meta = load_checkpoint_file(tmp_path / "k.safetensors")
    assert meta["family"] == "kalman"
    back = LinearGaussianSSM.from_checkpoint(tensors, meta)
    lp = back.log_prob(X)
    assert lp.shape == (80,) and np.array_equal(lp, m.log_prob(X))
    assert lp.sum() == pytest.approx(m.loglikelihood(X), rel=1e-12)  # per-step terms of log p(X)
    assert back.em_vars == ("transition_covariance", "observation_covariance")
    assert back.random_state == 5 and np.array_equal(back.sample(5)[1], m.sample(5)[1])
    # the loaded parameters are the constructor's too: a refit starts where the file left off
    again = LinearGaussianSSM(**back.get_params(deep=False)).fit(X)
    assert again.history_[0] == pytest.approx(m.loglikelihood(X), rel=1e-12)


def test_damaged_kalman_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    from seqlab.io import save_tensors

    p = _random_model().params()
    save_tensors(tmp_path / "a.safetensors", {k: v for k, v in p.items()
                                              if k != "observation_matrix"}, {"family": "kalman"})
    save_tensors(tmp_path / "b.safetensors", p, {"family": "particle"})
    save_tensors(tmp_path / "c.safetensors", p, {"family": "kalman",
                                                 "config": {"em_vars": ["F", "S"]}})
    for name, match in (("a", "the kalman checkpoint is missing the array 'observation_matrix'"),
                        ("b", "expected a kalman checkpoint, got 'particle'"),
                        ("c", "em_vars must name parameters among")):
        with pytest.raises(SeqlabError, match=f"{name}.safetensors: {match}") as info:
            LinearGaussianSSM.load(tmp_path / f"{name}.safetensors")
        assert "\n" not in str(info.value)
