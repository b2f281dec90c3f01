"""Seq2seq benchmarks: reversal, addition and SCAN, each with and without attention.

Every experiment trains through the same library call as ``seqlab train --model seq2seq``
(`seqlab.experiment.train`, the generic pipeline), then decodes the test set greedily and
with beam search,
timing both in CPU seconds. The reference figures are the published ones (Joey NMT's reverse
task; Lake & Baroni 2018 for SCAN); for speed, batched decoding is compared with the same
search run one sentence at a time, measured in the same process. Results are merged into
``results.json`` (machine, library versions and git commit included), so experiments can run in
separate invocations, each under ~15 minutes::

    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python benchmarks/seq2seq/bench.py \\
        --only reversal-attention
    .venv/bin/python benchmarks/seq2seq/bench.py --table      # print the README table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab import experiment as s2s
from seqlab.experiment import resolve
from seqlab.io import load_tensors, write_json
from seqlab.seq2seq.data import Pairs, decode
from seqlab.seq2seq.metrics import exact_match
from seqlab.seq2seq.plot import attention_png
from seqlab.seq2seq.search import DecodeConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tasks import generate  # noqa: E402

SCAN = Path(os.environ.get("SEQLAB_SHARED_DATA", HERE.parents[2] / "shared" / "data")) / "scan"
RESULTS = HERE / "results.json"
HEATMAP = HERE / "reversal_attention.png"

# Joey NMT's rnn_reverse config: BiLSTM encoder, Luong attention with input feeding.
JOEY_LIKE = {"cell": "lstm", "emb_dim": 32, "hidden": 128, "bidirectional": True,
             "attention": "general", "input_feeding": True, "dropout": 0.1}
# Lake & Baroni (2018)'s overall-best SCAN model: 2-layer LSTM, 200 units, dropout 0.5, no
# attention. The attention model is smaller (one bidirectional encoder layer, one decoder layer,
# 128 units, Luong general attention) and has no input feeding, so teacher forcing runs the
# decoder in one fused call (39 ms per step here instead of 66): more steps in the same time.
SCAN_NO_ATT = {"cell": "lstm", "emb_dim": 64, "hidden": 200, "enc_layers": 2, "dec_layers": 2,
               "bidirectional": False, "attention": "none", "input_feeding": False,
               "dropout": 0.5}
SCAN_ATT = {"cell": "lstm", "emb_dim": 64, "hidden": 128, "bidirectional": True,
            "attention": "general", "input_feeding": False, "dropout": 0.1}
NO_ATT = {"attention": "none", "input_feeding": False}


@dataclass
class Spec:
    task: str  # which data
    model: dict[str, Any]
    train: dict[str, Any]
    decode: dict[str, Any] = field(default_factory=dict)  # max_len_a/b for this task
    published: str = ""  # the reference figure from the literature


TRAIN_REV = {"batch_size": 64, "lr": 3e-3, "max_steps": 3000, "eval_interval": 500}
TRAIN_ADD = {"batch_size": 64, "lr": 3e-3, "max_steps": 2000, "eval_interval": 500}
# Steps set per run below; the kept checkpoint is the one with the best greedy exact match on
# the validation split (5% of the training file, so in-distribution for both splits).
TRAIN_SCAN = {"batch_size": 64, "lr": 2e-3, "eval_interval": 500, "select_metric": "exact_match",
              "select_mode": "max"}
SCAN_DECODE = {"max_len_a": 6.0, "max_len_b": 10}

EXPERIMENTS = {
    "reversal-attention": Spec("reversal", JOEY_LIKE, TRAIN_REV,
                               published="Joey NMT BiLSTM + Luong: ~95 BLEU"),
    "reversal-none": Spec("reversal", {**JOEY_LIKE, **NO_ATT}, {**TRAIN_REV, "max_steps": 2000}),
    "addition-attention": Spec("addition", {**JOEY_LIKE, "attention": "bahdanau"}, TRAIN_ADD),
    "addition-none": Spec("addition", {**JOEY_LIKE, **NO_ATT}, TRAIN_ADD),
    "scan-simple-attention": Spec("scan-simple", SCAN_ATT, {**TRAIN_SCAN, "max_steps": 8000},
                                  SCAN_DECODE, "best 99.8% (L&B 2018); reproduction 98.9%"),
    "scan-simple-none": Spec("scan-simple", SCAN_NO_ATT, {**TRAIN_SCAN, "max_steps": 2500},
                             SCAN_DECODE, "L&B 2018 best model (no attention): 99.8%"),
    "scan-length-attention": Spec("scan-length", SCAN_ATT, {**TRAIN_SCAN, "max_steps": 3000},
                                  SCAN_DECODE, "L&B 2018: ~14-21% (best 20.8%)"),
    "scan-length-none": Spec("scan-length", SCAN_NO_ATT, {**TRAIN_SCAN, "max_steps": 1500},
                             SCAN_DECODE, "L&B 2018: 13.8% (overall-best model)"),
}


def data_section(task: str, work: Path) -> dict[str, Any]:
    if task in ("reversal", "addition"):
        paths = generate(work / "data") if not (work / "data" / f"{task}.test.tsv").exists() \
            else {task: {s: work / "data" / f"{task}.{s}.tsv" for s in ("train", "dev", "test")}}
        p = paths[task]
        level = "word" if task == "reversal" else "char"
        return {"path": str(p["train"]), "valid": str(p["dev"]), "test": str(p["test"]),
                "level": level}
    split = task.split("-")[1]
    return {"path": str(SCAN / f"{split}_split" / f"tasks_train_{split}.txt"),
            "test": str(SCAN / f"{split}_split" / f"tasks_test_{split}.txt"),
            "valid_fraction": 0.05}


def decode_test(model: Any, pairs: Pairs, cfg: DecodeConfig) -> tuple[list[list[int]], float]:
    sources = [pairs.source(i) for i in range(len(pairs))]
    t0 = time.process_time()
    hyps = model.translate(sources, cfg)
    return [h[0].tokens for h in hyps], time.process_time() - t0


def by_length(hyps: list[list[int]], pairs: Pairs, task: str) -> dict[str, float]:
    """Exact match per length band: beyond the training lengths is where models break."""
    refs = [pairs.target(i).tolist() for i in range(len(pairs))]
    key = pairs.src_lengths if task == "reversal" else pairs.tgt_lengths
    bands = {"reversal": [(1, 25), (26, 30)], "scan-length": [(24, 30), (31, 40), (41, 48)]}
    out = {}
    for lo, hi in bands.get(task, []):
        idx = [i for i in range(len(pairs)) if lo <= key[i] <= hi]
        if idx:
            out[f"{lo}-{hi}"] = exact_match([hyps[i] for i in idx], [refs[i] for i in idx])
    return out


def speed(model: Any, pairs: Pairs, base: dict[str, Any], n: int = 300) -> dict[str, float]:
    """Sentences per CPU second, batched vs one at a time (the reference), beam 5."""
    sources = [pairs.source(i) for i in range(min(n, len(pairs)))]
    model.translate(sources[:20], DecodeConfig(**base, beam_size=5))  # warm-up
    out = {}
    for name, bs in (("batched_64", 64), ("one_at_a_time", 1)):
        t0 = time.process_time()
        model.translate(sources, DecodeConfig(**base, beam_size=5, batch_size=bs))
        out[f"{name}_sent_per_cpu_s"] = len(sources) / (time.process_time() - t0)
    out["ratio"] = out["batched_64_sent_per_cpu_s"] / out["one_at_a_time_sent_per_cpu_s"]
    return out


def scores(name: str, model: Any, test: Pairs) -> dict[str, Any]:
    """Decode the test set greedily and with beam 5; exact match, per-length bands, CPU time."""
    spec = EXPERIMENTS[name]
    base = {"max_len_a": 2.0, "max_len_b": 50, **spec.decode}
    greedy, greedy_s = decode_test(model, test, DecodeConfig(strategy="greedy", **base))
    beam, beam_s = decode_test(model, test, DecodeConfig(beam_size=5, **base))
    refs = [test.target(i).tolist() for i in range(len(test))]
    out = {"test_pairs": len(test), "exact_match_greedy": exact_match(greedy, refs),
           "exact_match_beam5": exact_match(beam, refs), "greedy_cpu_s": greedy_s,
           "beam5_cpu_s": beam_s, "by_length_greedy": by_length(greedy, test, spec.task)}
    if name == "reversal-attention":
        out["decode_speed"] = speed(model, test, base)
        plot_reversal(model, test)
    return out


def redecode(name: str, work: Path) -> dict[str, Any]:
    """Re-run only the decoding of a trained benchmark run (after a search fix)."""
    from seqlab.experiment import load_run
    from seqlab.seq2seq.data import DataConfig, prepare

    model, config = load_run(work / "runs" / name)
    data = prepare(DataConfig(**config["data"]), (model.config.max_src_len,
                                                  model.config.max_tgt_len), model.vocab)
    return scores(name, model, data.test)


def run(name: str, work: Path, minutes: float) -> dict[str, Any]:
    spec = EXPERIMENTS[name]
    base = {"max_len_a": 2.0, "max_len_b": 50, **spec.decode}
    raw = {"model": {"name": "seq2seq", **spec.model, "decode": {"strategy": "greedy", **base}},
           "data": data_section(spec.task, work),
           "train": {**spec.train, "max_minutes": minutes, "progress": False, "threads": 1}}
    exp = resolve(raw)
    out = work / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    t0, w0 = time.process_time(), time.perf_counter()
    model, data, final = s2s.train(exp, out)
    train_cpu, train_wall = time.process_time() - t0, time.perf_counter() - w0
    steps = load_tensors(out / "last.safetensors")[1]["trainer"]["progress"]["step"]
    return {
        "task": spec.task, "model": spec.model, "train": exp.train.__dict__,
        "parameters": model.num_parameters(), "steps": steps,
        "train_cpu_s": train_cpu, "train_wall_s": train_wall,
        **scores(name, model, data.test),
        "test_scores": next(s.as_dict() for s in final if s.split == "test"),
        "published": spec.published,
    }


def plot_reversal(model: Any, pairs: Pairs) -> None:
    """The attention of one 15-token test example: reversal should give an anti-diagonal."""
    i = next(i for i in range(len(pairs)) if len(pairs.source(i)) == 15)
    hyp = model.translate([pairs.source(i)], DecodeConfig(strategy="greedy"))[0][0]
    src = decode(pairs.source(i), model.vocab.src)
    attention_png(hyp.attention, src, [*decode(hyp.tokens, model.vocab.tgt), "<eos>"], HEATMAP,
                  title="reversal, test example: attention (rows: outputs)")


def environment() -> dict[str, Any]:
    import sacrebleu

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    return {"machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()}",
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "sacrebleu": sacrebleu.__version__, "git_commit": commit,
            "load_average_at_start": os.getloadavg(), "threads": 1}


def table(results: dict[str, Any]) -> str:
    head = ("| experiment | model | params | steps | train CPU s | exact match greedy | beam 5 "
            "| BLEU | decode CPU s (greedy / beam 5) | by length | published |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n")
    rows = []
    for name in EXPERIMENTS:
        r = results.get("experiments", {}).get(name)
        if r is None:
            continue
        bands = ", ".join(f"{k}: {v:.1%}" for k, v in r["by_length_greedy"].items())
        m = r["model"]
        desc = (f"{m['cell']} {m.get('enc_layers', 1)}+{m.get('dec_layers', 1)}x{m['hidden']}"
                f"{' bi' if m.get('bidirectional', True) else ''}, {m['attention']}")
        rows.append(f"| {name} | {desc} | {r['parameters']:,} | {r['steps']} | "
                    f"{r['train_cpu_s']:.0f} | "
                    f"{r['exact_match_greedy']:.1%} | {r['exact_match_beam5']:.1%} | "
                    f"{r['test_scores']['bleu']:.1f} | {r['greedy_cpu_s']:.1f} / "
                    f"{r['beam5_cpu_s']:.1f} | {bands} | {r['published']} |")
    return head + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated experiment names (default: all)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/seqlab-bench-seq2seq"))
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget per run")
    ap.add_argument("--table", action="store_true", help="print the table of results.json")
    ap.add_argument("--redecode", action="store_true",
                    help="only decode the test sets again with the runs already in --work")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"experiments": {}}
    if args.table:
        print(table(results))
        return
    torch.set_num_threads(1)
    names = args.only.split(",") if args.only else list(EXPERIMENTS)
    for name in names:
        env = environment()
        if args.redecode:
            result = {**results["experiments"][name], **redecode(name, args.work)}
        else:
            result = run(name, args.work, args.minutes)
        results["experiments"][name] = {**result, "environment": env}
        write_json(RESULTS, results)
        print(json.dumps({k: v for k, v in result.items() if k not in ("model", "train")}))
    print(table(results))


if __name__ == "__main__":
    main()
