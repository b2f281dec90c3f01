"""Zaremba, Sutskever & Vinyals (2014), small non-regularised LSTM on Penn Treebank (word level).

The paper's "small" configuration: 2 layers of 200 units (embedding 200), unroll 20, batch 20,
SGD, learning rate 1 for 4 epochs then halved every epoch, 13 epochs, gradient norm clipped at 5,
every parameter uniform in +-0.1, no dropout. Published test perplexity: 114.5.

The paper's loss is the *sum* over the 20 unrolled steps of the batch-mean cross-entropy (the
Lua code back-propagates 1 from every step); seqlab's trainer minimises the mean over steps. So
the same update is lr 20 with the norm clipped at 5 / 20 = 0.25 on the mean's gradient:
``lr * clip_5(20 g) = 20 * clip_0.25(g)``, exactly.

The run trains in slices (``--minutes``) that resume exactly, so that each slice can hold the
shared CPU lock for a bounded time (see run.sh). When the 13 epochs are done, the best
checkpoint (by validation perplexity) is scored on the test split and results.json is written.

    benchmarks/ptb_lstm/run.sh          # all slices, each under the lock; ~80 min on 1 core
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED_DATA, markdown_table, write_results
from seqlab.config import from_dict
from seqlab.data.corpus import DataConfig
from seqlab.data.stream import StreamBatcher
from seqlab.experiment import Experiment, train
from seqlab.models import make_config
from seqlab.run import TrainConfig

HERE = Path(__file__).parent
WORK = HERE / "_work"
PTB = SHARED_DATA / "ptb"
EPOCHS, UNROLL, BATCH = 13, 20, 20
PAPER_TEST_PPL, TARGET = 114.5, 120.0


def experiment(minutes: float, max_steps: int, threads: int) -> Experiment:
    data = DataConfig(path=str(PTB / "ptb.train.txt"), valid=str(PTB / "ptb.valid.txt"),
                      test=str(PTB / "ptb.test.txt"), level="word")
    model = make_config("lstm", {"emb_dim": 200, "hidden": 200, "layers": 2, "dropout": 0.0,
                                 "init": "uniform", "init_scale": 0.1})
    train_cfg = from_dict(TrainConfig, {
        "batch_size": BATCH, "seq_len": UNROLL, "optimizer": "sgd", "lr": 1.0 * UNROLL,
        "clip_norm": 5.0 / UNROLL, "schedule": "step", "decay_start": 4, "decay_factor": 0.5,
        "warmup_steps": 0, "max_steps": max_steps, "max_minutes": minutes, "seed": 1,
        "eval_interval": windows(data)[0], "log_interval": 100, "threads": threads,
        "progress": False})
    return Experiment(model_name="lstm", model=model, data=data, train=train_cfg)


def windows(data: DataConfig) -> list[int]:
    """Optimizer steps in each of the 13 epochs (the batcher draws a new offset per epoch)."""
    from seqlab.data.corpus import prepare

    corpus = prepare(data, WORK / "tokens")
    b = StreamBatcher(corpus.train, BATCH, UNROLL, seed=1)
    return [b.windows_per_epoch(e) for e in range(EPOCHS)]


def epochs_table(run_dir: Path, per_epoch: list[int]) -> list[dict]:
    """Validation perplexity at every evaluation (each epoch end and each slice end)."""
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval":
            rows.append({"epoch": rec["step"] / np.mean(per_epoch), "step": rec["step"],
                         "valid_ppl": 2.0 ** rec["bits_per_token"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=14.0, help="training budget of this slice")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--status", action="store_true", help="exit 0 when finished, 1 otherwise")
    args = p.parse_args()
    run_dir, results = WORK / "run", HERE / "results.json"
    if args.status:
        raise SystemExit(0 if results.exists() and _finished(run_dir) else 1)
    probe = experiment(args.minutes, 1, args.threads)
    per_epoch = windows(probe.data)
    exp = experiment(args.minutes, sum(per_epoch), args.threads)
    t0 = time.time()
    _, _, scores = train(exp, run_dir, resume=(run_dir / "config.json").exists())
    _log_slice(run_dir, time.time() - t0)
    if _finished(run_dir):
        _write(run_dir, results, scores, per_epoch)


def _finished(run_dir: Path) -> bool:
    if not (run_dir / "metrics.jsonl").exists():
        return False
    steps = [json.loads(x).get("step", 0) for x in (run_dir / "metrics.jsonl").read_text()
             .splitlines()]
    cfg = json.loads((run_dir / "config.json").read_text())
    return max(steps, default=0) >= cfg["train"]["max_steps"]


def _log_slice(run_dir: Path, seconds: float) -> None:
    with (run_dir.parent / "slices.jsonl").open("a") as f:
        f.write(json.dumps({"seconds": seconds, "end": time.strftime("%H:%M:%S")}) + "\n")


def _write(run_dir: Path, path: Path, scores: list, per_epoch: list[int]) -> None:
    test = next(e for e in scores if e.split == "test")
    valid = next(e for e in scores if e.split == "valid")
    slices = [json.loads(x) for x in (run_dir.parent / "slices.jsonl").read_text().splitlines()]
    wall = sum(s["seconds"] for s in slices)
    epochs = epochs_table(run_dir, per_epoch)
    write_results(path, {
        "benchmark": "Zaremba et al. 2014 small non-regularised LSTM, PTB word level",
        "test_perplexity": test.perplexity, "valid_perplexity": valid.perplexity,
        "paper_test_perplexity": PAPER_TEST_PPL, "ratio_to_paper": test.perplexity / PAPER_TEST_PPL,
        "target": TARGET, "met": test.perplexity <= TARGET, "wall_seconds": wall,
        "slices": len(slices), "steps": sum(per_epoch), "epochs": epochs,
        "config": json.loads((run_dir / "config.json").read_text())})
    print(markdown_table(epochs, [("epoch", "epoch", ".2f"), ("step", "step", "d"),
                                  ("valid_ppl", "valid ppl", ".2f")]))
    print(f"test perplexity {test.perplexity:.2f} (paper {PAPER_TEST_PPL}); "
          f"wall {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
