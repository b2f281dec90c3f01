"""Crash safety: a training process killed with SIGKILL at seeded moments always leaves a
checkpoint that loads, ``--resume`` continues from it, and the run ends bit for bit where an
uninterrupted run ends (issue "Platform", part 4).

The kill moments are drawn from a seeded `random.Random`. Every kill comes after the first
checkpoint (step 5) exists: a kill before it leaves nothing to resume (``--resume`` is then a
one-line error, and the user starts over), so the chain below would have to start again. Each
moment is one of four kinds:

- ``timed``: a seeded 0-25 ms after the child reports the validation at a seeded step or later.
  The checkpoint write follows that report at once, so this lands in a write, a training step or
  an evaluation, wherever the clock says.
- ``last``/``best``: inside the write of ``last.safetensors``/``best.safetensors``: the temporary
  file is complete and fsynced, the rename over the checkpoint has not happened. A timed kill hits
  that window (about 2 ms in 20) only by luck, so the child pauses there (`HOOK` wraps
  ``os.replace``) and is killed while paused; the code under test is unchanged.
- ``metrics``: inside ``--resume``'s rewrite of ``metrics.jsonl`` (it drops the records of the
  work lost after the checkpoint), before its rename.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from seqlab.experiment import load_run
from seqlab.io import load_tensors

MAX_STEPS = 120
# Dropout draws from the RNG at every step, so an exact resume must restore the RNG state too.
# lr 0.1: validation is best at step 70 and never improves after it, so best.safetensors is not
# last.safetensors, and some evaluations write best and some do not. log_interval equals
# eval_interval, so every resume point is a log boundary and each training record averages the
# same steps as in the uninterrupted run (its loss is then comparable exactly).
KEYS = ["model.hidden=16", "model.layers=1", "model.emb_dim=8", "model.dropout=0.1",
        "train.batch_size=4", "train.seq_len=16", "train.eval_interval=5",
        "train.log_interval=5", "train.warmup_steps=5", "train.lr=0.1", "train.precision=fp32",
        "train.progress=false", "train.threads=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TIMING_KEYS = {"tokens_per_sec", "elapsed_s", "seconds"}  # wall-clock figures in metrics.jsonl
RUN_FILES = {".lock", "config.json", "vocab.json", "data", "metrics.jsonl", "last.safetensors",
             "best.safetensors"}
STRAY = re.compile(r"\.(last\.safetensors|best\.safetensors|metrics\.jsonl)\..+\.tmp")
EVAL_LINE = re.compile(r"step (\d+): valid ")
PAUSED = "crash-test: paused before renaming "

# `python -c HOOK train ...`: seqlab's CLI, with os.replace paused (until the kill) before it
# renames a temporary file over the file named in the arm file, once the test has created it.
HOOK = f"""
import os, sys, time
from seqlab.cli import main
_replace = os.replace
def replace(src, dst, *args, **kwargs):
    arm = os.environ["CRASH_TEST_ARM"]
    if os.path.exists(arm) and os.path.basename(dst) == open(arm).read():
        print({PAUSED!r} + str(src), file=sys.stderr, flush=True)
        time.sleep(600)
    return _replace(src, dst, *args, **kwargs)
