"""HMMs: Wikipedia's worked examples, brute force, hmmlearn agreement, EM, the language model."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hmmlearn import hmm as hmmlearn_hmm
from tests.conftest import char_vocab, stepped_log_probs

from seqlab.cli import main as cli_main
from seqlab.errors import SeqlabError
from seqlab.models.hmm import HMMLM, CategoricalHMM, GaussianHMM, HMMConfig
from seqlab.scoring import evaluate


def _categorical(pi, A, E) -> CategoricalHMM:
    m = CategoricalHMM(len(pi), n_features=np.shape(E)[1])
    m.startprob_, m.transmat_, m.emissionprob_ = (np.array(v, dtype=float) for v in (pi, A, E))
    return m


def _random_categorical(K: int, M: int, seed: int, alpha: float = 1.0) -> CategoricalHMM:
    rng = np.random.default_rng(seed)
    return _categorical(rng.dirichlet(np.ones(K)), rng.dirichlet(np.full(K, alpha), size=K),
                        rng.dirichlet(np.full(M, alpha), size=K))


# --- golden values: Wikipedia ----------------------------------------------------------------
# "Forward-backward algorithm", worked example: states (rain, no rain), T = [[.7, .3], [.3, .7]],
# P(umbrella | rain) = .9, P(umbrella | no rain) = .2, prior (.5, .5) one step before the first
# observation; observations umbrella, umbrella, no umbrella, umbrella, umbrella. In hmmlearn's
# convention the first observation comes from the initial state, whose distribution is then
# prior @ T = (.5, .5). Wikipedia prints every message normalised, to 4 decimals.
UMBRELLA = _categorical([0.5, 0.5], [[0.7, 0.3], [0.3, 0.7]], [[0.1, 0.9], [0.8, 0.2]])
UMBRELLA_X = np.array([1, 1, 0, 1, 1])  # 1 = umbrella
WIKI_FORWARD = [[0.8182, 0.1818], [0.8834, 0.1166], [0.1907, 0.8093], [0.7308, 0.2692],
                [0.8673, 0.1327]]
WIKI_BACKWARD = [[0.5923, 0.4077], [0.3763, 0.6237], [0.6533, 0.3467], [0.6273, 0.3727],
                 [1.0, 1.0]]  # b_{t:5} for t = 1..5; the last is the unnormalised (1, 1)
WIKI_SMOOTHED = [[0.8673, 0.1327], [0.8204, 0.1796], [0.3075, 0.6925], [0.8204, 0.1796],
                 [0.8673, 0.1327]]


def test_wikipedia_forward_backward_lattices() -> None:
    fb = UMBRELLA.forward_backward(UMBRELLA_X)
    assert np.allclose(fb["alpha"], WIKI_FORWARD, atol=5e-5)
    beta = fb["beta"] / fb["beta"].sum(axis=1, keepdims=True)
    assert np.allclose(beta[:-1], WIKI_BACKWARD[:-1], atol=5e-5)
    assert np.allclose(fb["beta"][-1], 1.0)
    assert np.allclose(fb["posteriors"], WIKI_SMOOTHED, atol=5e-5)


def test_wikipedia_viterbi_examples() -> None:
    # umbrella: rain, rain, no rain, rain, rain
    logp, path = UMBRELLA.decode(UMBRELLA_X)
    assert path.tolist() == [0, 0, 1, 0, 0]
    # "Viterbi algorithm" page: healthy/fever with observations normal, cold, dizzy gives
    # Healthy Healthy Fever with probability 0.01512.
    doctor = _categorical([0.6, 0.4], [[0.7, 0.3], [0.4, 0.6]], [[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]])
    logp, path = doctor.decode(np.array([0, 1, 2]))
    assert path.tolist() == [0, 0, 1]
    assert math.exp(logp) == pytest.approx(0.01512, rel=1e-12)


def _brute_force(m: CategoricalHMM, x: np.ndarray) -> tuple[float, np.ndarray, list[int], float]:
    """Sum and max over all K^T paths: likelihood, posteriors, best path, its probability."""
    K, T = m.n_components, len(x)
    total, post, best = 0.0, np.zeros((T, K)), (-1.0, [])
    for z in itertools.product(range(K), repeat=T):
        p = m.startprob_[z[0]] * np.prod(m.transmat_[z[:-1], z[1:]]) * np.prod(
            m.emissionprob_[z, x])
        total += p
        post[np.arange(T), z] += p
        best = max(best, (p, list(z)))
    return math.log(total), post / total, best[1], math.log(best[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed: int) -> None:
    m = _random_categorical(3, 4, seed)
    x, _ = m.sample(6, random_state=seed)
    logp, post, path, path_logp = _brute_force(m, x)
    assert m.score(x) == pytest.approx(logp, rel=1e-12)
    assert np.allclose(m.predict_proba(x), post, atol=1e-12)
    assert m.decode(x) == (pytest.approx(path_logp, rel=1e-12), pytest.approx(path))
    steps = m.score_steps(x)  # one-step predictive: sums to the log-likelihood
    assert steps.sum() == pytest.approx(logp, rel=1e-12)
    assert steps[0] == pytest.approx(math.log(m.startprob_ @ m.emissionprob_[:, x[0]]), rel=1e-12)


def test_posteriors_sum_to_one_and_no_underflow_on_a_million_steps() -> None:
    m = _random_categorical(4, 6, 7)
    x, _ = m.sample(1_000_000, random_state=1)
    logp, post = m.score_samples(x)
    assert np.isfinite(logp) and logp < -1e5  # an unscaled forward pass underflows at ~1e3
    assert np.abs(post.sum(axis=1) - 1).max() < 1e-12
    assert m.score_steps(x).sum() == pytest.approx(logp, rel=1e-12)


def test_gaussian_frames_far_in_the_tail_do_not_underflow() -> None:
    """A frame 1000 standard deviations out has density exp(-5e5), 0 in float64; the per-step
    scaling keeps it, and the result equals hmmlearn's log-space implementation."""
    g = GaussianHMM(2, covariance_type="diag")
    g.startprob_, g.transmat_ = np.array([0.6, 0.4]), np.array([[0.9, 0.1], [0.2, 0.8]])
    g.means_, g.covars_ = np.array([[0.0], [3.0]]), np.array([[1.0], [2.0]])
    x = np.array([[0.1], [1000.0], [2.5], [-800.0], [0.3]])
    ref = hmmlearn_hmm.GaussianHMM(2, covariance_type="diag", implementation="log")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = (
        g.startprob_, g.transmat_, g.means_, g.covars_)
    logp, post = g.score_samples(x)
    ref_logp, ref_post = ref.score_samples(x)
    assert logp == pytest.approx(ref_logp, rel=1e-12)
    assert np.allclose(post, ref_post, atol=1e-12)


