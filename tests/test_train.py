"""The generic training loop: exact resume, divergence, budgets, schedules, learning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tests.conftest import char_vocab, markov2_source, sample_markov2

from seqlab import models
from seqlab.data.stream import StreamBatcher
from seqlab.errors import TrainingDiverged
from seqlab.io import load_tensors
from seqlab.run import Run, TrainConfig
from seqlab.scoring import evaluate
from seqlab.trainer import Schedule


def _model(vocab, **kw):
    torch.manual_seed(0)
    return models.build("lstm", vocab, {"emb_dim": 8, "hidden": 16, "layers": 2, "dropout": 0.2,
                                         **kw})


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=4, seq_len=16, max_steps=60, eval_interval=7, log_interval=5,
                warmup_steps=3, progress=False, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def stream() -> tuple:
    rng = np.random.default_rng(0)
    v = char_vocab("abcdefgh")
    return v, rng.integers(1, len(v), 3000), rng.integers(1, len(v), 300)


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_resume_is_bit_exact(tmp_path, stream, schedule: str) -> None:
    """2N steps straight == N steps, stop, resume for N more (crossing an epoch boundary)."""
    v, train, valid = stream
    assert StreamBatcher(train, 4, 16).windows_per_epoch(0) < 60  # an epoch ends mid-run
    straight = _model(v).fit(train, valid=valid,
                             run=Run(train=_cfg(schedule=schedule), dir=tmp_path / "a"))
    _model(v).fit(train, valid=valid,
                  run=Run(train=_cfg(schedule=schedule, stop_at_step=30), dir=tmp_path / "b"))
    resumed = _model(v).fit(train, valid=valid, run=Run(
        train=_cfg(schedule=schedule), dir=tmp_path / "b", resume=True))
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k
    ta, ma = load_tensors(tmp_path / "a" / "last.safetensors")
    tb, mb = load_tensors(tmp_path / "b" / "last.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    for key in ("schedule", "batches", "optimizer", "hidden"):
        assert ma["trainer"][key] == mb["trainer"][key]
    assert ma["trainer"]["progress"]["tokens"] == mb["trainer"]["progress"]["tokens"]

    def records(d):  # the stop at step 30 adds one evaluation; training records are identical
        lines = (tmp_path / d / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"])
                for r in map(json.loads, lines) if r["kind"] == "train"]

    assert records("a") == records("b")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, stream) -> None:
    v, train, valid = stream
    model = _model(v)
    real = model.training_loss
    calls = {"n": 0}

    def poisoned(batch, state):
        calls["n"] += 1
        loss, state = real(batch, state)
        return (loss * math.nan if calls["n"] == 12 else loss), state

    model.training_loss = poisoned
    run = Run(train=_cfg(eval_interval=5), dir=tmp_path / "r")
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 12.*left untouched"):
        model.fit(train, valid=valid, run=run)
    _, meta = load_tensors(run.last_path)
    assert meta["trainer"]["progress"]["step"] == 10  # the last checkpoint before the NaN


def test_max_minutes_budget_stops_early(stream) -> None:
    v, train, _ = stream
    cfg = _cfg(max_steps=10**9, max_minutes=0.02)  # ~1 second
    run = Run(train=cfg)
    records = []
    run.callbacks.append(type("Rec", (), {"on_log": lambda self, r: records.append(r),
                                          "on_backward": lambda self, m, s: None})())
    _model(v).fit(train, run=run)
    steps = max(r["step"] for r in records) if records else 0
    assert steps < 10**6


def test_cosine_schedule_shape() -> None:
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    s = Schedule(cfg)
    assert s.lr(0, 0) == pytest.approx(0.1) and s.lr(9, 0.09) == pytest.approx(1.0)
    assert s.lr(10, 10 / 110) == pytest.approx(1.0)
    assert s.lr(60, 60 / 110) == pytest.approx(0.55)  # half-way through the decay
    assert s.lr(110, 1.0) == pytest.approx(0.1)


def test_plateau_schedule_cuts_after_patience() -> None:
    s = Schedule(TrainConfig(lr=1.0, warmup_steps=0, schedule="plateau", plateau_patience=1,
                             plateau_factor=0.5))
    for metric in (2.0, 1.5, 1.6, 1.6):
        s.on_eval(metric)
    assert s.lr(100, 0.5) == pytest.approx(0.5)


def test_batcher_rows_are_contiguous_streams() -> None:
    data = np.arange(1000)
    b = StreamBatcher(data, batch_size=3, seq_len=5)
    (x0, y0), fresh0 = b.next()
    (x1, _), fresh1 = b.next()
    assert fresh0 and not fresh1
    assert torch.equal(y0, x0 + 1)  # targets are inputs shifted by one
    assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # each row continues where it stopped
    assert x0[1, 0] - x0[0, 0] == 1000 // 3  # rows start a row-length apart


@pytest.mark.slow
def test_lstm_learns_known_entropy_rate() -> None:
    """A small LSTM on an order-2 Markov source gets within 0.05 bits of its entropy rate."""
    P, H = markov2_source(8, seed=0)
    v = char_vocab("abcdefgh")
    train = sample_markov2(P, 200_000, seed=1) + 2
    test = sample_markov2(P, 50_000, seed=2) + 2
    torch.manual_seed(0)
    m = models.build("lstm", v, {"emb_dim": 16, "hidden": 64, "layers": 1})
    cfg = TrainConfig(batch_size=32, seq_len=32, lr=1e-2, min_lr=1e-4, max_steps=1500,
                      warmup_steps=50, eval_interval=10**9, progress=False)
    m.fit(train, run=Run(train=cfg))
    bits = evaluate(m, test).bits_per_token
    assert abs(bits - H) < 0.05, (bits, H)


def test_step_schedule_halves_per_epoch_after_decay_start() -> None:
    """Zaremba et al.'s schedule: lr 1 for epochs 0-3, then halved every epoch."""
    cfg = TrainConfig(schedule="step", lr=1.0, warmup_steps=0, decay_start=4, decay_factor=0.5)
    s = Schedule(cfg)
    assert [s.lr(0, 0.0, e) for e in range(7)] == [1, 1, 1, 1, 0.5, 0.25, 0.125]
    b = StreamBatcher(np.arange(100), batch_size=2, seq_len=4)  # 12 windows per epoch
    epochs = []
    for _ in range(26):
        epochs.append(b.next_epoch())
        _, fresh = b.next()
        assert fresh == (b.window == 1)
        assert b.epoch == epochs[-1]  # next_epoch() told which epoch that batch belongs to
    assert epochs.count(0) == b.windows_per_epoch(0) and epochs[-1] == 2


def test_best_checkpoint_follows_select_metric(tmp_path, stream) -> None:
    """With select_mode=max the best checkpoint is the step with the highest metric."""
    from seqlab.trainer import Trainer

    v, train, _ = stream
    accuracy = iter([0.2, 0.9, 0.5, 0.1, 0.3, 0.4])  # evaluations at steps 7, 14, ..., 35

    def score() -> dict[str, float]:
        return {"bits_per_token": 3.0, "accuracy": next(accuracy)}

    run = Run(train=_cfg(max_steps=35, select_metric="accuracy", select_mode="max"),
              dir=tmp_path / "r")
    Trainer(run).fit(_model(v), StreamBatcher(train, 4, 16), score)
    _, meta = load_tensors(run.last_path)
    assert meta["trainer"]["progress"]["best_step"] == 14
    assert meta["trainer"]["progress"]["best"] == -0.9