os.replace = replace
sys.exit(main(sys.argv[1:]))
"""


def _args(text: Path, out: Path, resume: bool) -> list[str]:
    return ["train", "--model", "lstm", "--data", str(text), "--out", str(out), "--max-steps",
            str(MAX_STEPS), *KEYS, *(["--resume"] if resume else [])]


def _train(text: Path, out: Path, resume: bool) -> subprocess.Popen[str]:
    """Start a run (or the rest of one) that goes uninterrupted; `_finished` waits for it."""
    return subprocess.Popen([sys.executable, "-m", "seqlab", *_args(text, out, resume)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finished(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err


def _moments(seed: int) -> list[tuple[str, int, float]]:
    """Five (kind, step, delay): seeded steps after the first checkpoint, leaving at least 40
    steps (160+ ms) before the end so the kill cannot come after the child has finished."""
    rng = random.Random(seed)
    kinds = ["timed", "timed", "last", "best", "metrics"]
    rng.shuffle(kinds)
    if kinds[0] == "metrics":  # the first start is fresh: it has no metrics.jsonl to rewrite
        kinds.append(kinds.pop(0))
    steps = sorted(rng.sample(range(10, MAX_STEPS - 40, 5), 5))
    return [(kind, step, rng.uniform(0.0, 0.025)) for kind, step in zip(kinds, steps, strict=True)]


def _arm(arm: Path, name: str) -> None:
    tmp = arm.with_suffix(".tmp")
    tmp.write_text(name)
    os.replace(tmp, arm)  # the child never reads half a name


def _kill_at(kind: str, step: int, delay: float, cmd: list[str], arm: Path
             ) -> tuple[Path | None, int]:
    """Start `cmd` and SIGKILL it at the moment. Returns the temporary file it was paused
    before renaming (None for a timed kill) and the last step it reported validating."""
    arm.unlink(missing_ok=True)
    if kind == "metrics":
        _arm(arm, "metrics.jsonl")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "CRASH_TEST_ARM": str(arm)})
    watchdog = threading.Timer(240, proc.kill)  # a hung child fails the test, never hangs it
    watchdog.start()
    paused, reported, seen = None, -1, []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(PAUSED):
                paused = Path(line[len(PAUSED):].strip())
                break
            match = EVAL_LINE.match(line)
            reported = int(match[1]) if match else reported
            if kind != "metrics" and reported >= step:
                if kind == "timed":
                    time.sleep(delay)
                    break
                _arm(arm, f"{kind}.safetensors")  # pause in the next write of that file
        proc.send_signal(signal.SIGKILL)
        seen.append(proc.stderr.read())
        proc.wait()
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, (kind, step, "".join(seen))
    return paused, reported


def _step_of(path: Path) -> int:
    tensors, meta = load_tensors(path)
    model = {k: t for k, t in tensors.items() if k.startswith("model.")}
    assert model and all(bool(torch.isfinite(t).all()) for t in model.values()), path
    return int(meta["trainer"]["progress"]["step"])


def _check_after_kill(out: Path, kind: str, paused: Path | None, reported: int,
                      before: dict[str, bytes]) -> int:
    """The checkpoints load and hold finite weights; only known temporary files are extra;
    the kill landed where its kind says. Returns the step to resume from."""
    last = _step_of(out / "last.safetensors")
    load_run(out)  # best.safetensors, as eval/predict/sample read it
    names = {p.name for p in out.iterdir()}
    assert {n for n in names if not STRAY.fullmatch(n)} == RUN_FILES
    if kind == "timed":
        return last
    assert paused is not None and paused.name in names and STRAY.fullmatch(paused.name)
    if kind == "metrics":  # the rewrite was never committed: both files as they were
        assert (out / "metrics.jsonl").read_bytes() == before["metrics.jsonl"]
        assert (out / "last.safetensors").read_bytes() == before["last.safetensors"]
    elif kind == "last":  # the temporary file holds the whole checkpoint of the step reported
        assert _step_of(paused) == reported and last == reported - 5, (reported, last)
    else:  # best is written before last, in the evaluation after the one reported
        assert last == reported, (reported, last)
    return last


def _records(path: Path) -> list[dict]:
    records = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_sigkill_at_seeded_moments_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    rng = random.Random(7)
    text = tmp_path / "small.txt"
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "log"]
    text.write_text("".join(" ".join(rng.choice(words) for _ in range(8)) + "\n"
                            for _ in range(300)), encoding="utf-8")
    reference, out, arm = tmp_path / "reference", tmp_path / "killed", tmp_path / "arm"
    uninterrupted = _train(text, reference, resume=False)  # runs beside the kills below

    try:
        resumed_from = 0
        for i, (kind, step, delay) in enumerate(_moments(seed=2024)):
            before = {n: (out / n).read_bytes() for n in ("metrics.jsonl", "last.safetensors")
                      if (out / n).exists()}
            cmd = [sys.executable, "-c", HOOK, *_args(text, out, resume=i > 0)]
            paused, reported = _kill_at(kind, step, delay, cmd, arm)
            now = _check_after_kill(out, kind, paused, reported, before)
            assert now >= resumed_from, (kind, step, now, resumed_from)  # never goes back
            resumed_from = now
        _finished(_train(text, out, resume=True))
        _finished(uninterrupted)
    finally:
        uninterrupted.kill()  # no-op once finished

    for name in ("last.safetensors", "best.safetensors"):
        (got, got_meta), (want, want_meta) = (load_tensors(d / name) for d in (out, reference))
        assert got.keys() == want.keys() and got_meta == want_meta, name
        assert [k for k in got if not torch.equal(got[k], want[k])] == [], name
    assert _step_of(out / "last.safetensors") == MAX_STEPS
    assert {p.name for p in reference.iterdir()} == RUN_FILES
    assert {p.name for p in out.iterdir() if not STRAY.fullmatch(p.name)} == RUN_FILES
    records = _records(out / "metrics.jsonl")
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(5, MAX_STEPS + 1, 5))  # no step twice, none missing
    assert records == _records(reference / "metrics.jsonl")
