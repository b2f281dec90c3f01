"""A run folder and what a model's ``fit`` needs to know about it.

Layout of a run folder::

    RUN/
      config.json        resolved config (model, data, train), format version, command line
      vocab.json         the vocabulary
      best.safetensors   weights with the best validation bits/token (self-describing)
      last.safetensors   weights plus optimizer, schedule, RNG and data position (for --resume)
      metrics.jsonl      one JSON object per log line: training and evaluation records
      data/              the tokenised corpus (memmapped ids); safe to delete
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.io import atomic_open
from seqlab.train import Callback, TrainConfig


@dataclass
class Run:
    """Training budget, run folder and callbacks handed to ``model.fit``."""

    train: TrainConfig = field(default_factory=TrainConfig)
    dir: Path | None = None  # None: nothing is written to disk
    callbacks: list[Callback] = field(default_factory=list)
    resume: bool = False  # continue from dir/last.safetensors

    def __post_init__(self) -> None:
        if self.dir is not None:
            self.dir = Path(self.dir)
            self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def best_path(self) -> Path | None:
        return self.dir / "best.safetensors" if self.dir else None

    @property
    def last_path(self) -> Path | None:
        return self.dir / "last.safetensors" if self.dir else None

    @property
    def metrics_path(self) -> Path | None:
        return self.dir / "metrics.jsonl" if self.dir else None

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and pass it to the callbacks."""
        if self.metrics_path is not None:
            with self.metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")  # one write per line: appends stay whole
        for cb in self.callbacks:
            cb.on_log(record)

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step` (work lost after the last checkpoint, before a resume)."""
        path = self.metrics_path
        if path is None or not path.exists():
            return
        records = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln]
        keep = [json.dumps(r) for r in records
                if r.get("kind") != "final" and r.get("step", 0) <= step]
        with atomic_open(path, "w") as f:
            f.write("".join(ln + "\n" for ln in keep))
