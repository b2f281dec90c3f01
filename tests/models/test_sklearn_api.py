"""scikit-learn conventions (`seqlab.params.Params`) on the HMMs, the Kalman model and the
particle filter: get/set_params, repr, ``sklearn.base.clone`` and ``GridSearchCV``.

scikit-learn is a test-only dependency: the tests that import it skip when it is absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tests.models.test_particle import PARAMS

from seqlab.errors import SeqlabError
from seqlab.models.hmm import CategoricalHMM, GaussianHMM
from seqlab.models.kalman import LinearGaussianSSM
from seqlab.models.particle import BootstrapParticleFilter, StateSpaceModel, linear_gaussian

LG = PARAMS  # the particle tests' 2-d state, 1-d observation linear-Gaussian model


def _sticky_hmm() -> CategoricalHMM:
    """Two sticky states over three symbols, each state mostly emitting its own symbol."""
    m = CategoricalHMM(2, n_features=3)
    m.startprob_ = np.array([0.5, 0.5])
    m.transmat_ = np.array([[0.95, 0.05], [0.05, 0.95]])
    m.emissionprob_ = np.array([[0.8, 0.15, 0.05], [0.05, 0.15, 0.8]])
    return m


def _symbols(n: int = 600, seed: int = 0) -> np.ndarray:
    return _sticky_hmm().sample(n, random_state=seed)[0]


def _lg_data(T: int = 60) -> np.ndarray:
    return LinearGaussianSSM(**LG).sample(T, random_state=0)[1]


# Each case: a fitted (or ready) estimator and the data it was fitted on.
CASES: dict[str, Callable[[], Any]] = {
    "categorical": lambda: CategoricalHMM(2, n_iter=5, random_state=0).fit(_symbols()),
    "gaussian": lambda: GaussianHMM(2, covariance_type="full", n_iter=5, random_state=0).fit(
        np.random.default_rng(1).normal(size=(200, 2))),
    "kalman": lambda: LinearGaussianSSM(**LG, em_vars=("Q", "R"), n_iter=3).fit(_lg_data()),
    "particle": lambda: BootstrapParticleFilter(linear_gaussian(**LG), 200, random_state=4),
}


def _same(a: Any, b: Any) -> bool:
    """Equal values, arrays compared entry by entry, nested parametrised values by params."""
    if hasattr(a, "get_params"):
        return type(a) is type(b) and _same_params(a.get_params(deep=False),
                                                   b.get_params(deep=False))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _same_params(p: dict[str, Any], q: dict[str, Any]) -> bool:
    return p.keys() == q.keys() and all(_same(p[k], q[k]) for k in p)


def _fitted_attributes(est: Any) -> list[str]:
    return [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]


# --- get_params / set_params ----------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_get_params_set_params_round_trip(case: str) -> None:
    est = CASES[case]()
    params = est.get_params(deep=False)
    fresh = type(est)(**params)
    assert _same_params(fresh.get_params(deep=False), params)
    blank = type(est)(model=None) if case == "particle" else type(est)()
    assert blank.set_params(**params) is blank  # returns self, for chaining
    assert _same_params(blank.get_params(deep=False), params)
    assert est.set_params(**est.get_params(deep=True)) is est  # deep keys are accepted too


def test_get_params_reads_the_constructor_signature() -> None:
    m = CategoricalHMM(3, n_iter=20)
    assert list(m.get_params()) == [
        "n_components", "n_features", "emissionprob_prior", "startprob_prior", "transmat_prior",
        "algorithm", "random_state", "n_iter", "tol", "n_init", "params", "init_params",
        "verbose"]
    assert m.get_params()["n_iter"] == 20 and m.get_params()["tol"] == 1e-2
    # the base-class arguments are in GaussianHMM's signature too, not hidden in **kwargs
    assert GaussianHMM(random_state=3, params="mc").get_params()["random_state"] == 3


def test_nested_params_of_the_particle_model() -> None:
    pf = CASES["particle"]()
    deep = pf.get_params(deep=True)
    assert np.array_equal(deep["model__observation_covariance"], LG["observation_covariance"])
    assert "model__transition_matrix" in deep and "model" in deep
    assert "model__transition_matrix" not in pf.get_params(deep=False)


def test_unknown_params_are_a_one_line_error_naming_the_valid_ones() -> None:
    with pytest.raises(SeqlabError) as info:
        CategoricalHMM().set_params(n_states=3)
    msg = str(info.value)
    assert msg.startswith("CategoricalHMM has no parameter 'n_states'; valid parameters: "
                          "n_components, n_features, emissionprob_prior,")
    assert "\n" not in msg
    with pytest.raises(SeqlabError, match="LinearGaussianModel has no parameter 'F'"):
        CASES["particle"]().set_params(model__F=np.eye(2))
    callables = StateSpaceModel(lambda rng, n: np.zeros((n, 1)), lambda z, t, rng: z,
                                lambda x, z, t: np.zeros(len(z)))
    with pytest.raises(SeqlabError, match="model has no parameters to set, got model__F"):
        BootstrapParticleFilter(callables).set_params(model__F=1.0)


# --- set_params then fit equals constructing with those params ------------------------------------
def test_categorical_set_params_then_fit_equals_a_fresh_fit() -> None:
    # the second data set has a 4th symbol: nothing learned by the first fit may leak into it
    X1 = _symbols(300, seed=1)
    X2 = np.concatenate([_symbols(300, seed=2), [3, 3, 0, 3]])
    refit = CategoricalHMM(2, n_iter=3, random_state=0).fit(X1)
    refit.set_params(n_components=3, n_iter=7, random_state=5).fit(X2)
    fresh = CategoricalHMM(3, n_iter=7, random_state=5).fit(X2)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        assert np.array_equal(getattr(refit, name), getattr(fresh, name))
    assert refit.convergence_.history == fresh.convergence_.history
    assert refit.n_features_ == fresh.n_features_ == 4


def test_gaussian_set_params_then_fit_equals_a_fresh_fit() -> None:
    rng = np.random.default_rng(3)
    X1, X2 = rng.normal(size=(150, 2)), rng.normal(size=(150, 3))  # D changes between fits
    refit = GaussianHMM(2, random_state=0).fit(X1)
    refit.set_params(covariance_type="full", n_components=3, random_state=1).fit(X2)
    fresh = GaussianHMM(3, covariance_type="full", random_state=1).fit(X2)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        assert np.array_equal(getattr(refit, name), getattr(fresh, name))
    assert refit.covars_.shape == (3, 3, 3)


def test_kalman_set_params_then_fit_starts_from_the_new_params() -> None:
    X = _lg_data()
    start = {**LG, "transition_matrix": np.array([[0.5, 0.0], [0.0, 0.5]])}
    refit = LinearGaussianSSM(**LG, n_iter=4).fit(X)
    refit.set_params(**start, em_vars=("F", "Q"), n_iter=6).fit(X)
    fresh = LinearGaussianSSM(**start, em_vars=("F", "Q"), n_iter=6).fit(X)
    assert refit.history_ == fresh.history_  # EM began at the new F, not at the first fit
    for name, value in fresh.params().items():
        assert np.array_equal(refit.params()[name], value)
    assert np.array_equal(refit.params()["observation_matrix"], LG["observation_matrix"])


def test_particle_set_params_equals_constructing_with_them() -> None:
    X = _lg_data(30)
    R = np.array([[0.8]])
    pf = CASES["particle"]()
    before = pf.log_prob(X)  # builds and caches the model's factors
    pf.set_params(n_particles=300, random_state=9, model__observation_covariance=R)
    fresh = BootstrapParticleFilter(linear_gaussian(**{**LG, "observation_covariance": R}), 300,
                                    random_state=9)
    assert np.array_equal(pf.log_prob(X), fresh.log_prob(X))
    assert not np.array_equal(pf.log_prob(X), before)


# --- repr -----------------------------------------------------------------------------------------
def test_repr_shows_only_non_default_params() -> None:
    assert repr(CategoricalHMM()) == "CategoricalHMM()"
    m = CategoricalHMM(3, n_iter=20, random_state=0)
    assert repr(m) == "CategoricalHMM(n_components=3, random_state=0, n_iter=20)"
    m.fit(_symbols(100))
    assert repr(m) == "CategoricalHMM(n_components=3, random_state=0, n_iter=20)"  # no state
    assert repr(GaussianHMM(2, covariance_type="full")) == (
        "GaussianHMM(n_components=2, covariance_type='full')")
    assert repr(LinearGaussianSSM(em_vars=("Q",), n_iter=5)) == (
        "LinearGaussianSSM(em_vars=('Q',), n_iter=5)")
    pf = BootstrapParticleFilter(linear_gaussian(np.eye(2), np.eye(1, 2), np.eye(2), np.eye(1),
                                                 np.zeros(2), np.eye(2)), 50)
    assert repr(pf) == (
        "BootstrapParticleFilter(model=LinearGaussianModel(transition_matrix=array([[1., 0.], "
        "[0., 1.]]), observation_matrix=array([[1., 0.]]), transition_covariance=array([[1., "
        "0.], [0., 1.]]), observation_covariance=array([[1.]]), initial_state_mean=array([0., "
        "0.]), initial_state_covariance=array([[1., 0.], [0., 1.]])), n_particles=50)")


# --- scikit-learn itself --------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_clone_gives_equal_params_and_an_unfitted_copy(case: str) -> None:
    base = pytest.importorskip("sklearn.base")
    est = CASES[case]()
    copy = base.clone(est)
    assert type(copy) is type(est) and copy is not est
    assert _same_params(copy.get_params(deep=False), est.get_params(deep=False))
    assert _fitted_attributes(copy) == []
    if case != "particle":
        assert _fitted_attributes(est) != []  # the original keeps its fit
    if case == "particle":  # the model was cloned too, not shared
        assert copy.model is not est.model


def test_grid_search_over_hmm_hyperparameters() -> None:
    model_selection = pytest.importorskip("sklearn.model_selection")
    X = _symbols(600)

    def per_step(est: CategoricalHMM, X: np.ndarray, y: Any = None) -> float:
        return est.score(X) / len(X)  # mean log-likelihood per step, nats

    folds = model_selection.KFold(3)
    search = model_selection.GridSearchCV(
        CategoricalHMM(n_features=3, random_state=0),
        {"n_components": [1, 2], "n_iter": [2, 30]}, scoring=per_step, cv=folds).fit(X)
    res = search.cv_results_
    assert [p["n_components"] for p in res["params"]] == [1, 1, 2, 2]
    # One state is the unigram model: EM gives the training-fold symbol frequencies, exactly.
    unigram = np.mean([np.log(np.bincount(X[tr], minlength=3) / len(tr))[X[te]].mean()
                       for tr, te in folds.split(X)])
    assert res["mean_test_score"][:2] == pytest.approx([unigram, unigram], rel=1e-9)
    # The data is a sticky two-state chain: two states predict held-out steps better (which
    # n_iter wins on held-out data is not a property; EM's gain is on training data).
    assert search.best_params_["n_components"] == 2
    assert search.best_score_ > unigram + 0.1
    assert search.best_estimator_.transmat_.shape == (2, 2)  # refit on all of X
