"""Crashes and bad input, tried as a user would: each is one line on stderr, a non-zero exit
status, no traceback, and no file changed (sha256 of every file before and after)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.test_cli import snapshot

from seqlab import experiment
from seqlab.cli import main
from seqlab.experiment import locked
from seqlab.io import load_tensors
from seqlab.run import Callback

KEYS = ["model.hidden=16", "model.layers=1", "model.emb_dim=8", "train.batch_size=4",
        "train.seq_len=16", "train.progress=false", "train.eval_interval=3"]


def run(*args: object) -> int:
    return main([str(a) for a in args])


def one_line_error(capsys: pytest.CaptureFixture, code: int, *args: object) -> str:
    """Run the CLI; exactly one "seqlab:" line on stderr (after any progress lines)."""
    capsys.readouterr()
    assert run(*args) == code
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("seqlab:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def text(tmp_path: Path) -> Path:
    p = tmp_path / "small.txt"
    p.write_text("the cat sat on the mat.\nthe dog ate the log.\n" * 60, encoding="utf-8")
    return p


@pytest.fixture
def trained(tmp_path: Path, text: Path) -> Path:
    out = tmp_path / "run"
    assert run("train", "--model", "lstm", "--data", text, "--out", out, "--max-steps", 6,
               *KEYS) == 0
    return out


def finite(path: Path) -> bool:
    tensors, _ = load_tensors(path)
    return all(bool(torch.isfinite(t).all()) for k, t in tensors.items()
               if t.is_floating_point() and k.startswith("model."))


def test_exploding_weights_are_never_saved(tmp_path: Path, text: Path, capsys) -> None:
    """The issue's reproduction: SGD at lr 1e7 without clipping. The gradient-norm guard stops
    it while the loss is still finite; what is on disk agrees with the message."""
    out = tmp_path / "r"
    err = one_line_error(
        capsys, 3, "train", "--model", "rnn", "--data", text, "--out", out, "--max-steps", 300,
        "model.hidden=16", "model.layers=1", "model.nonlinearity=relu", "train.optimizer=sgd",
        "train.lr=1e7", "train.warmup_steps=1000000", "train.clip_norm=null",
        "train.eval_interval=5", "train.progress=false", "train.batch_size=4",
        "train.seq_len=16")
    assert "training stopped: the gradient norm became " in err, err
    step = int(err.split(" at step ")[1].split(";")[0])
    saved = [n for n in ("best.safetensors", "last.safetensors") if (out / n).exists()]
    # Which step blows up depends on the CPU's rounding (4 here, 6 on the machine), so
    # both outcomes are checked; the poisoned-gradient test below pins the later one.
    if step <= 5:  # before the first checkpoint
        assert "no checkpoint had been written yet" in err and saved == [], (err, saved)
        return
    assert "was left untouched" in err and len(saved) == 2, (err, saved)
    assert all(finite(out / n) for n in saved)
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    assert math.isfinite(json.loads(capsys.readouterr().out)["bits_per_token"])


class Poison(Callback):
    """At trainer step `step` (0-based), after backward: snapshot the run folder, then apply
    `poison` to the model (its gradients are in place)."""

    def __init__(self, out: Path, step: int, poison: Callable[[torch.nn.Module], None]) -> None:
        self.out, self.step, self.poison = out, step, poison
        self.before: dict[str, str] | None = None

    def on_backward(self, model: torch.nn.Module, step: int) -> None:
        if step == self.step:
            self.before = snapshot(self.out)
            with torch.no_grad():
                self.poison(model)


def train_poisoned(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                   text: Path, out: Path, cb: Poison, *keys: str) -> str:
    """`seqlab train` (checkpoints at steps 3 and 6) with `cb` installed: the CLI takes no
    callbacks, so they are added where the run is opened. Returns its one error line."""
    open_run = experiment._open_run
    monkeypatch.setattr(experiment, "_open_run", lambda *a: open_run(*a[:-1], [cb]))
    err = one_line_error(capsys, 3, "train", "--model", "lstm", "--data", text, "--out", out,
                         "--max-steps", 6, *KEYS, *keys)
    assert cb.before is not None and "best.safetensors" in cb.before  # a checkpoint existed
    return err


def first_param(model: torch.nn.Module) -> torch.nn.Parameter:
    return next(iter(model.parameters()))


def test_an_infinite_gradient_norm_after_a_checkpoint_keeps_it(
        tmp_path: Path, text: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The loss is finite, the gradient is not (step 5, after the step-3 checkpoint): the
    gradient-norm guard stops before the update, and the checkpoints stay as they were."""
    out = tmp_path / "r"
    cb = Poison(out, 4, lambda m: first_param(m).grad.fill_(math.inf))
    err = train_poisoned(monkeypatch, capsys, text, out, cb)
    assert "the gradient norm became inf at step 5" in err, err
    assert f"the last good checkpoint, {out / 'last.safetensors'}, was left untouched" in err
    assert snapshot(out) == cb.before
    assert finite(out / "best.safetensors") and finite(out / "last.safetensors")
    capsys.readouterr()
    assert run("sample", out, "--length", 20, "--seed", 1) == 0
    assert len(capsys.readouterr().out) >= 20


