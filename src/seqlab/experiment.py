"""Library calls behind the CLI: resolve a config, train into a run folder, reload, evaluate.

The CLI only parses arguments and calls these; so do `seqlab.compare` and the demo.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqlab import models
from seqlab.config import from_dict, to_dict
from seqlab.data.corpus import Corpus, DataConfig, encode_for_eval, prepare
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.evaluate import Evaluation, evaluate
from seqlab.io import FORMAT_VERSION, read_json, write_json
from seqlab.run import Run
from seqlab.sampling import SampleConfig
from seqlab.train import Callback, TrainConfig

SECTIONS = ("model", "data", "train", "sample")
# Keys that may change when a run is resumed: budgets and cosmetics, nothing that alters results
# of the steps already taken.
RESUMABLE = {"train.max_steps", "train.max_minutes", "train.stop_at_step", "train.progress",
             "train.threads", "train.log_interval"}


@dataclass
class Experiment:
    """A fully resolved configuration: which model, on what data, trained how."""

    model_name: str
    model: Any  # the family's Config dataclass
    data: Any = field(default_factory=DataConfig)  # the task's DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_json(self) -> dict[str, Any]:
        return {"model": {"name": self.model_name, **to_dict(self.model)},
                "data": to_dict(self.data), "train": to_dict(self.train),
                "sample": to_dict(self.sample)}


def resolve(raw: dict[str, Any], default_model: str = "lstm") -> Experiment:
    """Build an `Experiment` from nested dicts (config file + overrides); strict on keys."""
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise SeqlabError(f"unknown config key {unknown[0]}; valid top-level keys: "
                          f"{', '.join(SECTIONS)}")
    model_raw = dict(raw.get("model") or {})
    name = str(model_raw.pop("name", default_model))
    task = models.task_module(models.resolve(name)[0])
    return Experiment(
        model_name=name,
        model=models.make_config(name, model_raw),
        data=from_dict(task.DataConfig, raw.get("data"), prefix="data."),
        train=from_dict(TrainConfig, raw.get("train"), prefix="train."),
        sample=from_dict(SampleConfig, raw.get("sample"), prefix="sample."),
    )


# --- run folders -----------------------------------------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def open_run(exp: Experiment, out: str | Path, *, resume: bool = False,
             command: list[str] | None = None) -> Run:
    """Create the run folder (or check that --resume continues the same run)."""
    out = Path(out)
    stored_path = out / "config.json"
    if stored_path.exists():
        stored = read_json(stored_path)
        if not resume:
            raise SeqlabError(
                f"{out} already holds a run (model {stored.get('model', {}).get('name', '?')}); "
                "pass --resume to continue it, or choose another --out")
        # Resolve the stored config too, so keys added to seqlab since it was written compare
        # by their defaults.
        then = resolve({s: stored.get(s, {}) for s in SECTIONS}).to_json()
        old, new = (_flatten({s: cfg[s] for s in SECTIONS[:3]}) for cfg in (then, exp.to_json()))
        changed = sorted(k for k in old.keys() | new.keys()
                         if k not in RESUMABLE and old.get(k) != new.get(k))
        if changed:
            k = changed[0]
            raise SeqlabError(f"{out} holds a different run: {k} is {old.get(k)!r} there, "
                              f"{new.get(k)!r} now; only train.max_steps/max_minutes may change "
                              "on --resume")
    elif resume:
        raise SeqlabError(f"{out}: expected a run folder to resume, got no config.json there")
    elif out.exists() and any(out.iterdir()):
        raise SeqlabError(f"{out} exists and is not a seqlab run folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(stored_path, {"format_version": FORMAT_VERSION, **exp.to_json(),
                             "command": command or []})
    return Run(train=exp.train, dir=out, resume=resume)


def train(exp: Experiment, out: str | Path, *, resume: bool = False,
          callbacks: list[Callback] | None = None, command: list[str] | None = None,
          log: Any = None) -> tuple[Any, Corpus, list[Evaluation]]:
    """Train `exp` into run folder `out`; return the best model, the data and final scores."""
    run = open_run(exp, out, resume=resume, command=command)
    run.callbacks = list(callbacks or [])
    vocab_path = run.dir / "vocab.json"
    vocab = Vocab.load(vocab_path) if resume and vocab_path.exists() else None
    corpus = prepare(exp.data, run.dir / "data", vocab=vocab)
    corpus.vocab.save(run.dir / "vocab.json")
    model = build_seeded(exp, corpus.vocab)
    print(f"training {exp.model_name} on {len(corpus.train):,} {exp.data.level} tokens "
          f"(vocabulary {len(corpus.vocab)}) into {run.dir}", file=log or sys.stderr)
    model.fit(corpus.train, valid=corpus.valid, run=run)
    best, scores = score_best(exp, run, corpus, evaluate)
    return best, corpus, scores


def build_seeded(exp: Experiment, vocab: Any) -> Any:
    """The experiment's model, its initial weights depending on train.seed alone."""
    torch.manual_seed(exp.train.seed)
    return models.build(exp.model_name, vocab, to_dict(exp.model))


def score_best(exp: Experiment, run: Run, data: Any,
               evaluate_fn: Callable[..., Any]) -> tuple[Any, list[Any]]:
    """Reload the run's best checkpoint and score it on the valid and test splits (logged)."""
    best = models.load(run.best_path)
    best.name = exp.model_name
    scores = [evaluate_fn(best, data.split(s), split=s, name=exp.model_name)
              for s in ("valid", "test") if len(data.split(s))]
    for e in scores:
        run.log({"kind": "final", **e.as_dict()})
    return best, scores


def task_for_run(run_dir: str | Path) -> Any:
    """The task module (see `seqlab.models.TASKS`) that made a run folder or checkpoint."""
    path = Path(run_dir)
    if path.is_dir() and (path / "config.json").exists():
        name = read_json(path / "config.json").get("model", {}).get("name", "")
        return models.task_module(models.resolve(name)[0])
    model, _ = load_run(path)
    return models.task_module(type(model))


def load_run(run_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """The best model of a run folder (or a checkpoint file) and its stored config."""
    path = Path(run_dir)
    if path.is_file():
        model = models.load(path)
        return model, {}
    if not path.is_dir():
        raise SeqlabError(f"{path}: run folder not found")
    ckpt = path / "best.safetensors"
    if not ckpt.exists():
        ckpt = path / "last.safetensors"
    if not ckpt.exists():
        raise SeqlabError(f"{path}: expected a run folder with best.safetensors, found none")
    config = read_json(path / "config.json") if (path / "config.json").exists() else {}
    model = models.load(ckpt)
    model.name = config.get("model", {}).get("name", model.name)
    return model, config


def evaluate_run(run_dir: str | Path, *, data: str | None = None, split: str = "test"
                 ) -> Evaluation:
    """Score a trained run on a split of its own data, or on another file (`data`)."""
    model, config = load_run(run_dir)
    if data is not None:
        with tempfile.TemporaryDirectory() as tmp:
            ids = encode_for_eval(data, model.vocab, tmp)
            result = evaluate(model, ids, split=data)
            del ids
            return result
    if not config:
        raise SeqlabError(f"{run_dir}: a bare checkpoint has no data of its own; pass --data")
    cfg = from_dict(DataConfig, config["data"], prefix="data.")
    corpus = prepare(cfg, Path(run_dir) / "data", vocab=model.vocab)
    ids = corpus.split(split)
    if len(ids) == 0:
        raise SeqlabError(f"{run_dir}: the {split} split is empty; pass --split or --data")
    return evaluate(model, ids, split=split)
