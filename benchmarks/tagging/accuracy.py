"""Tagging accuracy: CoNLL-2000 chunking (BiLSTM-CRF against the softmax ablation) and UD English
EWT UPOS, trained and scored through the public CLI on a stated CPU budget.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.tagging.accuracy       # both
    .venv/bin/python -m benchmarks.tagging.accuracy --bench conll --epochs 12 --jobs 2

Each run is ``seqlab train --model M --data train --test test --out /tmp/...`` (one thread,
no pretrained embeddings), then ``seqlab eval RUN --data test --json``. The dev split picks the
checkpoint (``best.safetensors``, scored every ``--evals-per-epoch`` of an epoch): for CoNLL-2000,
which has no dev file, it is the last ``data.valid_fraction`` (5%) of train.txt, which the task
holds out (`seqlab.data.splits.SplitConfig`); UD EWT has its own dev file. The budget is a
number of epochs (``train.max_steps`` = epochs x sentences / batch), capped by
``--max-minutes`` of wall time per run.

CoNLL-2000 also counts the invalid BIO transitions in each model's test predictions (an I-X that
follows neither B-X nor I-X, the sentence start included), from ``seqlab tag RUN``'s output.

Writes ``accuracy.json`` next to this file (merged with the runs of the other benchmark when
only one is run) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED_DATA, markdown_table, write_results

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SEQLAB = [sys.executable, "-m", "seqlab"]
CONLL = SHARED_DATA / "conll2000"
UD = SHARED_DATA / "ud_english_ewt"


# --- running the CLI ---------------------------------------------------------------------------
@dataclass
class Job:
    """One ``seqlab train`` run and the eval that follows it."""

    name: str  # row label
    model: str  # --model
    data: str
    test: str
    valid: str | None = None
    overrides: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "src")}


def run_timed(cmd: Sequence[str], log: Path | None = None) -> tuple[str, float, float]:
    """Run a command; its stdout, wall seconds and CPU seconds (user + system, its own)."""
    t0 = time.monotonic()
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115
    try:
        proc = subprocess.Popen(list(cmd), stdout=out if log else subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env(), cwd=ROOT, text=True)
        text = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if log:
        text = log.read_text()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return text, time.monotonic() - t0, usage.ru_utime + usage.ru_stime


def last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


def learning_curve(run: Path, metric: str) -> tuple[list[list[float]], int, float]:
    """[[step, valid metric], ...], the last training step, and the training loop's seconds."""
    curve, step, elapsed = [], 0, 0.0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval" and rec.get("split") == "valid" and metric in rec:
            curve.append([rec["step"], round(rec[metric], 5)])
        step = max(step, int(rec.get("step") or 0))  # the final eval's is the last step
        if rec.get("kind") == "train":
            elapsed = rec.get("elapsed_s", elapsed)
    return curve, step, elapsed


def train_and_eval(job: Job, out: Path, metric: str, threads: int = 1) -> dict[str, Any]:
    """``seqlab train`` then ``seqlab eval --json``; the result row (the eval's JSON, timings,
    steps, learning curve and the command lines)."""
    run = out / job.name
    train = [*SEQLAB, "train", "--model", job.model, "--data", job.data, "--test", job.test,
             *(["--valid", job.valid] if job.valid else []), "--out", str(run),
             f"train.threads={threads}", "train.progress=false", "train.device=cpu",
             *job.overrides]
    print(f"[{time.strftime('%H:%M:%S')}] {job.name}: {' '.join(train[2:])}", flush=True)
    _, wall, cpu = run_timed(train, out / f"{job.name}.log")
    evaluate = [*SEQLAB, "eval", str(run), "--data", job.test, "--json"]
    text, eval_wall, _ = run_timed(evaluate)
    curve, steps, loop_s = learning_curve(run, metric)
    best = max(curve, key=lambda p: p[1]) if curve else None
    row = {"name": job.name, "model": job.model, **last_json(text), "train_wall_s": round(wall, 1),
           "train_cpu_s": round(cpu, 1), "train_loop_s": round(loop_s, 1), "steps": steps,
           "best_valid_step": best[0] if best else None,
           f"best_valid_{metric}": best[1] if best else None, "eval_wall_s": round(eval_wall, 1),
           "curve": curve, "run": str(run),
           "train_command": "seqlab " + " ".join(train[len(SEQLAB):]),
           "eval_command": "seqlab " + " ".join(evaluate[len(SEQLAB):])}
    print(f"[{time.strftime('%H:%M:%S')}] {job.name}: {metric} {row.get(metric)} in "
          f"{wall / 60:.1f} min wall, {cpu / 60:.1f} CPU-min, {steps} steps", flush=True)
    return row


