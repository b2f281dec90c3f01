"""Every language-model family, through the protocol only: the invariants they all share.

step-by-step logits equal the full log_prob pass; priming equals stepping; save/load round-trips
exactly; sampling is seeded; top-k = 1 equals greedy. New families join by adding a tiny config.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import char_vocab, stepped_log_probs

from seqlab import models
from seqlab.run import Run
from seqlab.train import TrainConfig

TINY: dict[str, dict] = {
    "ngram": {"order": 3},
    "hmm": {"n_states": 3, "n_iter": 5},
    "rnn": {"emb_dim": 8, "hidden": 12, "layers": 2},
    "lstm": {"emb_dim": 8, "hidden": 12, "layers": 2, "dropout": 0.1},
    "gru": {"emb_dim": 8, "hidden": 12, "layers": 1, "tie_weights": False},
    "window": {"context": 3, "emb_dim": 4, "hidden": 12},
    "tcn": {"emb_dim": 8, "channels": 8, "levels": 3},
    "wavenet": {"emb_dim": 8, "channels": 8, "skip_channels": 8, "levels": 3, "blocks": 2},
}
NAMES = [n for n in TINY if n in models.MODELS]


@pytest.fixture(scope="module")
def data() -> tuple:
    rng = np.random.default_rng(0)
    v = char_vocab("abcde")
    train = rng.integers(1, len(v), size=600)
    return v, train, rng.integers(0, len(v), size=80)


@pytest.fixture(scope="module", params=NAMES)
def fitted(request: pytest.FixtureRequest, data: tuple):
    torch.manual_seed(0)
    v, train, _ = data
    m = models.build(request.param, v, TINY[request.param])
    cfg = TrainConfig(max_steps=6, batch_size=2, seq_len=8, eval_interval=3, progress=False)
    return m.fit(train, run=Run(train=cfg))


def _stepped(m, ids) -> np.ndarray:
    return stepped_log_probs(m, ids)[0]


def test_step_equals_full_pass(fitted, data) -> None:
    _, _, test = data
    lp = fitted.log_prob(test)
    assert lp.shape == (len(test),) and np.all(lp < 0)
    np.testing.assert_allclose(_stepped(fitted, test), lp, atol=1e-5)


def test_prime_equals_stepping(fitted, data) -> None:
    _, _, test = data
    logits, _ = fitted.prime(test[:10])
    ref, state = fitted.step(fitted.vocab.eos_id, fitted.initial_state())
    for tok in test[:10]:
        ref, state = fitted.step(int(tok), state)
    np.testing.assert_allclose(torch.log_softmax(logits.double(), -1),
                               torch.log_softmax(ref.double(), -1), atol=1e-5)


def test_save_load_roundtrip(fitted, data, tmp_path) -> None:
    _, _, test = data
    fitted.save(tmp_path / "m.safetensors")
    again = models.load(tmp_path / "m.safetensors")
    assert type(again) is type(fitted)
    np.testing.assert_array_equal(again.log_prob(test), fitted.log_prob(test))


def test_sampling_is_seeded_and_topk1_is_greedy(fitted) -> None:
    a = fitted.generate(30, seed=5, temperature=1.0)
    assert np.array_equal(a, fitted.generate(30, seed=5, temperature=1.0))
    assert a.min() >= 0 and a.max() < len(fitted.vocab)
    assert np.array_equal(fitted.generate(30, seed=1, top_k=1), fitted.generate(30, greedy=True))


def test_log_prob_respects_lengths(fitted, data) -> None:
    _, _, test = data
    joint = fitted.log_prob(test, lengths=[30, 50])
    np.testing.assert_allclose(
        joint, np.concatenate([fitted.log_prob(test[:30]), fitted.log_prob(test[30:])]), atol=1e-6)
