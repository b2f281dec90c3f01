"""The synthetic memory tasks of Bai, Kolter & Koltun (2018), Table 1, on a CPU budget.

Tasks (generators in `seqlab.synthetic`, as in the paper's code): the adding problem (MSE;
predicting 1 scores 0.167) and copy memory (cross-entropy, reported over all T + 20 steps as in
the paper's Table 1, whose memoryless baseline is 10 ln 8 / (T + 20), and on the last ten steps).
Models: tanh RNN, LSTM, GRU (one layer, sized to ~70K / ~15K parameters like the paper's) and
the paper's TCN (adding: 8 levels, kernel 7, 30 channels; copy: 8 levels, kernel 8, 10
channels). Training is the generic `seqlab.trainer.Trainer` with a wall-clock budget per model,
batch 32, the paper's training-set sizes (50,000 / 10,000) and a 1,000-sequence test set.

    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.synthetic.run \\
        --task adding --T 200 --minutes 3 [--models rnn,lstm,gru,tcn] [--threads 2]
    .venv/bin/python -m benchmarks.synthetic.report      # README table + PNG from results/
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import markdown_table, write_results
from seqlab.models.heads import HeadConfig, SequenceHead
from seqlab.nn.conv import ConvConfig
from seqlab.nn.recurrent import StackConfig
from seqlab.run import Callback, Run, TrainConfig
from seqlab.synthetic import (
    MEMORY,
    TaskBatcher,
    adding_baseline,
    adding_problem,
    copy_baseline,
    copy_memory,
)
from seqlab.trainer import Trainer

HERE = Path(__file__).parent
# Bai et al. 2018, Table 1 (adding T=600: MSE; copy T=1000: cross-entropy over all steps).
PAPER = {("adding", 600): {"lstm": 0.164, "gru": 5.3e-5, "rnn": 0.177, "tcn": 5.8e-5},
         ("copy", 1000): {"lstm": 0.0204, "gru": 0.0197, "rnn": 0.0202, "tcn": 3.5e-5}}
HIDDEN = {"adding": {"rnn": 260, "lstm": 130, "gru": 150},  # ~70K parameters each
          "copy": {"rnn": 120, "lstm": 60, "gru": 70}}  # ~15K parameters each
TCN = {"adding": {"kernel_size": 7, "levels": 8, "channels": 30},
       "copy": {"kernel_size": 8, "levels": 8, "channels": 10}}
LR = {"adding": {"tcn": 4e-3, "recurrent": 2e-3}, "copy": {"tcn": 1e-3, "recurrent": 1e-3}}
N_TRAIN = {"adding": 50_000, "copy": 10_000}


def head_config(task: str, model: str) -> HeadConfig:
    io = ({"inputs": 2, "outputs": 1, "output": "last", "loss": "mse"} if task == "adding" else
          {"inputs": 1, "outputs": 10, "output": "sequence", "loss": "cross_entropy"})
    if model == "tcn":
        return HeadConfig(encoder="conv", conv=ConvConfig(**TCN[task], dropout=0.0), **io)
    return HeadConfig(recurrent=StackConfig(cell=model, hidden=HIDDEN[task][model], layers=1),
                      **io)


def data(task: str, T: int) -> tuple[torch.Tensor, ...]:
    make = adding_problem if task == "adding" else copy_memory
    return (*make(N_TRAIN[task], T, seed=0), *make(1000, T, seed=1))


def metrics(task: str, head: SequenceHead, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Test metrics, in evaluation mode, without gradients."""
    was = head.training
    head.eval()
    with torch.no_grad():
        out = torch.cat([head(xb) for xb in x.split(250)])
    head.train(was)
    if task == "adding":
        return {"mse": head.loss(out, y).item()}
    last = out[:, -MEMORY:]
    return {"ce_all": head.loss(out, y).item(), "ce_last10": head.loss(last, y[:, -MEMORY:]).item(),
            "acc_last10": (last.argmax(-1) == y[:, -MEMORY:]).float().mean().item()}


class Curve(Callback):
    """Test metrics every `every` steps: the learning curve."""

    def __init__(self, task: str, head: SequenceHead, x: torch.Tensor, y: torch.Tensor,
                 every: int) -> None:
        self.args, self.every, self.points = (task, head, x, y), every, []

    def on_log(self, record: dict[str, Any]) -> None:
        if record.get("kind") == "train" and record["step"] % self.every == 0:
            self.points.append({"step": record["step"], "elapsed_s": record["elapsed_s"],
                                "train_loss": record["loss"], **metrics(*self.args)})


def run_model(task: str, T: int, model: str, minutes: float, tensors: tuple) -> dict[str, Any]:
    x, y, xt, yt = tensors
    torch.manual_seed(0)
    head = SequenceHead(head_config(task, model))
    lr = LR[task]["tcn" if model == "tcn" else "recurrent"]
    cfg = TrainConfig(batch_size=32, lr=lr, schedule="constant", warmup_steps=50,
                      max_steps=10**7, max_minutes=minutes, log_interval=50,
                      clip_norm=None if (task, model) == ("adding", "tcn") else 1.0,
                      progress=False, seed=0)
    curve = Curve(task, head, xt, yt, every=200)
    t0 = time.time()
    prog = Trainer(Run(train=cfg, callbacks=[curve])).fit(head, TaskBatcher(x, y, 32), None)
    final = metrics(task, head, xt, yt)
    return {"model": model, "parameters": head.num_parameters(), "steps": prog.step,
            "epochs": prog.step * 32 / len(x), "seconds": time.time() - t0, "lr": lr, **final,
            "paper": PAPER.get((task, T), {}).get(model), "curve": curve.points}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=["adding", "copy"], required=True)
    p.add_argument("--T", type=int, required=True)
    p.add_argument("--models", default="rnn,lstm,gru,tcn")
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per model")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tensors = data(args.task, args.T)
    base = ({"mse": adding_baseline()} if args.task == "adding" else
            {"ce_all": copy_baseline(args.T)["all"], "ce_last10": copy_baseline(args.T)["last10"]})
    rows = []
    for model in args.models.split(","):
        row = run_model(args.task, args.T, model, args.minutes, tensors)
        rows.append(row)
        print(f"{args.task} T={args.T} {model}: {_headline(args.task, row):.3g} after "
              f"{row['steps']} steps ({row['seconds']:.0f} s)", flush=True)
        write_results(HERE / "results" / f"{args.task}_T{args.T}_{model}.json", {
            "task": args.task, "T": args.T, "minutes": args.minutes, "threads": args.threads,
            "baseline": base, **row})
    cols = [("model", "model", "s"), ("steps", "steps", "d"), (_key(args.task), "test", ".3g"),
            ("paper", "paper", ".3g")]
    print(markdown_table(rows, cols))


def _key(task: str) -> str:
    return "mse" if task == "adding" else "ce_all"


def _headline(task: str, row: dict[str, Any]) -> float:
    return row[_key(task)] if math.isfinite(row[_key(task)]) else float("nan")


if __name__ == "__main__":
    main()
