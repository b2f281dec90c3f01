"""NTM against an LSTM of about the same size on the copy task (Graves et al. 2014, section 4.1):
bits per sequence at the training lengths (1-20) and at longer ones (30-50, 100).

    # both at once, one CPU slot each, then the report (what README.md records)
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.ntm.copy --train ntm --out R &
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.ntm.copy --train memory-lstm --out R
    .venv/bin/python -m benchmarks.ntm.copy --report --out R
    .venv/bin/python -m benchmarks.ntm.copy --minutes 1 --out /tmp/smoke     # all in turn

Both models train through the public CLI (``seqlab train``, one thread, fp32) on the same
generated stream: batches of 32 fresh sequences of one length each (``data.same_length``),
lengths 1-20, a curriculum that grows the longest length from 1 to 20 over the first 2,000
batches, Adam(W) with warm-up, a cosine decay over the wall-clock budget and clipping at norm 10.
They get the same wall-clock budget on one thread each (the same CPU time, not the same number
of sequences: the LSTM's fused kernel takes many more steps in it). The NTM's step is compiled
(``model.compile=true``); its budget includes the compile. ``best.safetensors`` is the
checkpoint with the fewest validation bit errors (128 sequences of lengths 1-20). Each is then
scored with ``seqlab eval RUN --data copy:A-B --json`` on 1,000 generated sequences per length
range (``copy:1-20`` is the training distribution, from another stream than training and
validation).

Writes ``results.json`` (the table's rows and both learning curves), ``weights.png`` (the NTM's
write and read weightings on a sequence of length 30, beyond the training lengths),
``curves.png`` (validation bit errors against time) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, write_results

HERE = Path(__file__).parent
SEQLAB = [sys.executable, "-m", "seqlab"]
MODELS = ("ntm", "memory-lstm")
RANGES = ("1-20", "30-50", "100-100")
EXTRA = {"ntm": ["model.compile=true"], "memory-lstm": []}


def train(model: str, out: Path, minutes: float, curriculum: int, lr: float) -> None:
    """Train one model into `out`; the wall seconds go to ``out/wall.json``."""
    cmd = [*SEQLAB, "train", "--model", model, "--out", str(out), "data.task=copy",
           f"data.curriculum={curriculum}", "data.valid_sequences=128", "data.test_sequences=64",
           "train.max_steps=100000", f"train.max_minutes={minutes}", "train.batch_size=32",
           f"train.lr={lr}", "train.min_lr=1e-4", "train.warmup_steps=100", "train.clip_norm=10",
           "train.eval_interval=500", "train.threads=1", "train.precision=fp32",
           "train.progress=false", "train.seed=1", *EXTRA[model]]
    print(" ".join(cmd[2:]), file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    (out / "wall.json").write_text(json.dumps({"seconds": time.perf_counter() - t0,
                                               "command": " ".join(cmd[2:])}))


def evaluate(run: Path, lengths: str) -> dict[str, Any]:
    cmd = [*SEQLAB, "eval", str(run), "--data", f"copy:{lengths}", "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def curve(run: Path) -> list[dict[str, float]]:
    """Validation bit errors and cost per sequence by step, with the seconds trained so far."""
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln]
    elapsed, points = 0.0, []
    for r in records:
        if r.get("kind") == "train":
            elapsed = float(r.get("elapsed_s", elapsed))
        elif r.get("kind") == "eval" and r.get("split") == "valid" and "step" in r:
            points.append({"step": int(r["step"]), "seconds": round(elapsed, 1),
                           "bit_errors": r["bit_errors_per_sequence"],
                           "bits": round(r["bits_per_sequence"], 3)})
    return points


def report(root: Path, args: argparse.Namespace) -> None:
    from seqlab.experiment import load_run

    rows, curves = [], {}
    for model in MODELS:
        run = root / model
        wall = json.loads((run / "wall.json").read_text())
        curves[model] = curve(run)
        row: dict[str, Any] = {"model": model, "parameters": load_run(run)[0].num_parameters(),
                               "train_seconds": round(wall["seconds"], 1),
                               "steps": max((p["step"] for p in curves[model]), default=0),
                               "command": wall["command"]}
        row["sequences"] = 32 * row["steps"]
        for lengths in RANGES:
            e = evaluate(run, lengths)
            row[f"errors_{lengths}"] = e["bit_errors_per_sequence"]
            row[f"cost_{lengths}"] = e["bits_per_sequence"]
            row[f"exact_{lengths}"] = e["sequence_accuracy"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    subprocess.run([*SEQLAB, "memory-plot", str(root / "ntm"), "--out", str(HERE / "weights.png"),
                    "--length", "30"], check=True)
    plot_curves(curves, HERE / "curves.png")
    write_results(HERE / "results.json", {"settings": vars(args), "rows": rows,
                                          "curves": curves})
    cols = [("model", "model", "s"), ("parameters", "parameters", ",d"), ("steps", "steps", ",d"),
            ("train_seconds", "train s", ".0f")]
    for lengths in RANGES:
        cols += [(f"errors_{lengths}", f"bit errors {lengths}", ".2f"),
                 (f"cost_{lengths}", f"cost bits {lengths}", ".2f")]
    print(markdown_table(rows, cols))


def plot_curves(curves: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, points in curves.items():
        ax.plot([p["seconds"] / 60 for p in points], [p["bit_errors"] for p in points],
                marker=".", label=model)
    ax.set_xlabel("training minutes (one thread)")
    ax.set_ylabel("validation bit errors / sequence\n(lengths 1-20)")
    ax.set_yscale("symlog", linthresh=1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=14.0, help="wall-clock budget per model")
    p.add_argument("--curriculum", type=int, default=2000, help="batches of length growth")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of both")
    p.add_argument("--train", choices=MODELS, help="only train this model into --out")
    p.add_argument("--report", action="store_true", help="only score the runs in --out")
    p.add_argument("--out", help="folder for the runs (default: a temporary one)")
    args = p.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="ntm-bench-"))
    if not args.report:
        for model in [args.train] if args.train else MODELS:
            train(model, root / model, args.minutes, args.curriculum, args.lr)
    if args.report or not args.train:
        report(root, args)


if __name__ == "__main__":
    main()
