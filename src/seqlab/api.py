"""The Python API: the CLI's calls for notebooks and scripts.

    >>> import seqlab
    >>> run = seqlab.train("ngram", data="input.txt", out="runs/ng", model={"order": 5})
    >>> run.scores[-1].bits_per_token                     # test split
    >>> model = seqlab.load("runs/ng")                    # any run folder or checkpoint
    >>> seqlab.evaluate("runs/ng", data="other.txt")      # the task's metrics
    >>> seqlab.sample(model, prompt="ROMEO:", length=200, seed=1)
    >>> seqlab.compare(["ngram", "lstm"], data="input.txt", out="runs/cmp", max_minutes=1)

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


def train(model: str, *, data: str | None = None, out: str | Path, resume: bool = False,
          **sections: dict[str, Any]) -> Trained:
    """Train model `model` (a registry name: ngram, lstm, seq2seq, kalman, ...) on `data` into
    run folder `out`. `sections` are ``model=``, ``data=``, ``train=`` and ``sample=`` dicts."""
    from seqlab.experiment import resolve, train as run_train

    raw: dict[str, Any] = {k: dict(v) for k, v in sections.items()}
    raw.setdefault("model", {})["name"] = model
    if data is not None:
        raw.setdefault("data", {})["path"] = str(data)
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


def compare(models: list[str] | str, *, data: str | None = None, out: str | Path,
            max_minutes: float | None = None, max_steps: int | None = None,
            **sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Train every spec (``"lstm:hidden=512"``) on the same data and budget; the leaderboard
    rows, best first (also saved in `out`)."""
    from seqlab import compare as cmp
    from seqlab.config import from_dict
    from seqlab.train import TrainConfig

    specs = cmp.parse_specs(models)
    task = cmp.task_of(specs)
    data_raw = {**sections.get("data", {}), **({"path": str(data)} if data else {})}
    train_raw = dict(sections.get("train", {}))
    if max_minutes is not None:
        train_raw.update(max_minutes=max_minutes, max_steps=max_steps or 10**9)
    elif max_steps is not None:
        train_raw["max_steps"] = max_steps
    rows = cmp.compare(specs, from_dict(task.DataConfig, data_raw, prefix="data."),
                       from_dict(TrainConfig, train_raw, prefix="train."), out)
    return cmp.ranked(rows, task)
