"""Attention heatmaps as PNG: source tokens across, output tokens down, weight as colour."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqlab.io import atomic_write


def _label(tok: str) -> str:
    return "\u2423" if tok == " " else tok  # show a char-level space as an open box


def attention_png(weights: np.ndarray, source: Sequence[str], output: Sequence[str],
                  path: str | Path, title: str = "") -> None:
    """Write a heatmap of `weights` (len(output), len(source)) to `path`, atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    rows, cols = weights.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * cols + 2), max(3.0, 0.32 * rows + 1.5)))
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), [_label(t) for t in source], rotation=90, fontsize=8)
    ax.set_yticks(range(rows), [_label(t) for t in output], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
