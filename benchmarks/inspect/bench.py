"""Interpretable cells in an LSTM trained on the Python standard library's own source.

1. `corpus.py` concatenates ~3 MB of ASCII stdlib modules (`sysconfig`'s stdlib, sorted);
2. an LSTM trains on it with one thread and a time budget (the command is in the README);
3. this script runs `seqlab.inspect` on held-out modules (the ones after the training cut):
   the best unit's absolute correlation with each tokenize feature (inside a string literal,
   inside a comment, bracket depth, indentation, column) and the gate saturation scatter.

Beside the single best unit (the target), it reports the best unit per signal (h, c, each
gate), two variants of the string feature (the literal's body without its quotes and prefix;
triple-quoted strings only), and a linear probe on all h and c units (least squares fitted on
the first half of the held-out text, its correlation measured on the second half): how much a
single unit leaves to a readout of the whole state.

    .venv/bin/python -m benchmarks.inspect.bench --run benchmarks/inspect/_work/run25
"""

from __future__ import annotations

import argparse
import io
import tokenize
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
from benchmarks.inspect.corpus import stdlib_source
from seqlab.io import read_json, write_json

HERE = Path(__file__).parent


def string_variants(text: str) -> dict[str, np.ndarray]:
    """``string_body``: inside a string literal, its quotes and prefix excluded;
    ``in_docstring``: inside a triple-quoted literal (quotes included)."""
    starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(text.encode(), np.uint8) == 10)
                             + 1])
    body, triple = np.zeros(len(text)), np.zeros(len(text))
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type != tokenize.STRING:
            continue
        a = int(starts[tok.start[0] - 1]) + tok.start[1]
        b = int(starts[tok.end[0] - 1]) + tok.end[1]
        s = tok.string
        lead = len(s) - len(s.lstrip("rRbBuUfF"))  # the prefix
        q = 3 if s[lead:lead + 3] in ('"""', "'''") else 1
        body[a + lead + q:b - q] = 1
        if q == 3:
            triple[a:b] = 1
    return {"string_body": body, "in_docstring": triple}


def probe(acts: dict[str, Any], feat: np.ndarray) -> float:
    """Correlation, on the second half, of a least-squares readout of every h and c unit
    fitted on the first half."""
    x = np.concatenate([layer[s] for layer in acts["layers"] for s in ("h", "c") if s in layer],
                       1)
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    half = len(x) // 2
    w = np.linalg.lstsq(x[:half], feat[:half], rcond=None)[0]
    return float(np.corrcoef(x[half:] @ w, feat[half:])[0, 1])


def main() -> None:
    from seqlab.experiment import load_run
    from seqlab.inspect import (
        activations,
        features,
        plot_saturation,
        plot_units,
        read_text,
        report,
        unit_correlations,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=str(HERE / "_work" / "run25"))
    p.add_argument("--train-mb", type=float, default=3.0, help="the corpus size trained on")
    p.add_argument("--chars", type=int, default=60_000, help="held-out characters analysed")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()
    held = stdlib_source(args.chars, skip_bytes=int(args.train_mb * 2**20))
    work = HERE / "_work"
    work.mkdir(exist_ok=True)
    data = work / "held_out.py"
    data.write_text(held, encoding="ascii")
    text = read_text(str(data), args.chars)
    model, _ = load_run(args.run)
    kind, feats = features(text, "code")
    acts = activations(model, text)
    rep = {"run": str(args.run), "data": str(data), **report(acts, kind, feats)}
    write_json(work / "inspect.json", rep)
    plot_saturation(rep, HERE / "inspect_saturation.png")
    plot_units(acts, feats, rep, HERE / "inspect_units.png")

    extra = {**feats, **string_variants(text)}
    corr = unit_correlations(acts, extra)  # per layer, per signal, per feature: (H,)
    signals = list(corr[0])
    rows = []
    for f in extra:
        best = max(((abs(float(r)), li + 1, s, int(u)) for li, layer in enumerate(corr)
                    for s, per in layer.items() for u, r in enumerate(per[f])),
                   key=lambda t: t[0])
        row: dict[str, Any] = {"feature": f, "abs_r": best[0],
                               "best": f"layer {best[1]} {best[2]}[{best[3]}]",
                               "probe_r": probe(acts, extra[f])}
        for s in signals:
            row[f"abs_r_{s}"] = max(float(np.abs(layer[s][f]).max()) for layer in corr)
        rows.append(row)
    cfg_path = Path(args.run) / "config.json"
    cfg = read_json(cfg_path) if cfg_path.exists() else {}
    cols = [("feature", "feature", ""), ("abs_r", "best unit |r|", ".3f"), ("best", "unit", ""),
            *[(f"abs_r_{s}", f"best {s}", ".3f") for s in signals],
            ("probe_r", "linear probe r", ".3f")]
    print(markdown_table(rows, cols))
    print(f"held-out surprise: {rep['mean_surprise_bits']:.3f} bits/char over {rep['tokens']} "
          f"characters")
    sat = {f"layer {li + 1} {g}": {"left_mean": float(np.mean(d["left"])),
                                   "right_mean": float(np.mean(d["right"])),
                                   "units_right_over_half": int(np.sum(np.array(d["right"])
                                                                       > 0.5)),
                                   "units_left_over_half": int(np.sum(np.array(d["left"])
                                                                      > 0.5))}
           for li, layer in enumerate(rep["saturation"]) for g, d in layer.items()}
    write_results(Path(args.out), {"run": args.run, "config": cfg,
                                   "held_out_chars": rep["tokens"],
                                   "mean_surprise_bits": rep["mean_surprise_bits"],
                                   "rows": rows, "saturation_summary": sat,
                                   "best_units": rep["best_units"]})


if __name__ == "__main__":
    main()
