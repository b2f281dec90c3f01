"""The recurrent LM: step and log_prob == forward, checkpoints across implementations, tied
weights, gradient probes, and one-line errors for impossible combinations. The stack itself is
tested in tests/nn/test_recurrent_stack.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import char_vocab, stepped_log_probs

from seqlab import models
from seqlab.cli import main
from seqlab.errors import SeqlabError
from seqlab.models.recurrent import RecurrentConfig, RecurrentLM


def _lm(**kw: object) -> RecurrentLM:
    torch.manual_seed(0)
    return RecurrentLM(RecurrentConfig(**{"emb_dim": 6, "hidden": 8, "layers": 2, **kw}),
                       char_vocab("abcd"))


@pytest.mark.parametrize("kw", [{"cell": "lstm"}, {"cell": "gru", "impl": "reference"},
                                {"cell": "lstm", "peepholes": True, "time_skip": 3},
                                {"cell": "rnn", "nonlinearity": "relu", "residual": True}])
def test_lm_step_and_log_prob_agree_with_forward(kw: dict) -> None:
    lm = _lm(**kw).eval()
    ids = np.array([2, 3, 4, 1, 5, 2, 2, 3], dtype=np.int64)
    lp = lm.log_prob(ids)
    manual, _, _ = stepped_log_probs(lm, ids)
    np.testing.assert_allclose(lp, manual, atol=1e-5)


def test_checkpoint_trained_fused_runs_through_reference_cells(tmp_path) -> None:
    lm = _lm(cell="lstm")
    lm.save(tmp_path / "m.safetensors")
    fused = models.load(tmp_path / "m.safetensors")
    ref = RecurrentLM(RecurrentConfig(emb_dim=6, hidden=8, layers=2, impl="reference"),
                      fused.vocab)
    ref.load_state_dict(fused.state_dict())
    ids = np.array([2, 3, 4, 1, 5, 2], dtype=np.int64)
    np.testing.assert_allclose(ref.log_prob(ids), fused.log_prob(ids), atol=1e-6)


def test_tied_weights_save_once_and_stay_tied(tmp_path) -> None:
    lm = _lm(emb_dim=8, tie_weights=True)
    lm.save(tmp_path / "tied.safetensors")
    again = models.load(tmp_path / "tied.safetensors")
    assert again.head.weight is again.embed.weight
    ids = np.array([2, 3, 4, 1, 5], dtype=np.int64)
    np.testing.assert_array_equal(again.log_prob(ids), lm.log_prob(ids))


def test_lm_trace_probes_give_total_gradients() -> None:
    lm = _lm(cell="gru", layers=1)
    idx = torch.tensor([[2, 3, 4, 5, 2]])
    logits, probes = lm.trace(idx)
    logits[0, -1, 3].backward()
    g = probes["layer1"].grad[0]  # (T, H): dL/dh_t
    # dL/dh_T reaches the head directly; earlier steps only through the recurrence.
    torch.testing.assert_close(g[-1], lm.head.weight[3])
    assert (g[:-1].norm(dim=-1) > 0).all()
    assert probes["input"].grad.shape == (1, 5, 6)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"bidirectional": True}, "model.bidirectional=true: a left-to-right language model must "
                              "not read the token it predicts; valid: model.bidirectional=false"),
    ({"cell": "gru", "peepholes": True}, "model.peepholes applies to the lstm cell only, got "
                                         "cell gru; valid: model.cell=lstm"),
    ({"cell": "lstm", "nonlinearity": "relu"}, "model.nonlinearity applies to the rnn cell only"),
    ({"cell": "rnn", "forget_bias": 1.0}, "model.forget_bias applies to the lstm cell only"),
    ({"peepholes": True, "impl": "fused"}, "valid: model.impl=auto or model.impl=reference, "
                                           "got fused"),
    ({"layers": 3, "layer_dropout": (0.1, 0.2, 0.3)}, "one rate or one per gap"),
    ({"residual": True, "residual_start": 1}, "needs model.emb_dim == model.hidden"),
    ({"impl": "cudnn"}, "model.impl: expected one of auto, fused, reference; got 'cudnn'"),
])
def test_bad_combinations_are_one_line_errors(overrides: dict, message: str) -> None:
    with pytest.raises(SeqlabError) as e:
        models.make_config("lstm", {"emb_dim": 8, "hidden": 16, **overrides})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_bidirectional_lm_without_writing(tmp_path, tiny_text, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", "--model", "lstm", "--data", str(tiny_text), "--out", str(out),
                 "model.bidirectional=true"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "valid: model.bidirectional=false" in err
    assert not out.exists()


@pytest.mark.parametrize("flag", [["model.impl=reference"]])
def test_cli_reference_cells_train(flag: list[str], tmp_path, tiny_text, capsys) -> None:
    """``model.impl=reference`` trains with the hand-written cells."""
    out = tmp_path / "run"
    code = main(["train", "--model", "gru", "--data", str(tiny_text), "--out", str(out),
                 *flag, "model.hidden=8", "model.emb_dim=4", "model.layers=1",
                 "train.max_steps=3", "train.batch_size=2", "train.seq_len=8",
                 "train.progress=false", "train.eval_interval=3"])
    assert code == 0
    model = models.load(out / "best.safetensors")
    assert model.config.impl == "reference" and model.stack.cfg.uses_reference