# --- reference agreement: hmmlearn ---------------------------------------------------------------
def _assert_same_inference(ours, ref, X, lengths, X_ref) -> None:
    logp, post = ours.score_samples(X, lengths)
    ref_logp, ref_post = ref.score_samples(X_ref, lengths)
    assert logp == pytest.approx(ref_logp, rel=1e-8)
    assert np.allclose(post, ref_post, rtol=1e-8, atol=1e-12)
    vit, path = ours.decode(X, lengths)
    ref_vit, ref_path = ref.decode(X_ref, lengths)
    assert vit == pytest.approx(ref_vit, rel=1e-8)
    # On these data no two paths tie exactly (with ties, either optimal path is a valid answer).
    assert np.array_equal(path, ref_path)


@pytest.mark.parametrize("seed", [0, 2])
def test_categorical_matches_hmmlearn(seed: int) -> None:
    m = _random_categorical(5, 7, seed)
    X, _ = m.sample(3000, random_state=seed + 10)
    lengths = [1200, 900, 900]
    ref = hmmlearn_hmm.CategoricalHMM(5, n_features=7, implementation="scaling")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = m.startprob_, m.transmat_, m.emissionprob_
    _assert_same_inference(m, ref, X, lengths, X[:, None])


def test_viterbi_ties_between_paths_are_exact() -> None:
    """With discrete symbols two state paths can have exactly the same probability (the same
    factors in another order). For seed 4, hmmlearn and seqlab then pick different optimal paths;
    both are optimal: their log-probabilities, summed exactly (math.fsum), are equal."""
    m = _random_categorical(5, 7, 4)
    X, _ = m.sample(3000, random_state=14)
    ref = hmmlearn_hmm.CategoricalHMM(5, n_features=7, implementation="scaling")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = m.startprob_, m.transmat_, m.emissionprob_
    ours, theirs = m.predict(X), ref.predict(X[:, None])

    def joint(z: np.ndarray) -> float:
        return math.fsum(np.log(np.concatenate([[m.startprob_[z[0]]], m.emissionprob_[z, X],
                                                m.transmat_[z[:-1], z[1:]]])))

    assert not np.array_equal(ours, theirs)
    assert joint(ours) == joint(theirs)