def run_jobs(jobs: Sequence[Job], out: Path, metric: str, parallel: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(lambda j: train_and_eval(j, out, metric), jobs))


def steps_for(epochs: float, sentences: int, batch: int) -> int:
    return max(1, math.ceil(epochs * sentences / batch))


# --- CoNLL-2000 --------------------------------------------------------------------------------
def invalid_bio(tags: Sequence[Sequence[str]]) -> int:
    """I-X tags that follow neither B-X nor I-X (a sentence starts after O)."""
    bad = 0
    for sent in tags:
        prev = "O"
        for t in sent:
            if t.startswith("I-") and prev not in (f"B-{t[2:]}", t):
                bad += 1
            prev = t
    return bad


def read_columns(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """Words and last-column tags of a CoNLL file, by sentence."""
    words, tags, w, t = [], [], [], []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        cols = line.split()
        if not cols:
            if w:
                words.append(w)
                tags.append(t)
            w, t = [], []
        elif cols[0] != "-DOCSTART-":
            w.append(cols[0])
            t.append(cols[-1])
    return words, tags


def predicted_tags(run: str, words: list[list[str]], tmp: Path) -> list[list[str]]:
    """``seqlab tag RUN``'s tags for each sentence."""
    src = tmp / f"{Path(run).name}.words.txt"
    src.write_text("".join(" ".join(s) + "\n" for s in words), encoding="utf-8")
    text, _, _ = run_timed([*SEQLAB, "tag", run, "--input", str(src)])
    lines = text.splitlines()
    if len(lines) != len(words):
        raise RuntimeError(f"seqlab tag gave {len(lines)} lines for {len(words)} sentences")
    return [ln.split() for ln in lines]


def conll(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    train, test = CONLL / "train.txt", CONLL / "test.txt"
    n_all = len(read_columns(train)[0])
    n_train = n_all - int(n_all * 0.05)  # the task holds out the last 5% as dev
    steps = steps_for(args.epochs, n_train, args.batch_size)
    common = [*_common(args, steps, n_train), "data.test_fraction=0"]
    jobs = [Job(name, name, str(train), str(test), overrides=common)
            for name in ("bilstm-crf", "bilstm-softmax") if not args.only or name in args.only]
    rows = run_jobs(jobs, out, "span_f1", args.jobs)
    words, gold = read_columns(test)
    for row in rows:
        pred = predicted_tags(row["run"], words, out)
        row["invalid_bio_transitions"] = invalid_bio(pred)
        row["sentences_with_invalid"] = sum(invalid_bio([p]) > 0 for p in pred)
    return {"data": {"train": str(train), "test": str(test), "dev": "last 5% of train.txt",
                     "train_sentences": n_train, "gold_invalid_bio_transitions":
                     invalid_bio(gold)},
            "budget": {"epochs": args.epochs, "max_steps": steps,
                       "max_minutes_per_run": args.max_minutes},
            "target": "span F1 >= 93.0 (test), no pretrained embeddings", "runs": rows}


def ud(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    train, dev, test = (UD / f"en_ewt-ud-{s}.conllu" for s in ("train", "dev", "test"))
    n_train = sum(1 for line in train.read_text(encoding="utf-8").splitlines()
                  if line.startswith("# sent_id"))
    steps = steps_for(args.ud_epochs, n_train, args.batch_size)
    jobs = [Job("ud-bilstm-crf", "bilstm-crf", str(train), str(test), str(dev),
                _common(args, steps, n_train))]
    rows = run_jobs(jobs, out, "token_accuracy", args.jobs)
    return {"data": {"train": str(train), "dev": str(dev), "test": str(test),
                     "train_sentences": n_train, "tag": "UPOS (column 4)"},
            "budget": {"epochs": args.ud_epochs, "max_steps": steps,
                       "max_minutes_per_run": args.max_minutes},
            "target": "UPOS accuracy >= 95.0% (test)", "runs": rows}


def _common(args: argparse.Namespace, steps: int, n_train: int) -> list[str]:
    per_epoch = math.ceil(n_train / args.batch_size)
    return [f"train.max_steps={steps}", f"train.max_minutes={args.max_minutes}",
            f"train.eval_interval={max(1, per_epoch // args.evals_per_epoch)}",
            f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
            "train.optimizer=adamw", "train.schedule=cosine", "train.warmup_steps=100",
            f"train.clip_norm={args.clip}", "train.precision=fp32", f"train.seed={args.seed}",
            *args.set]


# --- report ------------------------------------------------------------------------------------
COLUMNS = [("name", "model", ""), ("span_f1", "test span F1", ".2%"),
           ("span_precision", "P", ".2%"), ("span_recall", "R", ".2%"),
           ("token_accuracy", "token acc.", ".2%"),
           ("invalid_bio_transitions", "invalid BIO transitions", ","),
           ("steps", "steps", ","), ("best_valid_step", "best dev step", ","),
           ("train_wall_s", "train wall s", ".0f"), ("train_cpu_s", "train CPU s", ".0f")]


def table(results: dict[str, Any]) -> str:
    parts = []
    for key in sorted(k for k in results if k.startswith(("conll2000", "ud_ewt"))):
        budget = results[key]["budget"]
        title = ("CoNLL-2000 chunking" if key.startswith("conll2000") else "UD English EWT UPOS"
                 ) + f", {budget['epochs']:g} epochs ({budget['max_steps']:,} steps)"
        cols = COLUMNS if key.startswith("conll2000") else [
            c for c in COLUMNS if c[0] in ("name", "token_accuracy", "steps", "best_valid_step",
                                           "train_wall_s", "train_cpu_s")]
        parts.append(f"{title}\n\n" + markdown_table(results[key]["runs"], cols))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench", nargs="+", choices=("conll", "ud"), default=["conll", "ud"])
    p.add_argument("--epochs", type=float, default=5, help="CoNLL-2000 epochs (default 5)")
    p.add_argument("--ud-epochs", type=float, default=3, help="UD EWT epochs (default 3)")
    p.add_argument("--max-minutes", type=float, default=45, help="wall-clock cap per run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW peak, cosine to 1e-4")
    p.add_argument("--clip", type=float, default=5.0, help="gradient norm clip")
    p.add_argument("--evals-per-epoch", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    p.add_argument("--set", nargs="*", default=[], help="more overrides, e.g. model.dropout=0.5")
    p.add_argument("--only", nargs="*", default=[],
                   help="CoNLL-2000 models to run (bilstm-crf, bilstm-softmax); the stored runs "
                        "of the others are kept")
    p.add_argument("--out", help="folder for the run folders (default: a new /tmp folder)")
    p.add_argument("--key-suffix", default="",
                   help="store the results as conll2000_SUFFIX (e.g. a shorter budget)")
    p.add_argument("--results", default=str(HERE / "accuracy.json"))
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="seqlab-tag-acc-"))
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.results)
    new, t0 = {}, time.monotonic()
    if "conll" in args.bench:
        new["conll2000"] = conll(args, out)
    if "ud" in args.bench:
        new["ud_ewt"] = ud(args, out)
    print(f"total {time.monotonic() - t0:.0f} s wall")
    for part in new.values():
        part["argv"] = sys.argv[1:]
    old = json.loads(path.read_text()) if path.exists() else {}  # read now: another may have run
    if args.key_suffix:
        new = {f"{k}_{args.key_suffix}": v for k, v in new.items()}
    for key, part in new.items():
        if args.only and key in old:  # keep the stored runs that were not rerun
            names = {r["name"] for r in part["runs"]}
            part["runs"] = [*(r for r in old[key]["runs"] if r["name"] not in names),
                            *part["runs"]]
    results = {**{k: v for k, v in old.items() if k.startswith(("conll2000", "ud_ewt"))}, **new}
    write_results(path, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
