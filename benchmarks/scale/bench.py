"""Corpora larger than RAM: prepare and train on a generated 2 GiB text file in bounded memory.

    .venv/bin/python -m benchmarks.scale.bench            # --gib 0.2 for a quick try

A seeded char-level text is written under /tmp: block after block, the lines of Python's
documentation topics (`builtin:pydoc`, ~100 symbols) in a new seeded order. `seqlab.experiment.
train`, the path of `seqlab train`, then trains a 2x128 LSTM on it for a fixed number of steps in
a child process, whose resident memory is sampled with psutil and read from getrusage when it
ends. The same model and steps train on a 10 MiB file cut from the same text, before and after
each big run. Validation and test are small separate files, so scoring stays small.

Reported: preparation speed (the vocabulary and encoding passes of the task's `prepare`, timed
inside `train`); peak RSS, sampled before and after the first training step and read as the
exact high-water mark (target: under 1.5 GB); training tokens/s (target: within 10% of the
10 MiB file's). The generated file and the run folders are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import check_quiet, markdown_table, write_results

HERE = Path(__file__).parent
LSTM = {"emb_dim": 64, "hidden": 128, "layers": 2, "dropout": 0.0}
RSS_TARGET = 1.5e9  # bytes: the "1.5 GB"
SMALL = 10 << 20  # the reference corpus: 10 MiB


# --- the corpus --------------------------------------------------------------------------------
def write_text(path: Path, size: int, seed: int) -> Path:
    """`size` bytes (cut at a line end) of documentation lines, each block in a new order."""
    from seqlab.data.corpus import builtin_text

    lines = np.array(builtin_text().splitlines(keepends=True), dtype=object)
    rng = np.random.default_rng(seed)
    written = 0
    with path.open("wb") as f:
        while written < size:
            block = "".join(lines[rng.permutation(len(lines))]).encode("utf-8")
            if written + len(block) > size:  # the last block: whole lines only, valid UTF-8
                block = block[: block.rfind(b"\n", 0, size - written) + 1]
                if not block:
                    break
            f.write(block)
            written += len(block)
    return path


# --- one measured training run, in a child process ---------------------------------------------
def child(spec: dict[str, Any]) -> None:
    """Train as `seqlab train` does and write what only the process itself knows."""
    import seqlab.tasks.lm as lm
    from seqlab import models
    from seqlab.data.corpus import DataConfig
    from seqlab.experiment import Experiment, train
    from seqlab.run import Callback, TrainConfig

    # Time the task's own call of `prepare` (instrumentation only): the time to the first step
    # also holds model building and the bf16 probe, ~2 s that would blur a small file's MB/s.
    spans: list[tuple[float, float]] = []
    inner = lm.prepare

    def timed_prepare(*a: Any, **kw: Any) -> Any:
        t = time.monotonic()
        try:
            return inner(*a, **kw)
        finally:
            spans.append((t, time.monotonic()))

    lm.prepare = timed_prepare

    class Clock(Callback):
        """When training started (the first record's clock minus its elapsed time), and the
        CPU seconds and tokens at the first and the last training record."""

        started: float | None = None
        first: tuple[float, int] = (0.0, 0)
        last: tuple[float, int] = (0.0, 0)

        def on_log(self, record: dict[str, Any]) -> None:
            if record.get("kind") != "train":
                return
            self.last = (time.process_time(), record["tokens"])
            if self.started is None:
                self.started = time.monotonic() - record["elapsed_s"]
                self.first = self.last

    mark = Clock()
    exp = Experiment(
        model_name="lstm", model=models.make_config("lstm", LSTM),
        data=DataConfig(path=spec["path"], valid=spec["valid"], test=spec["test"]),
        train=TrainConfig(**spec["train"]))
    t0 = time.monotonic()
    _, data, scores = train(exp, spec["out"], callbacks=[mark])
    end, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    Path(spec["report"]).write_text(json.dumps({
        "start": t0, "prepare": spans[0], "train_start": mark.started, "end": end,
        # tokens per CPU second: what a busy machine's descheduling does not change
        "cpu_tokens_per_sec": (mark.last[1] - mark.first[1]) / (mark.last[0] - mark.first[0]),
        # Linux reports ru_maxrss in KiB: the exact high-water mark, not a sample
        "maxrss_bytes": usage.ru_maxrss * 1024,
        # page faults that waited for the disk: time off the CPU that only a big corpus may cost
        "major_faults": usage.ru_majflt,
        "valid_bits_per_char": next(s.bits_per_token for s in scores if s.split == "valid"),
        "batch_us": _batch_seconds(data.train) * 1e6,
    }))


def _batch_seconds(ids: np.ndarray, n: int = 200) -> float:
    """Median time of one training batch read from the memmap: the only step that differs
    between a small corpus and a big one."""
    from seqlab.data.stream import StreamBatcher

    batches, times = StreamBatcher(ids, 64, 128, seed=0), []
    for _ in range(n):
        t = time.perf_counter()
        batches.next()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run `child` on `path`, sampling its RSS; one row of the table."""
    import psutil

    out, report = work / f"run-{name}", work / f"{name}.json"
    spec = {"path": str(path), "valid": str(work / "valid.txt"), "test": str(work / "test.txt"),
            "out": str(out), "report": str(report), "train": train_config(args)}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OMP_WAIT_POLICY": "PASSIVE"}
    busy0, ours0, t0 = _busy_cpu(), _our_cpu(), time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.scale.bench", "--child",
                             json.dumps(spec)], env=env)
    samples = _sample_rss(psutil.Process(proc.pid), proc)
    if proc.wait() != 0:
        raise SystemExit(f"the {name} run failed (exit {proc.returncode})")
    others = (_busy_cpu() - busy0 - (_our_cpu() - ours0)) / (time.monotonic() - t0)
    r = json.loads(report.read_text())
    prep = [rss for t, rss in samples if t < r["train_start"]]
    trained = [rss for t, rss in samples if t >= r["train_start"]]
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    # Median and best of the logged windows, the first (warm-up) left out: the best is the
    # window least disturbed by other processes, as timeit keeps the fastest repeat.
    speeds = [x["tokens_per_sec"] for x in records if x["kind"] == "train"][1:]
    size, prep_s = path.stat().st_size, r["prepare"][1] - r["prepare"][0]
    shutil.rmtree(out)
    return {"corpus": name, "mb": size / 1e6, "prep_s": prep_s, "prep_mb_s": size / 1e6 / prep_s,
            "peak_rss_prep_mb": max(prep, default=0) / 1e6,
            "peak_rss_train_mb": max(trained, default=0) / 1e6,
            "peak_rss_mb": r["maxrss_bytes"] / 1e6, "tokens_per_sec": statistics.median(speeds),
            "best_tokens_per_sec": max(speeds), "major_faults": r["major_faults"],
            "cpu_tokens_per_sec": r["cpu_tokens_per_sec"], "batch_us": r["batch_us"],
            "valid_bits_per_char": r["valid_bits_per_char"], "other_cpus": others}