@pytest.mark.parametrize("cov", ["spherical", "diag", "full", "tied"])
def test_gaussian_matches_hmmlearn(cov: str) -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(600, 2)) + 3 * rng.integers(0, 3, (600, 1))
    g = GaussianHMM(3, covariance_type=cov, random_state=0, n_iter=5).fit(data)
    ref = hmmlearn_hmm.GaussianHMM(3, covariance_type=cov, implementation="scaling")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = (
        g.startprob_, g.transmat_, g.means_, g.covars_)
    X, _ = g.sample(800, random_state=4)
    _assert_same_inference(g, ref, X, [500, 300], X)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_baum_welch_follows_hmmlearn_iteration_by_iteration(kind: str) -> None:
    """Same start, same data: the same log-likelihood after every iteration (same M-step)."""
    if kind == "categorical":
        start = _random_categorical(4, 6, 5)
        X, _ = _random_categorical(4, 6, 6).sample(2000, random_state=0)
        ours = CategoricalHMM(4, n_features=6, n_iter=8, tol=-np.inf, init_params="")
        ref = hmmlearn_hmm.CategoricalHMM(4, n_features=6, n_iter=8, tol=-np.inf,
                                          init_params="", implementation="scaling")
        names, X_ref = ("startprob_", "transmat_", "emissionprob_"), X[:, None]
    else:
        start = GaussianHMM(3, covariance_type="full", random_state=1, n_iter=1).fit(
            np.random.default_rng(2).normal(size=(300, 2)))
        X = np.random.default_rng(3).normal(size=(1000, 2)) * [1.0, 2.0]
        ours = GaussianHMM(3, covariance_type="full", n_iter=8, tol=-np.inf, init_params="")
        ref = hmmlearn_hmm.GaussianHMM(3, covariance_type="full", n_iter=8, tol=-np.inf,
                                       init_params="", implementation="scaling")
        names, X_ref = ("startprob_", "transmat_", "means_", "covars_"), X
    for model in (ours, ref):
        for name in names:
            setattr(model, name, getattr(start, name).copy())
    ours.fit(X, [600, len(X) - 600])
    ref.fit(X_ref, [600, len(X) - 600])
    assert np.allclose(ours.convergence_.history[0], list(ref.monitor_.history), rtol=1e-8)
    for name in names:
        assert np.allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6, atol=1e-10)


# --- Baum-Welch --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["categorical", "gaussian-full", "gaussian-diag"])
def test_em_log_likelihood_never_decreases(kind: str) -> None:
    if kind == "categorical":
        X, _ = _random_categorical(4, 8, 0, alpha=0.5).sample(5000, random_state=1)
        m = CategoricalHMM(4, n_iter=60, tol=-np.inf, n_init=3, random_state=0)
    else:
        X, _ = _gaussian_truth().sample(3000, random_state=1)
        # no covariance prior: with it, EM climbs the posterior, not the likelihood
        m = GaussianHMM(3, covariance_type=kind.split("-")[1], covars_prior=0.0, n_iter=40,
                        tol=-np.inf, n_init=2, random_state=0)
    m.fit(X, [len(X) // 2, len(X) - len(X) // 2])
    for history in m.convergence_.history:
        h = np.array(history)
        assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:])), np.diff(h).min()
        assert h[-1] > h[0]


