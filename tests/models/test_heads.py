"""Task heads: padding never counts, bidirectional summaries, and short training runs that solve
the adding problem (regression) and a sequence-level copy task (classes)."""

from __future__ import annotations

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.models.heads import HeadConfig, SequenceHead
from seqlab.nn.conv import ConvConfig
from seqlab.nn.recurrent import StackConfig
from seqlab.run import Run, TrainConfig
from seqlab.synthetic import TaskBatcher, adding_baseline, adding_problem, copy_memory
from seqlab.trainer import Trainer

ENCODERS = {
    "lstm": {"recurrent": StackConfig(cell="lstm", hidden=6, layers=2)},
    "bigru": {"recurrent": StackConfig(cell="gru", hidden=5, layers=1, bidirectional=True)},
    "tcn": {"encoder": "conv", "conv": ConvConfig(channels=6, levels=3, dropout=0.0)},
    "wavenet": {"encoder": "conv", "conv": ConvConfig(kind="wavenet", channels=6,
                                                      skip_channels=4, levels=3)},
}


def _head(name: str, **kw: object) -> SequenceHead:
    torch.manual_seed(0)
    return SequenceHead(HeadConfig(**{"inputs": 3, "outputs": 2, **ENCODERS[name], **kw})).eval()


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("output", ["last", "mean", "max", "sequence"])
def test_padding_never_counts(name: str, output: str) -> None:
    """A right-padded batch gives each sequence what it gets alone, whatever the padding."""
    head = _head(name, output=output)
    x = torch.randn(2, 9, 3)
    lengths = torch.tensor([9, 5])
    noisy = x.clone()
    noisy[1, 5:] = 100 * torch.randn(4, 3)  # garbage in the padding
    with torch.no_grad():
        a, b = head(x, lengths), head(noisy, lengths)
        alone = head(x[1:, :5])
    if output == "sequence":
        a, b = a[:, :5], b[:, :5]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a[1:], alone, atol=1e-6, rtol=1e-6)


def test_bidirectional_last_reads_both_ends() -> None:
    """The summary holds the forward state at the end and the backward state at the start,
    so it depends on the first and on the last step of the sequence."""
    head = _head("bigru")
    x = torch.randn(1, 7, 3)
    with torch.no_grad():
        h, _ = head.encoder(x)
        pooled = head._pool(h, None)  # (1, 10)
        torch.testing.assert_close(pooled, torch.cat([h[:, -1, :5], h[:, 0, 5:]], -1))
        for t in (0, 6):
            y = x.clone()
            y[0, t] += 1.0
            other = head._pool(head.encoder(y)[0], None)
            assert (other[:, :5] - pooled[:, :5]).abs().max() > 0  # forward half sees all
            assert (other[:, 5:] - pooled[:, 5:]).abs().max() > 0  # backward half sees all


def _train(head: SequenceHead, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> None:
    cfg = TrainConfig(max_steps=steps, batch_size=32, lr=lr, warmup_steps=20, progress=False,
                      clip_norm=1.0)
    Trainer(Run(train=cfg)).fit(head.train(), TaskBatcher(x, y, 32), None)
    head.eval()


@pytest.mark.parametrize(("name", "encoder"), [
    ("gru", {"recurrent": StackConfig(cell="gru", hidden=32, layers=1)}),
    ("tcn", {"encoder": "conv", "conv": ConvConfig(channels=16, levels=4, dropout=0.0)}),
])
def test_adding_problem_solved_at_t30(name: str, encoder: dict) -> None:
    """Many-to-one regression: MSE far below the 0.167 of always predicting 1."""
    x, y = adding_problem(8000, 30, seed=0)
    xt, yt = adding_problem(500, 30, seed=1)
    torch.manual_seed(0)
    head = SequenceHead(HeadConfig(inputs=2, **encoder))
    _train(head, x, y, steps=600, lr=1e-2)
    with torch.no_grad():
        mse = head.loss(head(xt), yt).item()
    assert mse < 0.01 < adding_baseline(), (name, mse)


def test_sequence_output_learns_short_copy_memory() -> None:
    """One class per step: a TCN recalls 10 symbols across a gap of 5 (cross-entropy on the last
    ten far below the memoryless ln 8 = 2.08)."""
    x, y = copy_memory(4000, 5, seed=0)
    xt, yt = copy_memory(300, 5, seed=1)
    torch.manual_seed(0)
    head = SequenceHead(HeadConfig(encoder="conv", inputs=1, outputs=10, output="sequence",
                                   loss="cross_entropy",
                                   conv=ConvConfig(channels=24, levels=4, dropout=0.0)))
    _train(head, x, y, steps=500, lr=1e-2)
    with torch.no_grad():
        logits = head(xt)
    last10 = head.loss(logits[:, -10:], yt[:, -10:]).item()
    assert last10 < 0.3, last10


def test_checkpoint_roundtrip_and_bad_config() -> None:
    head = _head("tcn", output="mean")
    tensors, meta = head.checkpoint()
    again = SequenceHead.from_checkpoint(tensors, meta)
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(again.eval()(x), head(x), atol=0, rtol=0)
    with pytest.raises(SeqlabError, match="needs outputs >= 2 classes"):
        HeadConfig(loss="cross_entropy", outputs=1)
    with pytest.raises(SeqlabError, match=r"unknown config key model\.recurrent\.hiden"):
        SequenceHead.config_from({"config": {"recurrent": {"hiden": 3}}})
