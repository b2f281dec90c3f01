"""Record one equal-parameter leaderboard of `run.sh` here, with the machine description and a
seed-noise test of every pair the issue names.

    .venv/bin/python -m benchmarks.leaderboard.record benchmarks/leaderboard/_work/NAME

reads ``NAME/leaderboard.json`` (what ``seqlab compare --params N --seeds K`` wrote) and writes
``results_NAME.json``, ``NAME.md`` (the Markdown table) and ``curves_NAME.png`` (the learning
curves against wall time and tokens seen) beside this file, then prints the table and the
comparisons. With ``--merge``, the rows already recorded under the same name for models this
folder does not hold are kept (a board trained in two sittings); the new curves then go to
``curves_NAME-2.png`` and the earlier ones stay. A difference counts as "beyond the seed
noise" when Welch's t-test over the seeds gives p < 0.05 (two-sided); with 3 seeds a side that
needs a gap of about 2.8 standard errors.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, welch, write_results

HERE = Path(__file__).parent
PAIRS = [("lstm", "rnn"), ("gru", "rnn"), ("lstm", "gru"), ("transformer", "lstm"),
         ("transformer", "gru"), ("tcn", "rnn")]
REST = [("nats", "nats/char", ".3f"), ("parameters", "parameters", ",d"),
        ("width", "width", "s"), ("steps", "steps", ",.0f"), ("tokens", "train tokens", ",.0f"),
        ("train_seconds", "train wall (s)", ".1f"), ("tokens_per_sec", "tokens/s", ",.0f")]


def columns(has_test: bool) -> list[tuple[str, str, str]]:
    """The table's columns: the score is the test split's when compare had one (then the
    validation score gets a column of its own), else the validation split's."""
    if not has_test:
        return [("model", "model", "s"), ("score", "valid bits/char (mean ± sd)", "s"), *REST]
    return [("model", "model", "s"), ("score", "test bits/char (mean ± sd)", "s"),
            ("valid", "valid bits/char (mean ± sd)", "s"), *REST]


def mean_sd(row: dict[str, Any], key: str) -> str:
    if row.get(key) is None:
        return "-"
    sd = row.get(f"{key}_sd")
    return f"{row[key]:.4f}" + (f" ± {sd:.4f}" if sd else "")


def seed_scores(row: dict[str, Any]) -> list[float]:
    return [s["bits_per_token"] for s in row.get("seeds", [row])]


def width_of(run: Path) -> str:
    cfg = json.loads((run / "config.json").read_text())
    model = cfg["model"]
    for key in ("hidden", "channels", "dim"):
        if key in model:
            heads = f", {model['heads']} heads" if "heads" in model else ""
            return f"{key}={model[key]}{heads}"
    return "-"


def render(rows: list[dict[str, Any]], widths: dict[str, str]
           ) -> tuple[str, dict[str, dict[str, Any]]]:
    """The Markdown table of the rows and the Welch test of every named pair over the seeds.
    The score column is the test split's only where a row has a test score (compare writes
    ``test_bits_per_token: null`` when there was no test split)."""
    table = []
    for r in rows:
        table.append({**r, "width": widths[r["model"]], "score": mean_sd(r, "bits_per_token"),
                      "valid": mean_sd(r, "valid_bits_per_token"),
                      "nats": r["bits_per_token"] * math.log(2)})
    by_name = {r["model"]: r for r in rows}
    tests = {f"{a} vs {b}": {**welch(seed_scores(by_name[a]), seed_scores(by_name[b])),
                             "beyond_noise": None}
             for a, b in PAIRS if a in by_name and b in by_name
             and len(seed_scores(by_name[a])) > 1 and len(seed_scores(by_name[b])) > 1}
    for t in tests.values():
        t["beyond_noise"] = t["p"] < 0.05
    has_test = any(r.get("test_bits_per_token") is not None for r in rows)
    return markdown_table(table, columns(has_test)), tests


def retable(name: str) -> None:
    """Rewrite ``NAME.md`` and the table and tests in ``results_NAME.json`` from the rows
    already recorded there (no work folder needed: for a change to the table's layout)."""
    path = HERE / f"results_{name}.json"
    results = json.loads(path.read_text())
    md, tests = render(results["rows"], results["widths"])
    write_results(path, {**results, "table": md, "seed_tests": tests})
    (HERE / f"{name}.md").write_text(md + "\n")
    print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path, help="the compare folder run.sh wrote")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows recorded earlier under this name for other models")
    p.add_argument("--retable", action="store_true",
                   help="only rebuild the table of results_NAME.json (WORK names NAME)")
    args = p.parse_args()
    name = args.work.name
    if args.retable:
        return retable(name)
    board = json.loads((args.work / "leaderboard.json").read_text())
    rows, widths, commands = board["rows"], {}, {}
    for r in rows:
        first = Path(r["seeds"][0]["run"] if "seeds" in r else r["run"])
        widths[r["model"]] = width_of(first)
        commands[r["model"]] = " ".join(
            json.loads((first / "config.json").read_text())["command"])
    if args.merge:
        old = json.loads((HERE / f"results_{name}.json").read_text())
        new = {r["model"] for r in rows}
        kept = [r for r in old["rows"] if r["model"] not in new]
        widths = {**old["widths"], **widths}
        commands = {**{m: c for m, c in old["training_commands"].items() if m not in new},
                    **commands}
        rows = sorted(rows + kept, key=lambda r: r["bits_per_token"])
        board = {**board, "rows": rows}
    md, tests = render(rows, widths)
    write_results(HERE / f"results_{name}.json", {
        "benchmark": "seqlab compare, equal parameters (--params), seeds (--seeds), equal time",
        "training_commands": commands, "widths": widths, "seed_tests": tests, "table": md,
        **board})
    curves = f"curves_{name}-2.png" if args.merge else f"curves_{name}.png"
    shutil.copy(args.work / "learning_curves.png", HERE / curves)
    (HERE / f"{name}.md").write_text(md + "\n")
    print(md)
    for pair, t in tests.items():
        print(f"{pair}: {t['diff']:+.4f} bits/char (se {t['se']:.4f}, Welch p = {t['p']:.3f})"
              f"{' beyond the seed noise' if t['beyond_noise'] else ' within the seed noise'}")


if __name__ == "__main__":
    main()
