"""``seqlab compare``: train several model specifications on the same data, split and budget.

    seqlab compare --data TRAIN --valid VALID --models ngram,window,rnn,gru,lstm,tcn \\
        --max-minutes M --out DIR --json

Each specification is trained by the generic pipeline (``seqlab.experiment.train``) into
``DIR/<name>``; every run reads the same files with the same tokenisation, so all share one
vocabulary and one split. All models must belong to one task; the leaderboard ranks them by
that task's metric (bits per token for language models, token accuracy for tagging, ...): per
model, the metric on the validation and test splits, the number of stored parameters, the
training time and the training tokens per second. It is printed, and saved as
``leaderboard.json`` and ``leaderboard.md``, with
the learning curves (from each run's ``metrics.jsonl``) in ``learning_curves.png``.

Nothing here knows a model family. Scores come from the protocol's ``log_prob`` (through
`seqlab.scoring`); "parameters" counts the values in the run's best checkpoint (weights for a
network, n-gram counts and keys for an n-gram, whatever a family saves); tokens come from the
training records when the family logs them (``tokens``), else one pass over the training split.

A specification is a registry name with optional overrides, ``name:key=value:key=value``; bare
keys are model keys, ``train.*`` keys change that model's training only, e.g.
``lstm:hidden=512:layers=1`` or ``tcn:levels=10:train.lr=1e-3``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqlab import models, tasks
from seqlab.config import apply_overrides, from_dict, parse_value, to_dict
from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, load_tensors, read_json, write_json
from seqlab.run import TrainConfig, set_budget
from seqlab.tasks.base import Task


def columns(metric: str) -> list[tuple[str, str, str]]:
    """The leaderboard's columns: (row key, header, format); the score columns are the task's
    metric (bits/token for language models)."""
    label = metric.replace("_per_", "/").replace("_", " ")
    return [("model", "model", "s"), (f"valid_{metric}", f"valid {label}", ".4f"),
            (f"test_{metric}", f"test {label}", ".4f"), ("parameters", "parameters", ",d"),
            ("steps", "steps", ",.0f"), ("train_seconds", "train time (s)", ".1f"),
            ("tokens_per_sec", "tokens/s", ",.0f"), ("tokens", "train tokens", ",.0f")]


@dataclass
class Spec:
    """One entry of ``--models``: a registry name and its overrides."""

    label: str  # as written, e.g. "lstm:hidden=512"; the row's name
    model: str  # registry name
    model_overrides: dict[str, Any] = field(default_factory=dict)
    train_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label).strip("-")


def parse_specs(text: str | list[str]) -> list[Spec]:
    """``ngram,lstm:hidden=512`` -> specs; unknown models, repeated labels and models of
    different tasks (which cannot share data or a metric) are errors."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise SeqlabError("--models expects a comma-separated list of model names, got none")
    specs = [_parse_spec(item) for item in items]
    folders = [s.folder for s in specs]
    for s in specs:
        if folders.count(s.folder) > 1:
            raise SeqlabError(f"--models lists {s.label!r} twice; give each entry different "
                              "overrides")
    names = {tasks.for_model(s.model).name: s.model for s in specs}
    if len(names) > 1:
        raise SeqlabError("seqlab compare ranks models of one task on the same data, got "
                          + ", ".join(f"{m} ({t})" for t, m in names.items()))
    return specs


def task_of(specs: list[Spec]) -> Task:
    return tasks.for_model(specs[0].model)


def _parse_spec(item: str) -> Spec:
    name, *pairs = item.split(":")
    models.resolve(name)  # raises, naming the valid models
    spec = Spec(label=item, model=name)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SeqlabError(f"--models: expected name:key=value, got {item!r}")
        if key.startswith("train."):
            spec.train_overrides[key[len("train."):]] = parse_value(value)
        else:
            spec.model_overrides[key.removeprefix("model.")] = parse_value(value)
    models.make_config(name, spec.model_overrides)  # validate now, before anything trains
    return spec