def test_non_finite_weights_are_never_written(tmp_path: Path, text: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A NaN weight with finite gradients and no validation to notice it (step 6): the save
    guard refuses to write it, and the step-3 checkpoints are left byte for byte."""
    out = tmp_path / "r"
    cb = Poison(out, 5, lambda m: first_param(m).view(-1)[0].fill_(math.nan))
    err = train_poisoned(monkeypatch, capsys, text, out, cb, "data.valid_fraction=0")
    assert "training stopped: the weights became non-finite (model." in err, err
    assert "nothing was saved" in err
    assert snapshot(out) == cb.before
    assert finite(out / "best.safetensors") and finite(out / "last.safetensors")


def test_divergence_without_nan_is_stopped(tmp_path: Path, text: Path, capsys) -> None:
    """``train.lr=1e6``: validation is finite but far above the uniform distribution's. The
    first evaluation (step 3) has already diverged, so no checkpoint exists."""
    out = tmp_path / "r"
    err = one_line_error(capsys, 3, "train", "--model", "lstm", "--data", text, "--out", out,
                         "--max-steps", 60, "train.lr=1e6", "train.warmup_steps=1", *KEYS)
    assert "training stopped: validation reached " in err, err
    assert "bits/token, far above the uniform distribution's 4.00" in err  # 16 symbols
    assert "this step was not saved" in err
    assert not (out / "best.safetensors").exists() and not (out / "last.safetensors").exists()


def test_divergence_after_a_best_checkpoint_keeps_it(
        tmp_path: Path, text: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Weights blown up a thousandfold but finite after the step-3 best: the divergence guard
    stops at the step-6 validation, and best.safetensors keeps its finite weights."""
    out = tmp_path / "r"

    def blow_up(model: torch.nn.Module) -> None:
        for p in model.parameters():
            p.mul_(1000)

    cb = Poison(out, 5, blow_up)
    err = train_poisoned(monkeypatch, capsys, text, out, cb)
    assert "training stopped: validation reached " in err, err
    assert "far above the uniform distribution's" in err
    assert snapshot(out) == cb.before
    assert finite(out / "best.safetensors")


def test_a_second_process_gets_a_one_line_error(trained: Path, text: Path, capsys) -> None:
    before = snapshot(trained)
    with locked(trained):  # as a training process holds it
        err = one_line_error(capsys, 2, "train", "--model", "lstm", "--data", text, "--out",
                             trained, "--max-steps", 8, "--resume", *KEYS)
    assert "in use by another seqlab process" in err
    assert snapshot(trained) == before


def test_checkpoint_of_another_family_in_a_run_folder(trained: Path, text: Path, tmp_path: Path,
                                                     capsys) -> None:
    ngram = tmp_path / "ng"
    assert run("train", "--model", "ngram", "--data", text, "--out", ngram) == 0
    shutil.copy(ngram / "best.safetensors", trained / "best.safetensors")
    before = snapshot(trained)
    err = one_line_error(capsys, 2, "eval", trained)
    assert "expected a recurrent checkpoint for the run's model lstm, got a ngram" in err
    assert snapshot(trained) == before


def test_resume_without_last_checkpoint(trained: Path, text: Path, capsys) -> None:
    (trained / "last.safetensors").unlink()
    before = snapshot(trained)
    err = one_line_error(capsys, 2, "train", "--model", "lstm", "--data", text, "--out",
                         trained, "--max-steps", 8, "--resume", *KEYS)
    assert "expected last.safetensors to resume from" in err
    assert snapshot(trained) == before


def test_failed_resume_rewrites_nothing(trained: Path, text: Path, capsys) -> None:
    before = snapshot(trained)
    err = one_line_error(capsys, 2, "train", "--model", "lstm", "--data", text, "--out",
                         trained, "--max-steps", 8, "--resume", "train.lr=1e-2", *KEYS)
    assert "holds a different run: train.lr" in err
    assert snapshot(trained) == before


def test_out_naming_a_file_and_a_config_that_is_a_list(tmp_path: Path, text: Path,
                                                       trained: Path, capsys) -> None:
    target = tmp_path / "afile"
    target.write_text("keep\n")
    err = one_line_error(capsys, 2, "train", "--model", "lstm", "--data", text, "--out",
                         target, *KEYS)
    assert "got an existing file" in err and target.read_text() == "keep\n"
    (trained / "config.json").write_text("[1, 2]\n")
    before = snapshot(trained)
    assert "expected a JSON object" in one_line_error(capsys, 2, "eval", trained)
    one_line_error(capsys, 2, "train", "--model", "lstm", "--data", text, "--out", trained,
                   "--resume", *KEYS)
    assert snapshot(trained) == before


def test_ctrl_c_saves_and_exits_130(tmp_path: Path, text: Path) -> None:
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "seqlab", "train", "--model", "lstm", "--data", str(text),
           "--out", str(out), "--max-steps", "100000", "train.log_interval=1", *KEYS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("seqlab: interrupted at step ") and "saved" in last, err
    assert "Traceback" not in err and finite(out / "last.safetensors")
    step = int(last.split("step ")[1].split(",")[0])
    meta = load_tensors(out / "last.safetensors")[1]
    assert meta["trainer"]["progress"]["step"] == step


def test_resume_after_a_cut_metrics_line_and_stale_temp_files(trained: Path, text: Path) -> None:
    """A metrics line cut short (full disk) and temp files of a killed write do not stop a
    resume; the temp files are removed once the run folder is locked."""
    with (trained / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "st')
    stale = trained / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert run("train", "--model", "lstm", "--data", text, "--out", trained, "--max-steps", 8,
               "--resume", *KEYS) == 0
    assert not stale.exists()
    records = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in records) == 8  # every line parses again
