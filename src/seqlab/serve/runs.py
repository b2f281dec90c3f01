"""The runs a server answers for: loaded and checked once, before the server listens.

``seqlab serve runs/a runs/b`` serves each run under its folder's name; ``NAME=PATH`` picks the
name. Every path is loaded through `seqlab.experiment.load_run`, so a missing folder or a
corrupt checkpoint is the same one-line error as in ``seqlab eval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqlab.errors import SeqlabError
from seqlab.tasks.base import Task

# What each served task can answer, by endpoint (the playground reads this from /v1/models).
ENDPOINTS = {"lm": ("generate", "score", "completions"), "seq2seq": ("translate",),
             "tagging": ("tag",)}
# Every other task answers /predict, except those whose predict inputs name files on the
# server's disk (a client must not choose which files the server reads) or that write files.
NO_PREDICT = {"image2seq", "audio"}


@dataclass
class Served:
    """One loaded run: its model, stored config and task."""

    name: str
    path: str
    model: Any
    config: dict[str, Any]
    task: Task
    endpoints: tuple[str, ...] = field(default=())

    def describe(self) -> dict[str, Any]:
        """The run as a `/v1/models` entry (OpenAI's fields plus seqlab's own)."""
        cfg = getattr(self.model, "config", None)
        out: dict[str, Any] = {
            "id": self.name, "object": "model", "created": 0, "owned_by": "seqlab",
            "task": self.task.name, "family": self.model.family,
            "model": getattr(self.model, "name", "") or self.model.family,
            "endpoints": list(self.endpoints), "path": self.path,
        }
        if self.model.family == "recurrent" and cfg is not None:
            out.update(cell=cfg.cell, layers=cfg.layers, hidden=cfg.hidden)
        return out


def parse_spec(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named after its folder or file stem)."""
    name, eq, path = spec.partition("=")
    if not eq:
        path = spec
        p = Path(spec.rstrip("/"))
        name = p.stem if p.suffix == ".safetensors" else p.name
    if not name or not path:
        raise SeqlabError(f"expected a run as PATH or NAME=PATH, got {spec!r}")
    return name, path


def load_runs(specs: Sequence[str], device: str | None = None) -> dict[str, Served]:
    """Load and check every run; the first problem is a one-line `SeqlabError`."""
    from seqlab.experiment import load_run, task_of
    from seqlab.models.recurrent import RecurrentLM

    if not specs:
        raise SeqlabError("serve: expected at least one run folder")
    runs: dict[str, Served] = {}
    for spec in specs:
        name, path = parse_spec(spec)
        if name in runs:
            raise SeqlabError(f"two runs are both called {name!r} ({runs[name].path} and "
                              f"{path}); name them with NAME=PATH")
        model, config = load_run(path, device)
        if isinstance(model, torch.nn.Module):
            model.eval()  # serving never trains: dropout off for every request
        task = task_of(model, config)
        endpoints = ENDPOINTS.get(task.name, ())
        if task.name not in NO_PREDICT:
            endpoints = (*endpoints, "predict")
        if isinstance(model, RecurrentLM):
            endpoints = (*endpoints, "inspect")
        runs[name] = Served(name, path, model, config, task, endpoints)
    return runs
