"""Polyphonic music: NLL per step on the test split, against the TCN paper's table.

    .venv/bin/python -m benchmarks.music.run --dataset jsb          # writes results_jsb.json
    .venv/bin/python -m benchmarks.music.run --dataset nottingham
    .venv/bin/python -m benchmarks.music.run --dataset nottingham --models music-lstm,music-gru \
        --max-steps 5000 --tag _long                                # results_nottingham_long.json
    .venv/bin/python -m benchmarks.music.run --dataset jsb --seeds 3 --tag _seeds  # seeds 1-3
    .venv/bin/python -m benchmarks.music.run --report               # results.json + table

Every model trains through the generic pipeline (`seqlab.experiment.train`) with one thread, a
step budget (a wall-clock cap only as a safety net on a shared machine), validation every
`eval_interval` steps, and the best validation checkpoint scored on the test split: early
stopping by checkpoint selection. CPU seconds are this process's user + system time per run.
With ``--seeds K`` every model trains with seeds 1..K; the report gives those files' mean ± sd
and Welch tests of the pairs the TCN paper orders, apart from the one-seed summary.
The metric is `seqlab.tasks.music`'s: the TCN code's frame-weighted NLL per step, in nats.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SHARED_DATA, machine, welch
from seqlab.config import apply_overrides
from seqlab.experiment import resolve, train
from seqlab.io import write_json

HERE = Path(__file__).parent
FILES = {"jsb": "jsb_chorales/jsb_chorales.json", "nottingham": "nottingham/nottingham.json"}
# Bai, Kolter & Koltun 2018, table 1 (and Boulanger-Lewandowski et al. 2012 for RNN-NADE).
PUBLISHED = {
    "jsb": {"music-lstm": 8.45, "music-gru": 8.43, "music-rnn": 8.91, "music-tcn": 8.10,
            "RNN-NADE": 5.56},
    "nottingham": {"music-lstm": 3.29, "music-gru": 3.46, "music-rnn": 4.05, "music-tcn": 3.07,
                   "RNN-NADE": 2.31},
}
COMMON = {"threads": 1, "batch_size": 8, "eval_interval": 100, "progress": False,
          "precision": "fp32", "seed": 1}
# model -> (train overrides, model overrides) per dataset; the budgets are steps.
PLANS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "jsb": {
        "music-lstm": ({"max_steps": 1200, "lr": 5e-3}, {}),
        "music-gru": ({"max_steps": 1200, "lr": 5e-3}, {}),
        "music-tcn": ({"max_steps": 1500, "lr": 2e-3}, {}),
        "music-made": ({"max_steps": 1200, "lr": 5e-3}, {}),
        "music-rnn": ({"max_steps": 1200, "lr": 2e-3}, {}),
        "music-nade": ({"max_steps": 600, "lr": 5e-3, "eval_interval": 200},
                       {"nade_hidden": 64}),
    },
    "nottingham": {  # 1,024-frame batches (windows of train.seq_len = 128 frames)
        "music-lstm": ({"max_steps": 2000, "lr": 5e-3, "eval_interval": 200}, {}),
        "music-gru": ({"max_steps": 2000, "lr": 5e-3, "eval_interval": 200}, {}),
        "music-tcn": ({"max_steps": 1000, "lr": 2e-3, "eval_interval": 200}, {}),
        "music-made": ({"max_steps": 2000, "lr": 5e-3, "eval_interval": 200}, {}),
        "music-rnn": ({"max_steps": 2000, "lr": 2e-3, "eval_interval": 200}, {}),
    },
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(dataset: str, model: str, work: Path, cap_minutes: float,
            max_steps: int | None = None, extra: dict[str, Any] | None = None,
            model_set: list[str] | None = None) -> dict[str, Any]:
    train_over, model_over = PLANS[dataset][model]
    if model_set:  # model overrides in the CLI's form, e.g. conv.kernel_size=3
        model_over = apply_overrides({"model": json.loads(json.dumps(model_over))},
                                     [f"model.{kv}" for kv in model_set])["model"]
    if max_steps is not None:
        train_over = {**train_over, "max_steps": max_steps}
    train_over = {**train_over, **(extra or {})}
    raw = {"model": {"name": model, **model_over},
           "data": {"path": str(SHARED_DATA / "music" / FILES[dataset])},
           "train": {**COMMON, **train_over, "max_minutes": cap_minutes}}
    exp = resolve(raw)
    t0 = cpu_seconds()
    best, _, scores = train(exp, work / model)
    by_split = {s.split: s.as_dict() for s in scores}
    metrics = [json.loads(line) for line in (work / model / "metrics.jsonl").read_text()
               .splitlines() if line]
    steps = max((r.get("step", 0) for r in metrics), default=0)
    return {"model": model, "dataset": dataset, "test_nll_per_step": by_split["test"][
        "nll_per_step"], "valid_nll_per_step": by_split["valid"]["nll_per_step"],
        "published": PUBLISHED[dataset].get(model), "steps": steps,
        "max_steps": exp.train.max_steps, "cpu_seconds": round(cpu_seconds() - t0, 1),
        "parameters": best.num_parameters(), "train": train_over, "model_overrides": model_over}


def bench(dataset: str, models: list[str], cap_minutes: float, max_steps: int | None = None,
          tag: str = "", extra: dict[str, Any] | None = None,
          model_set: list[str] | None = None, seeds: int | None = None) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for seed in range(1, seeds + 1) if seeds else [None]:
                tagged = {"seed": seed} if seed else {}  # recorded in the row as well
                row = run_one(dataset, model, Path(tmp) / f"seed{seed or ''}", cap_minutes,
                              max_steps, {**(extra or {}), **tagged}, model_set)
                row = {**row, **tagged}
                print(json.dumps(row), flush=True)
                rows.append(row)
    write_json(HERE / f"results_{dataset}{tag}.json", {"machine": machine(),
                                                  "common": {**COMMON, **(extra or {})},
                                                  "cap_minutes": cap_minutes, "rows": rows})


def summary(parts: dict[str, Any]) -> str:
    """Per data set and model, the run with the best *validation* NLL (so a longer budget is
    kept only where validation says so), its test NLL against the published one."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parts.values():
        for r in part["rows"]:
            if "seed" in r:  # seed repeats are summarised by `over_seeds`, not picked from
                continue
            key = (r["dataset"], r["model"])
            if key not in best or r["valid_nll_per_step"] < best[key]["valid_nll_per_step"]:
                best[key] = r
    lines = ["| data | model | test NLL/step | published | difference | steps (batch) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (d, m), r in sorted(best.items(), key=lambda kv: (kv[0][0], kv[1]["test_nll_per_step"])):
        pub = r["published"]
        diff = f"{r['test_nll_per_step'] - pub:+.2f}" if pub is not None else (
            f"{r['test_nll_per_step'] - PUBLISHED[d]['RNN-NADE']:+.2f} vs RNN-NADE")
        batch = r["train"].get("batch_size", COMMON["batch_size"])
        lines.append(f"| {d} | {m} | {r['test_nll_per_step']:.3f} | "
                     f"{pub if pub is not None else '-'} | {diff} | {r['steps']} ({batch}) |")
    return "\n".join(lines)


# The pairs whose order the TCN paper's table fixes (first, second): first is better there.
ORDERED = {"jsb": [("music-tcn", "music-lstm"), ("music-tcn", "music-gru"),
                   ("music-gru", "music-lstm"), ("music-lstm", "music-rnn"),
                   ("music-gru", "music-rnn")],
           "nottingham": [("music-tcn", "music-lstm"), ("music-tcn", "music-gru"),
                          ("music-lstm", "music-gru"), ("music-gru", "music-rnn"),
                          ("music-lstm", "music-rnn")]}


def over_seeds(parts: dict[str, Any]) -> str:
    """The files run with ``--seeds``: per data set and model, the test NLL's mean ± sample sd
    over the seeds, then a Welch t-test (two-sided) for each pair the paper orders."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for name, part in parts.items():
        for r in part["rows"]:
            if "seed" in r:
                g = groups.setdefault((r["dataset"], r["model"]), {"file": name, "test": [],
                                                                    "steps": []})
                g["test"].append(r["test_nll_per_step"])
                g["steps"].append(r["steps"])
    if not groups:
        return ""
    lines = ["| data | model | file | seeds | test NLL/step (mean ± sd) | published | "
             "mean steps |", "| --- | --- | --- | ---: | --- | ---: | ---: |"]
    for (d, m), g in sorted(groups.items(), key=lambda kv: (kv[0][0], np.mean(kv[1]["test"]))):
        t = np.asarray(g["test"])
        sd = f" ± {t.std(ddof=1):.3f}" if len(t) > 1 else ""
        lines.append(f"| {d} | {m} | {g['file']} | {len(t)} | {t.mean():.3f}{sd} | "
                     f"{PUBLISHED[d].get(m, '-')} | {np.mean(g['steps']):.0f} |")
    lines += ["", "| data | pair (paper: first better) | difference | p (Welch) | order |",
              "| --- | --- | ---: | ---: | --- |"]
    for d, pairs in ORDERED.items():
        for a, b in pairs:
            if (d, a) not in groups or (d, b) not in groups:
                continue
            x, y = groups[(d, a)]["test"], groups[(d, b)]["test"]
            if min(len(x), len(y)) < 2:
                continue
            w = welch(x, y)
            diff, p = w["diff"], w["p"]
            verdict = ("as published" if diff < 0 else "reversed") + (
                ", beyond the seed noise" if p < 0.05 else ", within the seed noise")
            lines.append(f"| {d} | {a} - {b} | {diff:+.3f} | {p:.3f} | {verdict} |")
    return "\n".join(lines)


def report() -> str:
    """Merge the per-dataset results into results.json and return the markdown tables: the
    summary (best validation run per model) and every run."""
    parts = {p.stem.removeprefix("results_"): json.loads(p.read_text())
             for p in sorted(HERE.glob("results_*.json"))}
    write_json(HERE / "results.json", parts)
    lines = ["| file | data | model | test NLL/step | published | valid | steps | batch | lr "
             "| CPU s | params |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, part in parts.items():
        for r in part["rows"]:
            d = r["dataset"]
            pub = r["published"] if r["published"] is not None else (
                f"({PUBLISHED[d]['RNN-NADE']} RNN-NADE)")
            model = r["model"] + (f" (seed {r['seed']})" if "seed" in r else "")
            lines.append(f"| {name} | {d} | {model} | {r['test_nll_per_step']:.3f} | {pub} "
                         f"| {r['valid_nll_per_step']:.3f} | {r['steps']} | "
                         f"{r['train'].get('batch_size', COMMON['batch_size'])} | "
                         f"{r['train']['lr']:g} | {r['cpu_seconds']:.0f} | "
                         f"{r['parameters']:,} |")
    seeded = over_seeds(parts)
    return (summary(parts) + (f"\n\nOver seeds:\n\n{seeded}" if seeded else "")
            + "\n\nEvery run:\n\n" + "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=list(FILES))
    p.add_argument("--models", help="comma-separated subset (default: all of the plan)")
    p.add_argument("--cap-minutes", type=float, default=12.0, help="wall-clock cap per run")
    p.add_argument("--max-steps", type=int, help="override the plan's step budgets")
    p.add_argument("--tag", default="", help="suffix of the results file (results_DATA.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="train overrides over the plan's (e.g. batch_size=1 clip_norm=0.2)")
    p.add_argument("--model-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model overrides over the plan's (e.g. conv.kernel_size=3 conv.levels=2)")
    p.add_argument("--seeds", type=int, help="train every model with seeds 1..K")
    p.add_argument("--report", action="store_true")
    a = p.parse_args()
    if a.report:
        print(report())
        return
    if a.dataset is None:
        sys.exit("give --dataset or --report")
    models = a.models.split(",") if a.models else list(PLANS[a.dataset])
    extra = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    bench(a.dataset, models, a.cap_minutes, a.max_steps, a.tag, extra, a.model_set, a.seeds)


if __name__ == "__main__":
    main()
