"""Interpretable cells in an LSTM trained on the Python standard library's own source.

1. `corpus.py` concatenates ~3 MB of ASCII stdlib modules (`sysconfig`'s stdlib, sorted);
2. an LSTM trains on it with one thread and a time budget (the command is in the README);
3. this script runs ``seqlab.inspect`` on held-out modules (the ones after the training cut):
   the best unit's absolute correlation with each tokenize feature (inside a string literal,
   inside a comment, bracket depth, indentation, column) and the gate saturation scatter.

    .venv/bin/python -m benchmarks.inspect.bench --run benchmarks/inspect/_work/run25
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.common import markdown_table, write_results
from benchmarks.inspect.corpus import stdlib_source
from seqlab.io import read_json

HERE = Path(__file__).parent


def main() -> None:
    from seqlab.inspect import inspect_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=str(HERE / "_work" / "run25"))
    p.add_argument("--train-mb", type=float, default=3.0, help="the corpus size trained on")
    p.add_argument("--chars", type=int, default=60_000, help="held-out characters analysed")
    args = p.parse_args()
    held = stdlib_source(args.chars, skip_bytes=int(args.train_mb * 2**20))
    work = HERE / "_work"
    work.mkdir(exist_ok=True)
    data = work / "held_out.py"
    data.write_text(held, encoding="ascii")
    rep = inspect_run(args.run, str(data), out=work / "inspect", kind="code",
                      max_chars=args.chars)
    for png in ("inspect_saturation.png", "inspect_units.png"):
        shutil.copy(work / "inspect" / png, HERE / png)
    cfg = read_json(Path(args.run) / "config.json") if (Path(args.run) / "config.json").exists() \
        else {}
    rows = [{"feature": f, "abs_r": rep["best_abs_r"][f],
             "abs_r_states": rep["best_abs_r_states"][f],
             "best": "layer {layer} {signal}[{unit}]".format(**rep["best_units"][f][0])}
            for f in rep["best_units"]]
    print(markdown_table(rows, [("feature", "feature", ""), ("abs_r", "best |r|", ".3f"),
                                ("best", "unit", ""),
                                ("abs_r_states", "best |r|, h or c only", ".3f")]))
    print(f"held-out surprise: {rep['mean_surprise_bits']:.3f} bits/char over {rep['tokens']}")
    write_results(HERE / "results.json", {"run": args.run, "config": cfg,
                                          "held_out_chars": rep["tokens"], "rows": rows,
                                          "report": rep})


if __name__ == "__main__":
    main()
