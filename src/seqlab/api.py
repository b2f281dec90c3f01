"""The Python API: the CLI's calls for notebooks and scripts.

    >>> import seqlab
    >>> run = seqlab.train("ngram", "input.txt", out="runs/ng", model={"order": 5})
    >>> run.scores[-1].bits_per_token                     # test split
    >>> model = seqlab.load("runs/ng")                    # any run folder or checkpoint
    >>> seqlab.evaluate("runs/ng", data="other.txt")      # the task's metrics
    >>> seqlab.sample(model, prompt="ROMEO:", length=200, seed=1)
    >>> seqlab.compare(["ngram", "lstm"], "input.txt", out="runs/cmp", max_minutes=1)

Every call goes through the same pipeline as the command line (`seqlab.experiment`), so a run
made here resumes, evaluates and serves from the CLI, and the other way round. Sections are
plain dicts with the config keys of the CLI (``model``, ``data``, ``train``, ``sample``);
unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.tasks.base import Scored, TaskData


@dataclass
class Trained:
    """What `train` returns: the best model, its scores on the held-out splits, the data."""

    model: Any
    scores: list[Scored]
    data: TaskData
    out: Path


def train(name: str, data: str | Path | None = None, *, out: str | Path,
          model: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
          data_config: dict[str, Any] | None = None, sample: dict[str, Any] | None = None,
          resume: bool = False) -> Trained:
    """Train model `name` (a registry name: ngram, lstm, seq2seq, kalman, ...) on the file
    `data` (default: the task's built-in data) into run folder `out`. `model`, `train`,
    `data_config` and `sample` are the config sections as dicts (the CLI's ``model.*``,
    ``train.*``, ``data.*`` and ``sample.*`` keys)."""
    from seqlab.experiment import resolve
    from seqlab.experiment import train as run_train

    raw: dict[str, Any] = {"model": {**(model or {}), "name": name},
                           "data": dict(data_config or {}), "train": dict(train or {}),
                           "sample": dict(sample or {})}
    if data is not None:
        raw["data"]["path"] = str(data)
    best, prepared, scores = run_train(resolve(raw), out, resume=resume)
    return Trained(best, scores, prepared, Path(out))


def load(path: str | Path) -> Any:
    """The best model of a run folder, or the model in a checkpoint file."""
    from seqlab.experiment import load_run

    return load_run(path)[0]


def evaluate(run: str | Path, *, data: str | None = None, split: str = "test") -> Scored:
    """Score a run with its task's metrics on a split of its data, or on the file `data`."""
    from seqlab.experiment import evaluate_run

    return evaluate_run(run, data=data, split=split)


def sample(model: Any, prompt: str = "", *, length: int = 200, seed: int = 0,
           **options: Any) -> str:
    """One sampled continuation of `prompt` from a language model (or its run folder);
    `options` are ``temperature``, ``top_k``, ``top_p``, ``greedy``."""
    from seqlab.config import from_dict
    from seqlab.sampling import SampleConfig, sample_text

    if isinstance(model, str | Path):
        model = load(model)
    cfg = from_dict(SampleConfig, {"prompt": prompt, "length": length, "seed": seed, **options},
                    prefix="sample.")
    return "".join(next(iter(sample_text(model, cfg))))


def compare(models: list[str] | str, data: str | Path | None = None, *, out: str | Path,
            max_minutes: float | None = None, max_steps: int | None = None,
            train: dict[str, Any] | None = None, data_config: dict[str, Any] | None = None
            ) -> list[dict[str, Any]]:
    """Train every spec (``"lstm:hidden=512"``) on the same data and budget; the leaderboard
    rows, best first (also saved in `out`)."""
    from seqlab import leaderboard as cmp
    from seqlab.config import from_dict
    from seqlab.run import TrainConfig, set_budget

    specs = cmp.parse_specs(models)
    task = cmp.task_of(specs)
    data_raw = {**(data_config or {}), **({"path": str(data)} if data else {})}
    train_raw = dict(train or {})
    set_budget(train_raw, max_minutes, max_steps)
    rows = cmp.compare(specs, from_dict(task.DataConfig, data_raw, prefix="data."),
                       from_dict(TrainConfig, train_raw, prefix="train."), out)
    return cmp.ranked(rows, task)