# --- running ------------------------------------------------------------------------------------
def compare(specs: list[Spec], data: Any, train: TrainConfig, out: str | Path, *,
            resume: bool = False, command: list[str] | None = None, log: Any = None,
            params: int | None = None, seeds: int = 1) -> list[dict[str, Any]]:
    """Train every spec into ``out/<folder>`` and return the leaderboard rows (also saved).

    With `params`, each trainable family is first sized to about that many trainable
    parameters (`seqlab.sizing`); with `seeds` > 1, every spec is trained that many times
    (``train.seed``, ``train.seed + 1``, ...) into ``out/<folder>/seed-<s>`` and its row holds
    the mean and the standard deviation over the seeds. With ``resume``, a run whose folder
    already holds a finished row is not trained again, so a long comparison can run in several
    invocations.
    """
    from seqlab.experiment import Experiment
    from seqlab.experiment import train as train_run

    out, log = Path(out), log or sys.stderr  # sys.stderr at call time (it may be replaced)
    task = task_of(specs)
    if seeds < 1:
        raise SeqlabError(f"--seeds expects a positive number of runs per model, got {seeds}")
    if params is not None:
        specs = sized(specs, task, data, params, log)
    rows = []
    for spec in specs:
        runs = []
        for k in range(seeds):
            run_dir = out / spec.folder / f"seed-{k}" if seeds > 1 else out / spec.folder
            if resume and (run_dir / "row.json").exists():
                runs.append(read_json(run_dir / "row.json"))
                print(f"{spec.label}: reusing {run_dir}", file=log)
                continue
            cfg = _train_config(train, spec)
            cfg = from_dict(TrainConfig, {**to_dict(cfg), "seed": cfg.seed + k}, prefix="train.")
            exp = Experiment(model_name=spec.model,
                             model=models.make_config(spec.model, spec.model_overrides),
                             data=data, train=cfg)
            t0 = time.perf_counter()
            _, prepared, scores = train_run(exp, run_dir, command=command, log=log)
            row = leaderboard_row(spec.label, run_dir, scores, time.perf_counter() - t0,
                                  len(prepared.split("train")), task.metric)
            write_json(run_dir / "row.json", row)
            runs.append(row)
        rows.append(runs[0] if seeds == 1 else over_seeds(runs))
    save_leaderboard(rows, out, data, task)
    return rows


def sized(specs: list[Spec], task: Task, data: Any, params: int, log: Any) -> list[Spec]:
    """`specs` with each trainable family's width solved for `params` trainable parameters
    (on the data's vocabulary, prepared once here); the others are kept and said so."""
    import tempfile

    from seqlab import sizing

    with tempfile.TemporaryDirectory(prefix="seqlab-sizing-") as tmp:
        vocab = task.prepare(data, Path(tmp)).vocab
        out = []
        for spec in specs:
            if sizing.width_key(spec.model) is None:
                print(f"{spec.label}: not sized (counted or fitted by EM, not trained)", file=log)
                out.append(spec)
                continue
            overrides, count = sizing.solve(spec.model, vocab, params, spec.model_overrides)
            key = sizing.width_key(spec.model)
            width = sizing.lookup(overrides, key) if key else None
            print(f"{spec.label}: {key}={width} gives {count:,} trainable parameters", file=log)
            out.append(Spec(label=spec.label, model=spec.model, model_overrides=overrides,
                            train_overrides=spec.train_overrides))
        return out


