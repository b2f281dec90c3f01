"""GPU check: a tiny train/eval/sample on the accelerator, and training tokens/s of the
tinyshakespeare LSTM configuration on the accelerator against the CPU, in the same run.

    bash benchmarks/device/check.sh            # or: .venv/bin/python -m benchmarks.device.check

Data: ../shared/data/tinyshakespeare/input.txt when present, else the built-in corpus
(Python's documentation), so the check runs on a machine that has only the repository.
Writes benchmarks/device/results.json (machine, versions, commit) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchmarks.common import SHARED_DATA, markdown_table, write_results

HERE = Path(__file__).parent
DATA = SHARED_DATA / "tinyshakespeare" / "input.txt"
LSTM = ["--model", "lstm", "model.emb_dim=64", "model.hidden=512", "model.layers=2",
        "model.dropout=0.1", "train.batch_size=64", "train.seq_len=128", "train.lr=3e-3",
        "train.eval_interval=1000000", "train.progress=false"]


def seqlab(*args: object) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "seqlab", *map(str, args)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"seqlab {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done


def tokens_per_sec(run: Path) -> float:
    """Median training tokens/s over the logged intervals (the first is warm-up)."""
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rates = sorted(r["tokens_per_sec"] for r in recs if r.get("kind") == "train")
    rates = rates[1:] or rates  # the first interval includes warm-up
    return rates[len(rates) // 2] if rates else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="the accelerator to check")
    p.add_argument("--steps", type=int, default=60, help="steps per throughput run")
    args = p.parse_args()
    data = ["--data", str(DATA)] if DATA.exists() else []
    work = Path(tempfile.mkdtemp(prefix="seqlab-device-"))
    rows = []
    # 1. tiny train / eval / sample on the device, then the same checkpoint on the CPU
    tiny = work / "tiny"
    seqlab("train", "--out", tiny, "--max-steps", 20, *data, "--model", "lstm",
           "model.hidden=64", "model.layers=1", f"train.device={args.device}",
           "train.progress=false")
    on_device = json.loads(seqlab("eval", tiny, "--json", "--device", args.device).stdout)
    on_cpu = json.loads(seqlab("eval", tiny, "--json", "--device", "cpu").stdout)
    sample = seqlab("sample", tiny, "--device", args.device, "--length", 80, "--seed", 1).stdout
    rows.append({"check": "tiny run", "device_bits": on_device["bits_per_token"],
                 "cpu_bits": on_cpu["bits_per_token"],
                 "agree": abs(on_device["bits_per_token"] - on_cpu["bits_per_token"]) < 1e-3})
    # 2. throughput of the tinyshakespeare LSTM configuration, device against CPU
    rates = {}
    for i, device in enumerate((args.device, "cpu")):
        run = work / f"lstm-{i}"
        t0 = time.perf_counter()
        seqlab("train", "--out", run, "--max-steps", args.steps, *data, *LSTM,
               f"train.device={device}", "train.log_interval=10")
        rates[device] = tokens_per_sec(run)
        rows.append({"check": f"lstm 2x512 on {device}", "tokens_per_sec": rates[device],
                     "wall_s": time.perf_counter() - t0})
    ratio = rates[args.device] / rates["cpu"]
    print(markdown_table(rows, [("check", "check", "s"), ("tokens_per_sec", "train tok/s", ",.0f"),
                                ("device_bits", "bits (device)", ".4f"),
                                ("cpu_bits", "bits (cpu)", ".4f")]))
    print(f"\n{args.device} / cpu training throughput: {ratio:.1f}x\nsample: {sample[:80]!r}")
    write_results(HERE / "results.json", {
        "device": args.device, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available()
        else None, "rows": rows, "speedup": ratio, "data": str(DATA) if data else "builtin"})


if __name__ == "__main__":
    main()