def _gaussian_truth() -> GaussianHMM:
    g = GaussianHMM(3, covariance_type="full")
    g.startprob_ = np.array([0.5, 0.3, 0.2])
    g.transmat_ = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    g.means_ = np.array([[0.0, 0.0], [4.0, 1.0], [-2.0, 5.0]])
    g.covars_ = np.array([[[1.0, 0.3], [0.3, 1.0]], [[0.5, 0.0], [0.0, 2.0]],
                          [[1.5, -0.4], [-0.4, 0.8]]])
    return g


def test_restarts_keep_the_best_and_report_convergence() -> None:
    X, _ = _random_categorical(5, 8, 1, alpha=0.3).sample(4000, random_state=2)
    m = CategoricalHMM(5, n_iter=2000, tol=1e-2, n_init=4, random_state=7).fit(X)
    report = m.convergence_
    finals = [h[-1] for h in report.history]
    assert len(finals) == 4 and report.best == int(np.argmax(finals))
    assert report.log_likelihood == max(finals)
    assert all(report.converged)  # each stopped on tol, within the budget
    for h in report.history:
        assert h[-1] - h[-2] < 1e-2 <= h[-2] - h[-3] or len(h) == 2
    # the kept parameters are the best restart's: one more E-step scores at least as well
    assert m.score(X) >= report.log_likelihood - 1e-6
    assert "<- kept" in report.summary().splitlines()[report.best]


def test_gaussian_em_recovers_the_generating_model() -> None:
    truth = _gaussian_truth()
    X, Z = truth.sample(20_000, random_state=0)
    m = GaussianHMM(3, covariance_type="full", n_iter=200, tol=1e-4, n_init=3,
                    random_state=0).fit(X)
    order = [int(np.argmin(((m.means_ - mu) ** 2).sum(1))) for mu in truth.means_]
    assert sorted(order) == [0, 1, 2]
    assert np.allclose(m.means_[order], truth.means_, atol=0.1)
    assert np.allclose(m.transmat_[np.ix_(order, order)], truth.transmat_, atol=0.03)
    assert np.allclose(m.covars_[order], truth.covars_, atol=0.1)
    assert np.mean(m.predict(X) == np.array(order)[Z]) > 0.95  # Viterbi finds the true states


def test_sampling_follows_the_parameters() -> None:
    m = _random_categorical(3, 4, 11)
    X, Z = m.sample(200_000, random_state=5)
    trans = np.zeros((3, 3))
    np.add.at(trans, (Z[:-1], Z[1:]), 1)
    assert np.allclose(trans / trans.sum(1, keepdims=True), m.transmat_, atol=0.01)
    emit = np.zeros((3, 4))
    np.add.at(emit, (Z, X), 1)
    assert np.allclose(emit / emit.sum(1, keepdims=True), m.emissionprob_, atol=0.01)
    assert m.sample(5, random_state=5)[1][0] == Z[0]  # same seed, same draw
    assert m.sample(3, currstate=2)[1][0] == 2