def over_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for several seeds of a spec: the mean of every number, the sample standard
    deviation of the scores (``<key>_sd``), and each seed's row under ``seeds``."""
    row = dict(runs[0])
    metric = row["metric"]
    for key in (metric, f"valid_{metric}", f"test_{metric}", "train_seconds", "tokens",
                "steps", "tokens_per_sec", "test_perplexity"):
        if any(r.get(key) is None for r in runs):
            continue
        values = [float(r[key]) for r in runs]
        row[key] = float(np.mean(values))
        if key in (metric, f"valid_{metric}", f"test_{metric}"):
            row[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    row["seeds"] = runs
    return row


def _train_config(train: TrainConfig, spec: Spec) -> TrainConfig:
    if not spec.train_overrides:
        return train
    return from_dict(TrainConfig, {**to_dict(train), **spec.train_overrides}, prefix="train.")


def leaderboard_row(label: str, run_dir: Path, scores: list[Any], wall: float,
                    train_tokens: int, metric: str = "bits_per_token") -> dict[str, Any]:
    """One row, from the protocol's scores and the run folder alone (any family)."""
    by_split = {e.split: e for e in scores}
    eval_seconds = sum(e.seconds for e in scores)
    train_seconds = max(wall - eval_seconds, 1e-9)
    tokens, steps = _trained_tokens(run_dir, train_tokens)
    tensors, _ = load_tensors(run_dir / "best.safetensors")
    valid, test = by_split.get("valid"), by_split.get("test")
    value = lambda e: getattr(e, metric) if e is not None else None  # noqa: E731
    return {
        "model": label, "metric": metric,
        metric: value(test or valid), f"valid_{metric}": value(valid),
        f"test_{metric}": value(test),
        **({"test_perplexity": getattr(test, "perplexity", None)} if test is not None else {}),
        "parameters": sum(t.numel() for k, t in tensors.items() if not k.startswith("optim.")),
        "train_seconds": train_seconds, "tokens": tokens, "steps": steps,
        "tokens_per_sec": tokens / train_seconds, "run": str(run_dir),
    }


def _trained_tokens(run_dir: Path, train_tokens: int) -> tuple[int, int | None]:
    """Tokens consumed in training and optimizer steps: the trainer's saved progress when the
    family trains with `seqlab.trainer.Trainer`; else what the family logged (``tokens``); else
    one pass over the training split (a counting model)."""
    last = run_dir / "last.safetensors"
    if last.exists():
        from safetensors import safe_open

        with safe_open(str(last), framework="pt") as f:
            trainer = json.loads((f.metadata() or {}).get("trainer", "null"))
        if trainer:
            return int(trainer["progress"]["tokens"]), int(trainer["progress"]["step"])
    logged = [r for r in _records(run_dir / "metrics.jsonl")
              if "tokens" in r and r.get("kind") not in ("eval", "final")]  # those are scored
    return (int(logged[-1]["tokens"]) if logged else train_tokens), None


def _records(metrics: Path) -> list[dict[str, Any]]:
    if not metrics.exists():
        return []
    return [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line]


# --- output -------------------------------------------------------------------------------------
def markdown(rows: list[dict[str, Any]]) -> str:
    cols = columns(rows[0].get("metric", "bits_per_token") if rows else "bits_per_token")
    head = "| " + " | ".join(h for _, h, _ in cols) + " |"
    rule = "|" + "|".join(" --- " if k == "model" else " ---: " for k, _, _ in cols) + "|"
    body = ["| " + " | ".join(_cell(r.get(k), f, r.get(f"{k}_sd")) for k, _, f in cols) + " |"
            for r in rows]
    return "\n".join([head, rule, *body])


def _cell(value: Any, spec: str, sd: float | None = None) -> str:
    if value is None:
        return "-"
    return format(value, spec) + (f" ± {sd:{spec}}" if sd is not None else "")


def ranked(rows: list[dict[str, Any]], task: Task) -> list[dict[str, Any]]:
    """Best first by the task's metric; rows without a score last."""
    sign = 1 if task.mode == "min" else -1
    return sorted(rows, key=lambda r: (r.get(task.metric) is None,
                                       sign * (r.get(task.metric) or 0.0)))


def save_leaderboard(rows: list[dict[str, Any]], out: Path, data: Any, task: Task) -> None:
    """leaderboard.json, leaderboard.md (best first) and learning_curves.png in ``out``."""
    best_first = ranked(rows, task)
    write_json(out / "leaderboard.json", {"task": task.name, "data": to_dict(data),
                                          "rows": best_first})
    better = "lower" if task.mode == "min" else "higher"
    level = f" ({data.level} level)" if hasattr(data, "level") else ""
    with atomic_open(out / "leaderboard.md", "w") as f:
        f.write(f"Data: `{data.path}`{level}; {better} {task.metric} is better.\n\n")
        f.write(markdown(best_first) + "\n\n")
        f.write("Parameters: values stored in the best checkpoint. Train time: wall time of "
                "training, periodic validation included, final scoring excluded; tokens/s = "
                "train tokens / train time.")
        seeds = max((len(r.get("seeds", [])) for r in rows), default=0)
        f.write(f" Scores are the mean ± sample standard deviation over {seeds} seeds (train.seed,"
                " train.seed + 1, ...); the other columns are means.\n" if seeds else "\n")
    plot_curves(rows, out / "learning_curves.png", task.metric)


def plot_curves(rows: list[dict[str, Any]], path: Path, metric: str = "bits_per_token") -> None:
    """The validation metric against training time and against tokens seen, and the training
    loss against time: one colour per model, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_v, ax_n, ax_t) = plt.subplots(1, 3, figsize=(17, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(rows):
        for k, run in enumerate(row.get("seeds") or [row]):
            style = {"color": colors[i % len(colors)], "label": row["model"] if k == 0 else None}
            records = _records(Path(run["run"]) / "metrics.jsonl")
            clock, seen = _clock(records, run["train_seconds"]), _seen(records, run)
            train = [(clock(r["step"]), _bits(r)) for r in records
                     if r.get("kind") == "train" and "step" in r and _bits(r) is not None]
            evals = [(r["step"], r[metric]) for r in records
                     if r.get("kind") == "eval" and metric in r]
            if len(evals) > 1:
                ax_v.plot([clock(s) for s, _ in evals], [v for _, v in evals], marker="o", ms=3,
                          **style)
                ax_n.plot([seen(s) for s, _ in evals], [v for _, v in evals], marker="o", ms=3,
                          **style)
            elif run.get(f"valid_{metric}") is not None:  # counted, not trained: one value
                ax_v.axhline(run[f"valid_{metric}"], ls="--", lw=1, **style)
                ax_n.axhline(run[f"valid_{metric}"], ls="--", lw=1, **style)
            if train:
                ax_t.plot(*zip(*train, strict=True), lw=1,
                          marker="." if len(train) < 3 else None, **style)
    for ax, title, xlabel, unit in (
            (ax_v, "validation", "training time (s)", metric),
            (ax_n, "validation", "training tokens seen", metric),
            (ax_t, "training loss (running mean)", "training time (s)", "bits/token")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def _seen(records: list[dict[str, Any]], row: dict[str, Any]) -> Any:
    """step -> training tokens seen: from the training records' ``tokens``, else in proportion
    to the row's total."""
    logged = [(r["step"], r["tokens"]) for r in records
              if r.get("kind") == "train" and "tokens" in r and "step" in r]
    if logged:
        steps, tokens = zip(*[(0, 0), *logged], strict=True)
        rate = tokens[-1] / max(steps[-1], 1)
        return lambda step: (float(np.interp(step, steps, tokens)) if step <= steps[-1]
                             else tokens[-1] + rate * (step - steps[-1]))
    last = row.get("steps") or max((r.get("step", 0) for r in records), default=0) or 1
    return lambda step: (row.get("tokens") or 0) * step / last


def _clock(records: list[dict[str, Any]], train_seconds: float) -> Any:
    """step -> seconds into training: from the training records' ``elapsed_s`` when a family
    logs it (extended at the last rate), else spread evenly over the training time."""
    timed = [r for r in records if r.get("kind") == "train" and "elapsed_s" in r]
    steps = [0] + [r["step"] for r in timed]
    seconds = [0.0] + [r["elapsed_s"] for r in timed]
    if len(steps) < 2:
        last = max((r.get("step", 0) for r in records), default=0) or 1
        return lambda step: train_seconds * step / last
    rate = seconds[-1] / max(steps[-1], 1)
    return lambda step: (float(np.interp(step, steps, seconds)) if step <= steps[-1]
                         else seconds[-1] + rate * (step - steps[-1]))


def _bits(record: dict[str, Any]) -> float | None:
    """A training record's bits per token (``loss`` is in nats when only that is logged)."""
    if "bits_per_token" in record:
        return record["bits_per_token"]
    return record["loss"] / math.log(2) if "loss" in record else None


# --- command line -------------------------------------------------------------------------------
def register(subparsers: Any) -> dict[str, Any]:
    c = subparsers.add_parser("compare", help="train several models on the same split; rank")
    c.add_argument("--data", help="training text (default: Python's documentation, built in)")
    c.add_argument("--valid", help="separate validation file (default: a fraction of --data)")
    c.add_argument("--test", help="separate test file (default: a fraction of --data)")
    c.add_argument("--level", help="tokenisation level, where the task has one (data.level)")
    c.add_argument("--models", required=True,
                   help="comma-separated specs: name[:key=value...], e.g. ngram,lstm:hidden=512")
    c.add_argument("--max-minutes", type=float, help="training budget per model (minutes)")
    c.add_argument("--max-steps", type=int, help="optimizer steps per model")
    c.add_argument("--out", required=True, help="folder: one run per model, plus the leaderboard")
    c.add_argument("--params", type=_count, metavar="N",
                   help="size every trained family to about N trainable parameters (its width;"
                        " depth as its default), e.g. 500k or 2M")
    c.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="train every model K times (train.seed, +1, ...): mean and sd")
    c.add_argument("--resume", action="store_true", help="keep models already finished in --out")
    c.add_argument("--json", action="store_true", help="end with one JSON line: {'rows': [...]}")
    c.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="data.* and train.* overrides shared by every model")
    return {"compare": cmd_compare}


