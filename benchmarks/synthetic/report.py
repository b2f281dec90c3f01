"""Collect benchmarks/synthetic/results/*.json into the README table and synthetic_curves.png.

    .venv/bin/python -m benchmarks.synthetic.report
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table

HERE = Path(__file__).parent
ORDER = {"rnn": 0, "lstm": 1, "gru": 2, "tcn": 3}
NAMES = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU", "tcn": "TCN"}


def load() -> list[dict[str, Any]]:
    rows = [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("*.json"))]
    return sorted(rows, key=lambda r: (r["task"], r["T"], ORDER.get(r["model"], 9)))


def table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        copy = r["task"] == "copy"
        out.append({
            "task": f"{'copy memory' if copy else 'adding'} T={r['T']}",
            "model": NAMES.get(r["model"], r["model"]), "parameters": r["parameters"],
            "steps": r["steps"], "epochs": r["epochs"], "minutes": r["seconds"] / 60,
            "ours": r["ce_all"] if copy else r["mse"], "paper": r["paper"],
            "baseline": r["baseline"]["ce_all" if copy else "mse"],
            "last10": r.get("ce_last10"), "acc": r.get("acc_last10")})
    return markdown_table(out, [
        ("task", "task", "s"), ("model", "model", "s"), ("parameters", "params", ",d"),
        ("steps", "steps", ",d"), ("epochs", "epochs", ".2f"), ("minutes", "minutes", ".1f"),
        ("ours", "test loss (ours)", ".3g"), ("paper", "Bai et al. Table 1", ".3g"),
        ("baseline", "memoryless baseline", ".3g"), ("last10", "copy: CE last 10", ".3g"),
        ("acc", "copy: accuracy last 10", ".3f")])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["task"], r["T"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (task, T) in zip(axes[0], panels, strict=True):
        key = "mse" if task == "adding" else "ce_all"
        for r in (r for r in rows if (r["task"], r["T"]) == (task, T)):
            pts = [(p["step"], p[key]) for p in r["curve"]]
            if pts:
                ax.semilogy(*zip(*pts, strict=True), label=NAMES.get(r["model"], r["model"]))
            base = r["baseline"][key]
        ax.axhline(base, color="grey", ls="--", lw=0.8, label="memoryless baseline")
        ax.set_title(f"{'copy memory' if task == 'copy' else 'adding problem'} T={T}")
        ax.set_xlabel("training step (batch 32)")
        ax.set_ylabel("test MSE" if task == "adding" else "test cross-entropy (all steps)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    rows = load()
    text = table(rows)
    readme = HERE / "README.md"
    body = readme.read_text()
    body = re.sub(r"<!-- results -->.*<!-- /results -->",
                  lambda _: f"<!-- results -->\n{text}\n<!-- /results -->", body, flags=re.S)
    readme.write_text(body)
    plot(rows, HERE / "synthetic_curves.png")
    print(text)


if __name__ == "__main__":
    main()
