"""tinyshakespeare: the Transformer LM on a small fixed CPU budget, against nanoGPT's baby GPT.

    .venv/bin/python -m benchmarks.transformer.bench --minutes 5 --threads 1

Data: ../shared/data/tinyshakespeare/input.txt, split as nanoGPT does (first 90% train, last 10%
validation), char level. The model trains through `seqlab.experiment.train` (the same path as
`seqlab train --model transformer`), once per kind of position (rotary, then learned), for a
wall-clock budget each on `--threads` threads; the kept checkpoint (best validation) is scored
on the whole validation tail with the model's strided windows (`seqlab.models.transformer`).
The reference, nanoGPT's baby GPT (6 layers, 6 heads, 384 wide, context 256, 5000 steps of
64 x 256 tokens: about 82 M tokens, on a GPU), reaches a validation loss of 1.47 nats/char;
that figure is nanoGPT's published one, not measured here.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from benchmarks.common import SHARED_DATA, check_quiet, markdown_table, write_results

from seqlab import models
from seqlab.data.corpus import DataConfig
from seqlab.experiment import Experiment, train
from seqlab.run import TrainConfig
from seqlab.sampling import SampleConfig, sample_text

HERE = Path(__file__).parent
DATA = SHARED_DATA / "tinyshakespeare" / "input.txt"
NANOGPT_BABY = 1.47  # nats/char, nanoGPT README (config/train_shakespeare_char.py)
MODEL = {"layers": 4, "heads": 4, "dim": 128, "block_size": 128, "dropout": 0.0}


def train_config(minutes: float | None, threads: int, eval_interval: int,
                 steps: int | None = None) -> TrainConfig:
    """`steps` replaces the wall-clock budget with a step budget: on a shared machine the
    clock buys a different amount of training from one run to the next."""
    return TrainConfig(batch_size=16, seq_len=MODEL["block_size"], lr=3e-3, min_lr=1e-4,
                       weight_decay=0.1, beta2=0.99, warmup_steps=50,
                       max_steps=steps or 1_000_000, max_minutes=None if steps else minutes,
                       eval_interval=eval_interval, clip_norm=1.0, threads=threads,
                       precision="auto", progress=False)


def data_config() -> DataConfig:
    return DataConfig(path=str(DATA), level="char", valid_fraction=0.1, test_fraction=0.0)


def bench(work: Path, positions: str, cfg: TrainConfig) -> tuple[dict, object]:
    exp = Experiment(model_name="transformer", data=data_config(), train=cfg,
                     model=models.make_config("transformer", {**MODEL, "positions": positions}))
    t0 = time.perf_counter()
    model, _, scores = train(exp, work / positions)
    wall = time.perf_counter() - t0
    records = [json.loads(x) for x in (work / positions / "metrics.jsonl").read_text()
               .splitlines()]
    trains = [r for r in records if r["kind"] == "train"]
    valid = next(s for s in scores if s.split == "valid")
    steps = max(r["step"] for r in records if r["kind"] in ("train", "eval"))
    return {"model": f"transformer {MODEL['layers']}x{MODEL['dim']}, {positions} positions",
            "valid_nats_per_char": valid.bits_per_token * math.log(2),
            "valid_bits_per_char": valid.bits_per_token,
            "steps": steps, "tokens_seen": steps * cfg.batch_size * cfg.seq_len,
            "wall_seconds": wall,  # training, its validations and the final scoring
            "tokens_per_sec": float(np.median([r["tokens_per_sec"] for r in trains[1:]]))
            if len(trains) > 1 else float("nan"),  # the first interval includes warm-up
            "parameters": model.num_parameters(),  # type: ignore[attr-defined]
            "curve": [(r["step"], r["bits_per_token"] * math.log(2)) for r in records
                      if r["kind"] == "eval"]}, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget (wall clock)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--eval-interval", type=int, default=200)
    p.add_argument("--steps", type=int, help="a step budget instead of --minutes")
    p.add_argument("--positions", default="rotary,learned", help="one run per kind")
    p.add_argument("--work", type=Path, default=HERE / "_work" / time.strftime("%Y%m%d-%H%M%S"))
    args = p.parse_args()
    quiet = check_quiet()
    rows, samples = [], {}
    cfg = train_config(args.minutes, args.threads, args.eval_interval, args.steps)
    for positions in args.positions.split(","):
        row, model = bench(args.work, positions, cfg)
        row["gap_to_nanogpt_baby"] = row["valid_nats_per_char"] - NANOGPT_BABY
        rows.append(row)
        samples[positions] = "".join(next(iter(sample_text(model, SampleConfig(
            prompt="ROMEO:", length=300, temperature=0.8, seed=1)))))
    cols = [("model", "model", "s"), ("valid_nats_per_char", "valid nats/char", ".3f"),
            ("valid_bits_per_char", "valid bits/char", ".3f"), ("steps", "steps", ",d"),
            ("tokens_seen", "tokens seen", ",d"), ("wall_seconds", "wall s", ".0f"),
            ("tokens_per_sec", "train tok/s", ",.0f"), ("parameters", "parameters", ",d")]
    table = markdown_table(rows, cols)
    print(table)
    print(f"\nnanoGPT baby GPT (published): {NANOGPT_BABY} nats/char")
    for row in rows:
        print(f"{row['model']}: gap {row['gap_to_nanogpt_baby']:+.3f}; valid nats/char by step: "
              + ", ".join(f"{s}: {v:.3f}" for s, v in row["curve"]))
    for positions, sample in samples.items():
        print(f"\n--- {positions} (prompt ROMEO:, temperature 0.8, seed 1)\n{sample}")
    budget = f"{args.steps}steps" if args.steps else f"{args.minutes:g}min"
    write_results(HERE / f"results_{budget}.json", {
        "command": "python -m benchmarks.transformer.bench " + (
            f"--steps {args.steps}" if args.steps else f"--minutes {args.minutes}")
        + f" --threads {args.threads} --eval-interval {args.eval_interval} "
          f"--positions {args.positions}",
        "model_config": MODEL,
        "train_config": vars(cfg),
        "quiet_machine": quiet, "rows": rows, "nanogpt_baby_nats_per_char": NANOGPT_BABY,
        "samples": samples, "table": table})


if __name__ == "__main__":
    main()
