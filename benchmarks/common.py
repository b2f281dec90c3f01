"""Shared benchmark plumbing: machine description, quiet-machine check, results files.

Every benchmark records where and with what its numbers were measured (PERF-NOTES: the machines
are shared and noisy, so a figure without its context means little) and writes JSON results.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def machine() -> dict[str, Any]:
    """CPU, cores, load, library versions and git commit, for the results file."""
    import numpy
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(), "commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def check_quiet(threshold: float = 0.7) -> bool:
    """Warn when another process is busy: timings would be unreliable (PERF-NOTES trap 1)."""
    load = os.getloadavg()[0]
    if load > threshold:
        print(f"warning: 1-minute load average is {load:.2f}; timings will be noisy",
              file=sys.stderr)
        return False
    return True


def write_results(path: Path, results: dict[str, Any]) -> None:
    from seqlab.io import write_json

    write_json(path, {"machine": machine(), **results})


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]
                   ) -> str:
    """Rows as a Markdown table; columns are (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(_fmt(r.get(k), f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def _fmt(v: Any, spec: str) -> str:
    if v is None:
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def welch(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean difference a - b, its standard error and Welch's two-sided p-value."""
    from scipy import stats

    res = stats.ttest_ind(a, b, equal_var=False)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return {"diff": statistics.fmean(a) - statistics.fmean(b), "se": se,
            "t": float(res.statistic), "p": float(res.pvalue)}
