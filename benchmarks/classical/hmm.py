"""HMM benchmark: seqlab against hmmlearn's scaling implementation, same parameters, same data.

    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.classical.hmm

One sequence of T = 200,000 symbols (M = 64) from a random HMM, for K = 16 and K = 64 states.
Both libraries start Baum-Welch from the same random parameters and run the same iterations;
the table gives seconds per iteration, for ``score`` and for Viterbi (best of several runs
after a warm-up, so numba's compilation is excluded), the ratio seqlab / hmmlearn, and whether
the results agree: the log-likelihood after every EM iteration to 1e-8 relative, ``score`` to
1e-8 relative, the Viterbi log-probability to 1e-8 relative (paths may differ only where two
paths tie exactly).
"""

from __future__ import annotations

import argparse

import numpy as np
from hmmlearn import hmm as hmmlearn_hmm

from benchmarks.classical.timing import RESULTS, best_of, versions
from benchmarks.common import check_quiet, markdown_table, write_results
from seqlab.models.hmm import CategoricalHMM

M, T = 64, 200_000


def random_params(K: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"startprob_": rng.dirichlet(np.ones(K)),
            "transmat_": rng.dirichlet(np.ones(K), size=K),
            "emissionprob_": rng.dirichlet(np.ones(M), size=K)}


def with_params(model, params: dict[str, np.ndarray]):
    for k, v in params.items():
        setattr(model, k, v.copy())
    return model


def bench_k(K: int, n_iter: int, repeats: int) -> list[dict]:
    truth = with_params(CategoricalHMM(K, n_features=M), random_params(K, 0))
    X, _ = truth.sample(T, random_state=1)
    start = random_params(K, 2)

    def ours_fit():
        return with_params(CategoricalHMM(K, n_features=M, n_iter=n_iter, tol=-np.inf,
                                          init_params=""), start).fit(X)

    def ref_fit():
        return with_params(hmmlearn_hmm.CategoricalHMM(
            K, n_features=M, n_iter=n_iter, tol=-np.inf, init_params="",
            implementation="scaling"), start).fit(X[:, None])

    t_ours, ours = best_of(ours_fit, repeats=repeats)
    t_ref, ref = best_of(ref_fit, repeats=repeats, warmup=0)
    em_equal = np.allclose(ours.convergence_.history[0], list(ref.monitor_.history), rtol=1e-8)
    rows = [{"K": K, "op": f"Baum-Welch iteration (mean of {n_iter})", "hmmlearn": t_ref / n_iter,
             "seqlab": t_ours / n_iter, "equal": em_equal}]
    model = with_params(CategoricalHMM(K, n_features=M), start)
    ref_model = with_params(hmmlearn_hmm.CategoricalHMM(K, n_features=M,
                                                        implementation="scaling"), start)
    t_ours, s_ours = best_of(lambda: model.score(X), repeats=5)
    t_ref, s_ref = best_of(lambda: ref_model.score(X[:, None]), repeats=5)
    rows.append({"K": K, "op": "score", "hmmlearn": t_ref, "seqlab": t_ours,
                 "equal": bool(np.isclose(s_ours, s_ref, rtol=1e-8))})
    t_ours, (v_ours, p_ours) = best_of(lambda: model.decode(X), repeats=3)
    t_ref, (v_ref, p_ref) = best_of(lambda: ref_model.decode(X[:, None]), repeats=3)
    rows.append({"K": K, "op": "Viterbi", "hmmlearn": t_ref, "seqlab": t_ours,
                 "equal": bool(np.isclose(v_ours, v_ref, rtol=1e-8)),
                 "path_differences": int((p_ours != p_ref).sum())})
    for r in rows:
        r["ratio"] = r["seqlab"] / r["hmmlearn"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5, help="Baum-Welch iterations timed")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each fit (best kept)")
    args = ap.parse_args()
    quiet = check_quiet()
    rows = [r for K in (16, 64) for r in bench_k(K, args.iters, args.repeats)]
    print(markdown_table(rows, [
        ("K", "K", "d"), ("op", "operation", "s"), ("hmmlearn", "hmmlearn s", ".3f"),
        ("seqlab", "seqlab s", ".3f"), ("ratio", "seqlab / hmmlearn", ".2f"),
        ("equal", "same result", "")]))
    write_results(RESULTS / "hmm.json", {"benchmark": "hmm", "M": M, "T": T, "quiet": quiet,
                                         "versions": versions("hmmlearn", "numba"),
                                         "rows": rows})


if __name__ == "__main__":
    main()