def test_known_entropy_rate() -> None:
    """EM on 100k symbols of a random HMM (K=8, M=16) comes within 0.01 nats/symbol of the
    true model on held-out data (benchmarks/classical/entropy.py gives the full table)."""
    rng = np.random.default_rng(0)
    truth = _categorical(rng.dirichlet(np.ones(8)), rng.dirichlet(np.full(8, 0.5), size=8),
                         rng.dirichlet(np.full(16, 0.5), size=8))
    train, _ = truth.sample(100_000, random_state=1)
    test, _ = truth.sample(100_000, random_state=2)
    fit = CategoricalHMM(8, n_features=16, n_iter=150, tol=1e-2, n_init=2,
                         random_state=3).fit(train)
    true_nats, fit_nats = -truth.score(test) / len(test), -fit.score(test) / len(test)
    assert 0 <= fit_nats - true_nats < 0.01, (fit_nats, true_nats)


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "call", "match"), [
    (lambda: _random_categorical(2, 3, 0), lambda m: m.score(np.array([0.0, np.nan, 1.0])),
     "integer symbols, got NaN at position 1"),
    (lambda: _random_categorical(2, 3, 0), lambda m: m.score(np.array([0, 3, 1])),
     r"symbols must be in \[0, 3\).*got 3"),
    (lambda: _random_categorical(2, 3, 0), lambda m: m.score(np.array([0, -1])),
     "symbols must be >= 0, got -1"),
    (lambda: _random_categorical(2, 3, 0), lambda m: m.score(np.array([0, 1, 2]), [2, 2]),
     "lengths must be non-negative and sum to len"),
    (lambda: _categorical([0.5, 0.5], [[0.9, 0.2], [0.5, 0.5]], [[1, 0], [0, 1]]),
     lambda m: m.score(np.array([0, 1])), r"transmat_ rows must sum to 1 \(got row sums of 1\.1"),
    (lambda: _categorical([0.7, 0.5], [[1, 0], [0, 1]], [[1, 0], [0, 1]]),
     lambda m: m.score(np.array([0])), r"startprob_ must sum to 1 \(got a sum of 1\.2"),
    (lambda: CategoricalHMM(2, n_features=3), lambda m: [
        setattr(m, k, v) for k, v in (("startprob_", [1, 0]), ("transmat_", np.eye(2)),
                                      ("emissionprob_", np.eye(2)))] and m.score(np.array([0])),
     "emissionprob_ must have n_features=3 columns, got 2"),
    (lambda: CategoricalHMM(2, n_features=3), lambda m: m.fit(np.array([0, 1, 5])),
     r"symbols must be in \[0, 3\)"),
    (lambda: CategoricalHMM(0), lambda m: m.fit(np.array([0, 1])),
     "n_components must be a positive integer, got 0"),
    (lambda: _gaussian_truth(), lambda m: setattr(m, "covars_", m.covars_ * [[[1, 1], [1, -1]]])
     or m.score(np.zeros((3, 2))), "positive definite, got smallest eigenvalue"),
    (lambda: _gaussian_truth(), lambda m: setattr(m, "covars_", m.covars_[:, :, :1])
     or m.score(np.zeros((3, 2))), r"must have shape \(3, 2, 2\), got \(3, 2, 1\)"),
    (lambda: _gaussian_truth(), lambda m: m.score(np.array([[0.0, np.nan]])),
     "must be finite, got NaN"),
    (lambda: _gaussian_truth(), lambda m: m.score(np.zeros((4, 3))),
     "expected 2 features per step, got 3"),
    (lambda: GaussianHMM(2, covariance_type="diagonal"), lambda m: m.fit(np.zeros((5, 1))),
     "covariance_type must be spherical, diag, full or tied, got 'diagonal'"),
])
def test_bad_input_is_a_clear_value_error(make, call, match) -> None:
    with pytest.raises(ValueError, match=match) as info:
        call(make())
    assert info.type is SeqlabError and "\n" not in str(info.value)


# --- the language model ---------------------------------------------------------------------------
def _lm(text: str = "abcab\ncab\nbca\nabc\n" * 30, **cfg: object) -> HMMLM:
    v = char_vocab("abc")
    lm = HMMLM(HMMConfig(**{"n_states": 3, "n_iter": 20, **cfg}), v)
    return lm.fit(v.encode(text))