def _count(text: str) -> int:
    """``500k``, ``2M``, ``1.5m`` or ``300000`` -> a parameter count."""
    scale = {"k": 10**3, "m": 10**6}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count such as 500k or 2M, got {text!r}"
                                         ) from None
    if not value >= 1 or value != value:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {text!r}")
    return round(value)


SHORT_RUN_STEPS = 500  # fewer optimizer steps than this (or 5 warm-ups) is a warm-up, not a run


def short_run(row: dict[str, Any], train: TrainConfig) -> bool:
    """True for a trained (step-counted) row that stopped before its ranking means much: the
    reduced leaderboard showed the LSTM and GRU behind the tanh RNN after ~250 steps, 40% of
    them warm-up (benchmarks/leaderboard)."""
    steps = row.get("steps")
    return steps is not None and steps < max(SHORT_RUN_STEPS, 5 * train.warmup_steps)


def cmd_compare(args: argparse.Namespace) -> int:
    specs = parse_specs(args.models)
    raw = apply_overrides({}, args.overrides)
    bad = sorted(set(raw) - {"data", "train"})
    if bad:
        raise SeqlabError(f"seqlab compare takes data.* and train.* overrides (model keys go in "
                          f"--models, e.g. lstm:hidden=512), got {bad[0]}.*")
    data_raw = {**raw.get("data", {}), **{k: v for k, v in (
        ("path", args.data), ("valid", args.valid), ("test", args.test), ("level", args.level))
        if v is not None}}
    train_raw = dict(raw.get("train", {}))
    set_budget(train_raw, args.max_minutes, args.max_steps)
    task = task_of(specs)
    data: Any = from_dict(task.DataConfig, data_raw, prefix="data.")
    train = from_dict(TrainConfig, train_raw, prefix="train.")
    rows = compare(specs, data, train, args.out, resume=args.resume, command=sys.argv,
                   params=args.params, seeds=args.seeds)
    print(markdown(ranked(rows, task)))
    if args.max_minutes is None and args.max_steps is None and "max_steps" not in train_raw:
        print(f"compare: no --max-minutes or --max-steps: every model trained "
              f"train.max_steps={train.max_steps} steps (the same tokens each)", file=sys.stderr)
    for row in rows:
        if short_run(row, train):
            print(f"warning: {row['model']} stopped after {row['steps']:,.0f} steps (warm-up "
                  f"{train.warmup_steps}): too short to rank families, which reorder as they "
                  f"train; give a larger --max-minutes or --max-steps", file=sys.stderr)
    print(f"leaderboard: {Path(args.out) / 'leaderboard.md'}, curves: "
          f"{Path(args.out) / 'learning_curves.png'}")
    if args.json:
        print(json.dumps({"rows": rows, "out": str(args.out)}))
    return 0
