"""Fixed-window MLP LM (Bengio et al. 2003): the formula by hand, exactly n tokens of context,
step == forward, and learning an order-2 Markov source down to its entropy rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import char_vocab, markov2_source, sample_markov2, stepped_log_probs

from seqlab import models
from seqlab.errors import SeqlabError
from seqlab.models.window import WindowConfig, WindowLM
from seqlab.run import Run, TrainConfig
from seqlab.scoring import evaluate


def _lm(**kw: object) -> WindowLM:
    torch.manual_seed(0)
    cfg = WindowConfig(**{"context": 3, "emb_dim": 4, "hidden": 10, "dropout": 0.0, **kw})
    return WindowLM(cfg, char_vocab("abcde")).eval()


def test_bengio_formula_by_hand() -> None:
    """y = b + W x + U tanh(d + H x), x the concatenated embeddings of the last n tokens."""
    lm = _lm(direct=True)
    ids = [3, 4, 2, 6, 5]
    with torch.no_grad():
        logits, _ = lm(torch.tensor([ids]))
        C = lm.embed.weight
        hidden, out = lm.mlp[0], lm.head
        padded = [lm.vocab.eos_id] * 3 + ids
        for t in range(len(ids)):
            x = torch.cat([C[w] for w in padded[t + 1:t + 4]])  # ends at ids[t]
            y = out.bias + lm.direct.weight @ x + out.weight @ torch.tanh(hidden.bias
                                                                          + hidden.weight @ x)
            torch.testing.assert_close(logits[0, t], y)


@settings(max_examples=10, deadline=None)
@given(t=st.integers(0, 11))
def test_sees_exactly_the_last_n_tokens(t: int) -> None:
    lm = _lm(context=3)
    ids = torch.randint(1, len(lm.vocab), (1, 12))
    other = ids.clone()
    other[0, t] = (ids[0, t] % (len(lm.vocab) - 1)) + 1  # a different token at t
    with torch.no_grad():
        a, b = lm(ids)[0][0], lm(other)[0][0]
    changed = (a - b).abs().amax(-1) > 0  # (T,)
    expected = torch.zeros(12, dtype=torch.bool)
    expected[t:t + 3] = True  # positions t, t+1, t+2 see token t; no others
    assert torch.equal(changed, expected)


def test_step_and_chunked_log_prob_equal_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = _lm()
    ids = np.random.default_rng(1).integers(1, len(lm.vocab), size=40)
    whole = lm.log_prob(ids)
    monkeypatch.setattr(WindowLM, "eval_chunk", 7)
    np.testing.assert_allclose(lm.log_prob(ids), whole, atol=1e-6)
    stepped, _, state = stepped_log_probs(lm, ids)
    np.testing.assert_allclose(stepped, whole, atol=1e-6)
    assert state.tolist() == [ids[-3:].tolist()]


def test_learns_order2_markov_source_to_its_entropy_rate() -> None:
    P, H = markov2_source(n_symbols=6, alpha=0.3, seed=0)
    v = char_vocab("abcdef")
    train = sample_markov2(P, 30_000, seed=1) + 2  # symbols -> ids 2..7
    test = sample_markov2(P, 5_000, seed=2) + 2
    torch.manual_seed(0)
    lm = models.build("window", v, {"context": 2, "emb_dim": 8, "hidden": 64, "dropout": 0.0})
    lm.fit(train, run=Run(train=TrainConfig(max_steps=400, batch_size=32, seq_len=64, lr=1e-2,
                                            warmup_steps=20, progress=False)))
    bits = -lm.log_prob(test)[2:].mean() / np.log(2)
    s = test - 2
    oracle = -np.log2(P[s[:-2], s[1:-1], s[2:]]).mean()  # the true model on the same tokens
    assert abs(oracle - H) < 0.03  # the sample is typical
    assert oracle - 0.01 < bits < oracle + 0.05, (bits, oracle)
    assert evaluate(lm, test).bits_per_token == pytest.approx(bits, abs=0.01)


def test_bad_config() -> None:
    with pytest.raises(SeqlabError, match=r"model\.context, emb_dim, hidden and layers must be"):
        models.make_config("window", {"context": 0})
    with pytest.raises(SeqlabError, match=r"model\.activation: expected one of tanh, relu"):
        models.make_config("window", {"activation": "gelu"})
