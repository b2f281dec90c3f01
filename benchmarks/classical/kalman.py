"""Kalman benchmark: filter + RTS smoother against statsmodels, filterpy and pykalman.

    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.classical.kalman

The 4-d constant-velocity model observed in 2-d position, T = 100,000 steps, one sequence. Each
library runs the filter and the smoother on the same data (best of several runs after a
warm-up; pykalman, at ~30 s, runs once). The difference column is the largest absolute
difference of the smoothed means from seqlab's; the log-likelihood is compared where the
library reports one.
"""

from __future__ import annotations

import argparse

import numpy as np
from filterpy.kalman import KalmanFilter as FilterpyKF
from pykalman import KalmanFilter as PykalmanKF
from statsmodels.tsa.statespace.kalman_smoother import KalmanSmoother

from benchmarks.classical.timing import RESULTS, best_of, versions
from benchmarks.common import check_quiet, markdown_table, write_results
from seqlab.models.kalman import LinearGaussianSSM, constant_velocity

T = 100_000


def run_statsmodels(p: dict, X: np.ndarray) -> tuple[np.ndarray, float]:
    ks = KalmanSmoother(k_endog=2, k_states=4)
    ks.bind(X.copy())
    ks["design"], ks["obs_cov"] = p["observation_matrix"], p["observation_covariance"]
    ks["transition"], ks["state_cov"] = p["transition_matrix"], p["transition_covariance"]
    ks["selection"] = np.eye(4)
    ks.initialize_known(p["initial_state_mean"], p["initial_state_covariance"])
    res = ks.smooth()
    return res.smoothed_state.T, float(res.llf_obs.sum())


def run_filterpy(p: dict, X: np.ndarray) -> tuple[np.ndarray, None]:
    kf = FilterpyKF(dim_x=4, dim_z=2)
    kf.F, kf.H = p["transition_matrix"], p["observation_matrix"]
    kf.Q, kf.R = p["transition_covariance"], p["observation_covariance"]
    kf.x, kf.P = p["initial_state_mean"].copy(), p["initial_state_covariance"].copy()
    # update_first: the initial (x, P) is the prior of the first observed state, as in seqlab
    means, covs, _, _ = kf.batch_filter(X, update_first=True)
    smoothed, _, _, _ = kf.rts_smoother(means, covs)
    return smoothed, None


def run_pykalman(p: dict, X: np.ndarray) -> tuple[np.ndarray, None]:
    kf = PykalmanKF(transition_matrices=p["transition_matrix"],
                    observation_matrices=p["observation_matrix"],
                    transition_covariance=p["transition_covariance"],
                    observation_covariance=p["observation_covariance"],
                    initial_state_mean=p["initial_state_mean"],
                    initial_state_covariance=p["initial_state_covariance"])
    return kf.smooth(X)[0], None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quiet = check_quiet()
    p = constant_velocity()
    model = LinearGaussianSSM(**p)
    _, X = model.sample(T, random_state=0)

    def ours() -> tuple[np.ndarray, float]:
        res = model.smooth(X)
        return res.smoothed_means, res.log_likelihood

    t_ours, (m_ours, ll_ours) = best_of(ours, repeats=args.repeats)
    rows = [{"library": "seqlab", "seconds": t_ours, "log_likelihood": ll_ours}]
    for name, fn, repeats in (("statsmodels", run_statsmodels, args.repeats),
                              ("filterpy", run_filterpy, 1), ("pykalman", run_pykalman, 1)):
        t, (m, ll) = best_of(lambda fn=fn: fn(p, X), repeats=repeats, warmup=0)
        rows.append({"library": name, "seconds": t, "log_likelihood": ll,
                     "max_abs_diff": float(np.abs(m - m_ours).max())})
    for r in rows:
        r["seqlab_over_library"] = t_ours / r["seconds"]
        r["speedup"] = r["seconds"] / t_ours
    print(markdown_table(rows, [
        ("library", "library", "s"), ("seconds", "filter + smoother s", ".3f"),
        ("speedup", "seqlab speed-up", ".1f"),
        ("max_abs_diff", "largest smoothed-mean difference", ".1e"),
        ("log_likelihood", "log-likelihood", ".6f")]))
    write_results(RESULTS / "kalman.json", {
        "benchmark": "kalman", "T": T, "quiet": quiet,
        "versions": versions("statsmodels", "filterpy", "pykalman", "numba"), "rows": rows})


if __name__ == "__main__":
    main()