def _busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (steal included: the host's contention)."""
    import psutil

    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def _our_cpu() -> float:
    """CPU seconds of this process and its finished children (the measured runs)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _sample_rss(p: Any, proc: subprocess.Popen) -> list[tuple[float, int]]:
    """(monotonic time, RSS bytes) every 20 ms until the child ends."""
    import psutil

    samples = []
    while proc.poll() is None:
        try:
            samples.append((time.monotonic(), p.memory_info().rss))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    return samples


def train_config(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": 64, "seq_len": 128, "lr": 3e-3, "warmup_steps": 20,
            "max_steps": args.steps, "eval_interval": args.steps, "log_interval": 10,
            "precision": "auto", "threads": args.threads, "progress": False, "seed": 0}


# --- the report --------------------------------------------------------------------------------
COLUMNS = [
    ("corpus", "corpus", "s"), ("mb", "MB", ",.0f"), ("prep_s", "prepare s", ".1f"),
    ("prep_mb_s", "prepare MB/s", ",.0f"), ("peak_rss_prep_mb", "peak RSS prepare MB", ",.0f"),
    ("peak_rss_train_mb", "peak RSS train MB", ",.0f"), ("peak_rss_mb", "peak RSS MB", ",.0f"),
    ("tokens_per_sec", "train tok/s", ",.0f"), ("speed_ratio", "ratio", ".3f"),
    ("best_tokens_per_sec", "best window tok/s", ",.0f"), ("best_ratio", "ratio", ".3f"),
    ("cpu_tokens_per_sec", "tok/CPU-s", ",.0f"), ("cpu_ratio", "ratio", ".3f"),
    ("batch_us", "batch read µs", ".0f"), ("major_faults", "major faults", ",d"),
    ("valid_bits_per_char", "valid bits/char", ".3f"), ("other_cpus", "others' CPUs", ".2f"),
]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets: peak RSS under 1.5 GB; each big run's tokens/s within 10% of the mean of
    the 10 MiB runs on either side of it (so drift in the machine's load cancels)."""
    big_rows = rows[1::2]
    for i, big in enumerate(big_rows):
        around = (rows[2 * i], rows[2 * i + 2])
        for key, ratio in (("tokens_per_sec", "speed_ratio"), ("best_tokens_per_sec", "best_ratio"),
                           ("cpu_tokens_per_sec", "cpu_ratio")):
            big[ratio] = big[key] / statistics.mean(r[key] for r in around)
    peak = max(r["peak_rss_mb"] for r in big_rows)
    summary: dict[str, Any] = {
        "peak_rss_mb": peak, "rss_target_met": peak * 1e6 < RSS_TARGET,
        "prep_mb_s": statistics.median(r["prep_mb_s"] for r in big_rows),
        "max_other_cpus": max(r["other_cpus"] for r in rows)}
    for ratio in ("speed_ratio", "best_ratio", "cpu_ratio"):
        summary[ratio + "s"] = [r[ratio] for r in big_rows]
        summary[ratio + "_target_met"] = all(abs(r[ratio] - 1) <= 0.1 for r in big_rows)
    return summary


def run_all(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    big = write_text(work / "big.txt", int(args.gib * (1 << 30)), seed=0)
    print(f"wrote {big.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    small = write_text(work / "small.txt", SMALL, seed=0)  # the big file's first 10 MiB
    write_text(work / "valid.txt", 256 << 10, seed=1)
    write_text(work / "test.txt", 256 << 10, seed=2)
    # Small and big alternate, small first and last: each big run is compared with its
    # neighbours, so a change in the machine's load during the benchmark cancels.
    order = [False] + [True, False] * args.repeats
    return [measure(f"{args.gib:g} GiB" if b else "10 MiB", big if b else small, work, args)
            for b in order]


def main() -> None:
    from seqlab.precision import resolve_precision  # what train.precision=auto chose

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=2.0, help="size of the big corpus")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is steady on a shared 2-core machine (PERF-NOTES trap 1)")
    p.add_argument("--repeats", type=int, default=2, help="big runs, each between small ones")
    p.add_argument("--work", type=Path, default=None, help="default: a new folder in /tmp")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    quiet = check_quiet()  # once: from here on the load average counts our own runs
    work = args.work or Path(tempfile.mkdtemp(prefix="seqlab-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = run_all(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the 2 GiB file and its ids
    summary = summarise(rows)
    table = markdown_table(rows, COLUMNS)
    print(table)
    print(f"\npeak RSS {summary['peak_rss_mb']:,.0f} MB (target < {RSS_TARGET / 1e6:,.0f} MB: "
          f"{_met(summary['rss_target_met'])}); training tok/s {_ratios(summary['speed_ratios'])} "
          f"of the 10 MiB runs' around each (target 0.9-1.1: "
          f"{_met(summary['speed_ratio_target_met'])}; best windows "
          f"{_ratios(summary['best_ratios'])}; per CPU second {_ratios(summary['cpu_ratios'])}); "
          f"preparation {summary['prep_mb_s']:,.0f} MB/s; "
          f"quiet at the start: {quiet}; other processes used up to "
          f"{summary['max_other_cpus']:.2f} CPUs during a run")
    write_results(HERE / "results.json", {
        "command": f"python -m benchmarks.scale.bench --gib {args.gib:g} --steps {args.steps} "
                   f"--threads {args.threads} --repeats {args.repeats}",
        "lstm_config": LSTM, "train_config": train_config(args), "rows": rows,
        "precision": resolve_precision("auto"), **summary, "quiet_at_start": quiet,
        "table": table})


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _ratios(xs: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in xs)


if __name__ == "__main__":
    main()
