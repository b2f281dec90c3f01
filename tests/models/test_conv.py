"""WaveNet and TCN stacks: causality, receptive field (reported == measured), incremental
generation == full forward, exact chunked scoring, and the short-receptive-field error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import char_vocab

from seqlab import models
from seqlab.cli import main
from seqlab.errors import SeqlabError
from seqlab.models.conv import ConvLM
from seqlab.nn.conv import ConvConfig, build_stack

CONFIGS = {
    "tcn": {"kind": "tcn", "channels": 8, "levels": 3},
    "tcn-k2-custom": {"kind": "tcn", "channels": 8, "kernel_size": 2, "dilations": (1, 3, 5)},
    "wavenet": {"kind": "wavenet", "channels": 8, "skip_channels": 6, "levels": 4, "blocks": 2},
    "wavenet-k3": {"kind": "wavenet", "channels": 8, "skip_channels": 6, "kernel_size": 3,
                   "levels": 3},
}


def _stack(name: str, input_size: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_stack(input_size, ConvConfig(**CONFIGS[name], dropout=0.0)).eval()


def _lm(name: str, seed: int = 0) -> ConvLM:
    torch.manual_seed(seed)
    return ConvLM(ConvConfig(**CONFIGS[name], emb_dim=5, dropout=0.0), char_vocab("abcdef")).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reported_receptive_field_equals_measured(name: str) -> None:
    """The furthest input position whose perturbation changes the last output."""
    stack = _stack(name).double()  # float64: influence through 8 gated layers is ~1e-7
    rf = stack.receptive_field
    T = rf + 12
    x = torch.randn(1, T, 3, dtype=torch.float64)
    with torch.no_grad():
        base = stack(x)[0][0, -1]
        changed = []
        for dist in range(T):
            y = x.clone()
            y[0, T - 1 - dist] += 3 * torch.randn(3, dtype=torch.float64)
            changed.append(bool((stack(y)[0][0, -1] - base).abs().max() > 0))
    measured = max(d for d, c in enumerate(changed) if c) + 1
    assert measured == rf
    assert not any(changed[rf:])


def test_receptive_field_formulas() -> None:
    assert ConvConfig(kind="tcn", kernel_size=3, levels=4).receptive_field == 1 + 2 * 2 * 15
    assert ConvConfig(kind="wavenet", levels=10, blocks=3).receptive_field == 1 + 3 * 1023
    assert ConvConfig(kind="wavenet").kernel_size == 2 and ConvConfig().kernel_size == 3


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(list(CONFIGS)), t=st.integers(0, 29))
def test_outputs_before_t_ignore_input_at_t(name: str, t: int) -> None:
    stack = _stack(name)
    x = torch.randn(2, 30, 3)
    y = x.clone()
    y[:, t] += torch.randn(2, 3)
    with torch.no_grad():
        a, b = stack(x)[0], stack(y)[0]
    torch.testing.assert_close(a[:, :t], b[:, :t], atol=0, rtol=0)
    assert (a[:, t] - b[:, t]).abs().max() > 0


@pytest.mark.parametrize("name", list(CONFIGS))
def test_incremental_generation_equals_full_forward(name: str) -> None:
    lm = _lm(name)
    ids = torch.randint(0, len(lm.vocab), (1, 60))
    with torch.no_grad():
        full, _ = lm(ids)
    state, steps = lm.initial_state(1), []
    for t in range(ids.shape[1]):
        logits, state = lm.step(int(ids[0, t]), state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps), full[0], atol=1e-5, rtol=1e-5)
    # Each step touches only the k taps of each layer's queue: the state is the queues.
    sizes = [b.shape[-1] for b in state]
    assert sum(sizes) == lm.receptive_field - 1


@pytest.mark.parametrize("name", ["tcn", "wavenet"])
def test_chunked_log_prob_is_exact(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring in chunks carries every layer's buffer: each token keeps its full context."""
    lm = _lm(name)
    ids = np.random.default_rng(0).integers(1, len(lm.vocab), size=300)
    whole = lm.log_prob(ids)
    monkeypatch.setattr(ConvLM, "eval_chunk", 37)
    np.testing.assert_allclose(lm.log_prob(ids), whole, atol=1e-5)
    with torch.no_grad():  # one forward over the stream, after the virtual end-of-line
        x = torch.tensor([[lm.vocab.eos_id, *ids[:-1]]])
        ref = lm(x)[0][0].log_softmax(-1)[torch.arange(len(ids)), torch.from_numpy(ids)]
    np.testing.assert_allclose(whole, ref.numpy(), atol=1e-5)


def test_training_lowers_loss_and_checkpoint_roundtrips(tmp_path) -> None:
    from seqlab.run import Run, TrainConfig

    v = char_vocab("ab")
    train = np.tile(v.encode("aabab"), 200)  # period 5: needs 4 tokens of context
    torch.manual_seed(0)
    lm = ConvLM(ConvConfig(kind="tcn", channels=16, levels=2, emb_dim=8, dropout=0.0), v)
    before = lm.log_prob(train[:100]).mean()
    lm.fit(train, run=Run(train=TrainConfig(max_steps=120, batch_size=8, seq_len=32, lr=1e-2,
                                            warmup_steps=10, progress=False)))
    after = lm.log_prob(train[:100]).mean()
    assert after > -0.05 > before  # the periodic stream becomes (almost) certain
    lm.save(tmp_path / "tcn.safetensors")
    again = models.load(tmp_path / "tcn.safetensors")
    np.testing.assert_array_equal(again.log_prob(train[:50]), lm.log_prob(train[:50]))


def test_short_receptive_field_is_refused() -> None:
    with pytest.raises(SeqlabError) as e:
        models.make_config("tcn", {"levels": 3, "context": 200})
    msg = str(e.value)
    assert msg.startswith("model.context=200 needs a receptive field of at least 200 tokens, "
                          "but tcn with kernel_size 3 and dilations 1, 2, 4 gives 29; valid: "
                          "model.levels >= 6")
    assert "\n" not in msg
    assert models.make_config("tcn", {"levels": 6, "context": 200}).receptive_field == 253


def test_cli_short_receptive_field_one_line(tmp_path, tiny_text, capsys) -> None:
    code = main(["train", "--model", "wavenet", "--data", str(tiny_text), "--out",
                 str(tmp_path / "r"), "model.context=1000", "model.levels=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "valid: model.levels >= 10" in err
    assert not (tmp_path / "r").exists()