def test_lm_log_prob_is_the_filtered_predictive() -> None:
    lm = _lm()
    v, h = lm.vocab, lm.hmm_
    x = v.encode("cab\nab")
    # brute force: log p(eos, x_1..t) - log p(eos, x_1..t-1) on the HMM with the virtual eos
    s = np.concatenate([[v.eos_id], x])
    joint = [_brute_force(h, s[: t + 1])[0] for t in range(len(s))]
    assert np.allclose(lm.log_prob(x), np.diff(joint), atol=1e-10)
    # stepping through the sampler's interface gives the same numbers
    stepped, logits, _ = stepped_log_probs(lm, x)
    assert np.allclose(stepped, lm.log_prob(x), atol=1e-12)
    assert torch.exp(logits).sum().item() == pytest.approx(1.0, abs=1e-12)


def test_lm_every_token_has_non_zero_probability() -> None:
    lm = _lm()
    x = np.array([2, lm.vocab.unk_id, 3])  # <unk> never occurs in the training text
    assert np.all(np.isfinite(lm.log_prob(x)))


def test_lm_lengths_and_checkpoint_round_trip(tmp_path: Path) -> None:
    lm = _lm()
    x = lm.vocab.encode("abca\nbcab\n")
    joint = lm.log_prob(x, lengths=[4, 6])
    assert np.allclose(joint, np.concatenate([lm.log_prob(x[:4]), lm.log_prob(x[4:])]))
    lm.save(tmp_path / "m.safetensors")
    back = HMMLM.load(tmp_path / "m.safetensors")
    assert np.array_equal(back.log_prob(x), lm.log_prob(x))
    assert np.array_equal(back.generate(40, seed=3), lm.generate(40, seed=3))


def test_lm_learns_a_deterministic_cycle() -> None:
    """"abc" repeated is a 3-state cycle: EM with 3 states must predict it almost surely."""
    lm = _lm("abc" * 300 + "\n", n_iter=100, n_init=3)
    bits = evaluate(lm, lm.vocab.encode("abcabcabcabc")).bits_per_token
    assert bits < 0.2  # (the first symbol after the virtual newline carries most of it)


def test_cli_train_eval_sample(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 40, encoding="utf-8")
    run = tmp_path / "run"
    argv = ["train", "--model", "hmm", "--data", str(text), "--out", str(run),
            "model.n_states=4", "model.n_iter=5", "train.progress=false"]
    assert cli_main(argv) == 0
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(train) == 5 and train[-1] < train[0]
    assert any(r["kind"] == "eval" for r in records)
    out = subprocess.run([sys.executable, "-m", "seqlab.cli", "eval", str(run), "--json"],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["model"] == "hmm" and 0 < result["bits_per_token"] < 5
    out = subprocess.run([sys.executable, "-m", "seqlab.cli", "sample", str(run), "--length",
                          "30", "--seed", "1"], capture_output=True, text=True, check=True)
    assert len(out.stdout) >= 30


def test_cli_bad_hmm_config_is_one_line(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("abc\n" * 50, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "seqlab.cli", "train", "--model", "hmm",
                          "--data", str(text), "--out", str(tmp_path / "r"), "model.n_states=0"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "seqlab: error: model.n_states, model.n_iter and model.n_init must be >= 1, got 0, 100 "
        "and 1"]
    assert not (tmp_path / "r").exists()


def test_cli_corrupt_hmm_checkpoint_is_one_line(tmp_path: Path) -> None:
    """A checkpoint whose transition rows do not sum to 1: `seqlab eval` says so in one line."""
    from seqlab.io import load_tensors, save_tensors

    lm = _lm()
    lm.save(tmp_path / "m.safetensors")
    tensors, meta = load_tensors(tmp_path / "m.safetensors")
    tensors["transmat"] = tensors["transmat"] * 1.5
    save_tensors(tmp_path / "bad.safetensors", tensors, meta)
    text = tmp_path / "t.txt"
    text.write_text("abc\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "seqlab.cli", "eval", str(tmp_path /
                          "bad.safetensors"), "--data", str(text)], capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "transmat_ rows must sum to 1 (got row sums of 1.5" in lines[0]
