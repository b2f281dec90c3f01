"""The generic pipeline behind the CLI, `seqlab compare` and the Python API.

One path for every task and family: resolve a config, let the task read and check its data
(before anything is written), open the run folder, build the model, fit it (the generic
`Trainer` for torch models, the family's own ``fit`` for counting and EM models), and score the
best checkpoint with the task's metrics. The pipeline, not the family, owns the run folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqlab import models, tasks
from seqlab.config import from_dict, to_dict
from seqlab.distributed import World, resolve_device, world
from seqlab.errors import SeqlabError
from seqlab.io import FORMAT_VERSION, read_json, write_json
from seqlab.run import Callback, Run, TrainConfig, trainer_only_keys
from seqlab.sampling import SampleConfig
from seqlab.tasks.base import BatchSource, Scored, Task, TaskData, Trainable
from seqlab.trainer import Trainer

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
    data: Any  # the task's DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    @property
    def task(self) -> Task:
        return tasks.for_model(self.model_name)

    def to_json(self) -> dict[str, Any]:
        train = to_dict(self.train)
        if not _trainable(self.model_name):  # store (and compare on resume) what it reads
            train = {k: v for k, v in train.items() if k not in trainer_only_keys()}
        return {"task": self.task.name, "model": {"name": self.model_name, **to_dict(self.model)},
                "data": to_dict(self.data), "train": train, "sample": to_dict(self.sample)}


def _trainable(model_name: str) -> bool:
    """Whether the torch trainer fits this model (else its own counting or EM does)."""
    cls, _ = models.resolve(model_name)
    return issubclass(cls, Trainable)  # the same test the pipeline applies to the instance


def resolve(raw: dict[str, Any], default_model: str = "lstm") -> Experiment:
    """Build an `Experiment` from nested dicts (config file + overrides); strict on keys."""
    unknown = sorted(set(raw) - {*SECTIONS, "task"})
    if unknown:
        raise SeqlabError(f"unknown config key {unknown[0]}; valid top-level keys: "
                          f"{', '.join(SECTIONS)}")
    for section in SECTIONS:
        if not isinstance(raw.get(section) or {}, dict):
            raise SeqlabError(f"{section}: expected a section of key: value pairs, got "
                              f"{raw[section]!r}")
    model_raw = dict(raw.get("model") or {})
    name = str(model_raw.pop("name", default_model))
    task = tasks.for_model(name)
    if raw.get("task") not in (None, task.name):
        raise SeqlabError(f"task: model {name} belongs to the {task.name} task, got "
                          f"task {raw['task']!r}")
    train = from_dict(TrainConfig, raw.get("train"), prefix="train.")
    if not _trainable(name):
        ignored = sorted(set(raw.get("train") or {}) & trainer_only_keys())
        if ignored:
            raise SeqlabError(f"train.{ignored[0]} has no effect on {name}, which is fitted by "
                              "its own counting or EM; only the budget keys apply (max_steps, "
                              "max_minutes, seed, ...)")
    if train.select_metric not in (None, *task.metrics):
        raise SeqlabError(f"train.select_metric: expected one of {', '.join(task.metrics)} (what "
                          f"the {task.name} task's validation reports), got "
                          f"{train.select_metric!r}")
    return Experiment(
        model_name=name,
        model=models.make_config(name, model_raw),
        data=from_dict(task.DataConfig, raw.get("data"), prefix="data."),
        train=train,
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


def _stored_config(out: Path) -> dict[str, Any]:
    stored = read_json(out / "config.json")
    if not isinstance(stored, dict):
        raise SeqlabError(f"{out / 'config.json'}: expected a JSON object, got "
                          f"{type(stored).__name__}")
    return stored


def check_out(exp: Experiment, out: Path, resume: bool) -> None:
    """Check that `out` can take this run, writing nothing: a new folder (or an empty one), or
    with --resume the same run, with a checkpoint to continue from."""
    if out.exists() and not out.is_dir():
        raise SeqlabError(f"{out}: expected a run folder, got an existing file; choose another "
                          "--out")
    if not (out / "config.json").exists():
        if resume:
            raise SeqlabError(f"{out}: expected a run folder to resume, got no config.json there")
        if out.exists() and any(p.name != ".lock" for p in out.iterdir()):
            raise SeqlabError(f"{out} exists and is not a seqlab run folder; choose another "
                              "--out")
        return
    stored = _stored_config(out)
    if not resume:
        raise SeqlabError(
            f"{out} already holds a run (model {stored.get('model', {}).get('name', '?')}); "
            "pass --resume to continue it, or choose another --out")
    # Resolve the stored config too, so keys added to seqlab since it was written compare by
    # their defaults.
    then = resolve(_readable(stored)).to_json()
    old, new = (_flatten({s: cfg[s] for s in SECTIONS[:3]}) for cfg in (then, exp.to_json()))
    changed = sorted(k for k in old.keys() | new.keys()
                     if k not in RESUMABLE and old.get(k) != new.get(k))
    if changed:
        k = changed[0]
        raise SeqlabError(f"{out} holds a different run: {k} is {old.get(k)!r} there, "
                          f"{new.get(k)!r} now; only train.max_steps/max_minutes may change "
                          "on --resume")
    if not (out / "last.safetensors").exists():
        raise SeqlabError(f"{out}: expected last.safetensors to resume from, found none (a "
                          "counting or EM model finishes in one call: there is nothing to resume)")


def stored_sections(out: str | Path) -> dict[str, Any]:
    """The config sections of the run in `out` (empty when there is none): what ``train
    --resume`` starts from, so that only the keys that change need repeating. The budgets of
    one invocation (``train.max_minutes``, ``train.stop_at_step``) are not carried over."""
    out = Path(out)
    if not (out / "config.json").is_file():
        return {}
    raw = _readable(_stored_config(out))
    for key in ("max_minutes", "stop_at_step"):
        raw["train"].pop(key, None)
    return raw


def _readable(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config's sections, without the trainer keys that older versions stored for
    counting and EM models."""
    raw = {s: dict(stored.get(s) or {}) for s in SECTIONS}
    name = raw["model"].get("name", "lstm")
    if name in tasks.model_table() and not _trainable(name):
        raw["train"] = {k: v for k, v in raw["train"].items() if k not in trainer_only_keys()}
    return raw


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on run folder `out` (created if needed) while training, so a
    second process gets a one-line error instead of interleaving checkpoints and metrics."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SeqlabError(f"{out} is in use by another seqlab process; wait for it to "
                              "finish or choose another --out") from None
        yield
    finally:
        os.close(fd)


def train(exp: Experiment, out: str | Path, *, resume: bool = False,
          callbacks: list[Callback] | None = None, command: list[str] | None = None,
          log: Any = None) -> tuple[Any, TaskData, list[Scored]]:
    """Train `exp` into run folder `out`; return the best model, the data and final scores.

    The data is read and checked before the run folder is created, so bad input leaves
    nothing behind and the same ``--out`` works on the next try.
    """
    out, task, w = Path(out), exp.task, world()
    if w.distributed and not _trainable(exp.model_name):
        raise SeqlabError(f"{exp.model_name} is fitted by counting or EM in one process; run it "
                          "without torchrun or --nproc (several processes would repeat it)")
    if not w.writer:
        return _follow(exp, out, w, resume)
    # The outermost folder this call creates: removed again if the run never starts.
    created = next((p for p in [*reversed(out.parents), out] if not p.exists()), None)
    try:
        check_out(exp, out, resume)
        with _workdir(out) as workdir:
            vocab = task.load_vocab(out / "vocab.json") if resume else None
            data = task.prepare(exp.data, workdir, vocab, exp.model)
            warn_unknowns(task, data.vocab, {s: data.split(s) for s in ("valid", "test")},
                          data.split("train"), log)
            model = build_seeded(exp, data.vocab)
            # Batches are cut before the run folder exists too: too little data is bad input.
            batches = (task.batches(data, exp.data, exp.train, w)
                       if isinstance(model, Trainable) else None)
            with locked(out):
                check_out(exp, out, resume)  # again, under the lock
                for stale in out.glob(".*.tmp"):  # left by a process killed mid-write
                    stale.unlink()
                if workdir != out / "data":
                    os.replace(workdir, out / "data")
                run = _open_run(exp, out, resume, command, callbacks)
                task.save_vocab(data.vocab, out / "vocab.json")
                w.broadcast(None)  # the run folder is ready: the other ranks may read it
                print(f"training {exp.model_name} on {task.describe_data(data)} into {out}"
                      + (f" ({w.size} processes)" if w.distributed else ""),
                      file=log or sys.stderr)
                fit(task, model, data, run, batches, w)
                best, scores = score_best(task, exp.model_name, run, data)
        w.barrier()  # the other ranks wait for the scores: none leaves the group early
    except BaseException as e:
        if created is not None and not (out / "config.json").exists():
            shutil.rmtree(created, ignore_errors=True)  # no run was written: leave no trace
        if w.distributed and not (out / "config.json").exists():
            w.broadcast(str(e) or type(e).__name__)  # the other ranks wait for the run folder
        raise
    return best, data, scores


def _follow(exp: Experiment, out: Path, w: World, resume: bool) -> tuple[Any, TaskData,
                                                                          list[Scored]]:
    """A rank other than 0: wait until rank 0 has checked the data and opened the run, then
    train beside it on its own shard; it writes nothing."""
    failed = w.broadcast(None)
    if failed:
        raise SeqlabError(f"rank 0 could not start the run: {failed}")
    task = exp.task
    data = task.prepare(exp.data, out / "data", task.load_vocab(out / "vocab.json"), exp.model)
    model = build_seeded(exp, data.vocab)
    run = Run(train=exp.train, dir=out, resume=resume, writer=False)
    fit(task, model, data, run, task.batches(data, exp.data, exp.train, w), w)
    # Leaving the process group while rank 0 still scores aborted a gloo rank ("terminate
    # called without an active exception"): wait for it.
    w.barrier()
    return model, data, []


@contextmanager
def _workdir(out: Path) -> Iterator[Path]:
    """Where the task may cache prepared data: the run's own ``data/`` on resume, else a
    temporary sibling that becomes ``data/`` once the run folder exists."""
    if (out / "config.json").exists():
        yield out / "data"
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.data-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when it became data/


def _open_run(exp: Experiment, out: Path, resume: bool, command: list[str] | None,
              callbacks: list[Callback] | None) -> Run:
    write_json(out / "config.json", {"format_version": FORMAT_VERSION, **exp.to_json(),
                                     "command": command or []})
    return Run(train=exp.train, dir=out, resume=resume, callbacks=list(callbacks or []))


def fit(task: Task, model: Any, data: TaskData, run: Run, batches: BatchSource | None,
        w: World | None = None) -> None:
    """Fit `model` on the task's training split: torch models through the generic trainer on
    `batches`, counting and EM models through their own ``fit``; the best model ends in the run
    folder."""
    if batches is not None:
        trainer = Trainer(run, metric=task.metric, mode=task.mode, world=w)
        trainer.fit(model, batches, task.validate(model, data))
        return
    X, lengths, valid = task.estimator_inputs(data)
    model.fit(X, lengths, valid=valid, run=run)
    if run.best_path is not None:
        model.save(run.best_path)  # a fitted estimator has no "last": it is the best


def build_seeded(exp: Experiment, vocab: Any) -> Any:
    """The experiment's model, its initial weights depending on train.seed alone."""
    torch.manual_seed(exp.train.seed)
    return models.build(exp.model_name, vocab, to_dict(exp.model))


def score_best(task: Task, name: str, run: Run, data: TaskData) -> tuple[Any, list[Scored]]:
    """Reload the run's best checkpoint and score it on the valid and test splits (logged)."""
    assert run.best_path is not None
    best = models.load(run.best_path)
    best.name = name
    scores = [task.evaluate(best, data.split(s), split_name=s, name=name)
              for s in ("valid", "test") if len(data.split(s))]
    for e in scores:
        run.log({"kind": "final", **e.as_dict()})
    return best, scores


# --- reloading -------------------------------------------------------------------------------
def load_run(run_dir: str | Path, device: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The best model of a run folder (or a checkpoint file) and its stored config; a torch
    model goes to `device` (``auto``, ``cpu``, ``cuda``...; default: where it loads, the CPU).
    Checkpoints hold CPU tensors, so a run trained on a GPU loads anywhere."""
    model, config = _load_run(Path(run_dir))
    if device is not None and isinstance(model, torch.nn.Module):
        model.to(resolve_device(device))
    return model, config


def _load_run(path: Path) -> tuple[Any, dict[str, Any]]:
    if path.is_file():
        return models.load(path), {}
    if not path.is_dir():
        raise SeqlabError(f"{path}: run folder not found")
    ckpt = path / "best.safetensors"
    if not ckpt.exists():
        ckpt = path / "last.safetensors"
    if not ckpt.exists():
        raise SeqlabError(f"{path}: expected a run folder with best.safetensors, found none")
    config = _stored_config(path) if (path / "config.json").exists() else {}
    model = models.load(ckpt)
    name = config.get("model", {}).get("name")
    if name is not None:
        cls: Any = models.resolve(name)[0]
        if not isinstance(model, cls):
            raise SeqlabError(f"{ckpt}: expected a {cls.family} checkpoint for the run's model "
                              f"{name}, got a {model.family} checkpoint")
        model.name = name
    return model, config


def task_of(model: Any, config: dict[str, Any]) -> Task:
    """The task that made a run: from its config, else from the checkpoint's model name or
    family."""
    name = config.get("model", {}).get("name") or getattr(model, "name", "")
    if name in tasks.model_table():
        return tasks.for_model(name)
    return tasks.for_family(model.family)


def evaluate_run(run_dir: str | Path, *, data: str | None = None, split: str = "test",
                 device: str | None = None) -> Scored:
    """Score a trained run with its task's metrics, on a split of its own data or on `data`."""
    model, config = load_run(run_dir, device)
    task = task_of(model, config)
    name = model.name or model.family
    if data is not None:
        with tempfile.TemporaryDirectory() as tmp:
            examples = task.read_eval_file(model, data, Path(tmp))
            warn_unknowns(task, getattr(model, "vocab", None), {data: examples})
            return task.evaluate(model, examples, split_name=data, name=name)
    if not config:
        raise SeqlabError(f"{run_dir}: a bare checkpoint has no data of its own; pass --data")
    cfg: Any = from_dict(task.DataConfig, config["data"], prefix="data.")
    prepared = task.prepare(cfg, Path(run_dir) / "data", getattr(model, "vocab", None),
                            getattr(model, "config", None))
    examples = prepared.split(split)
    if len(examples) == 0:
        raise SeqlabError(f"{run_dir}: the {split} split is empty; pass --split or --data")
    warn_unknowns(task, prepared.vocab, {split: examples}, prepared.split("train"))
    return task.evaluate(model, examples, split_name=split, name=name)


def warn_unknowns(task: Task, vocab: Any, splits: dict[str, Any], train: Any = None,
                  log: Any = None) -> None:
    """Print the task's unknown-token warnings (`seqlab.data.unknown`), if it has any: a line
    when more than 5% of a split's tokens are ``<unk>``, with the level that would fix it."""
    check = getattr(task, "unknown_warnings", None)  # optional: tasks without a vocabulary
    if check is None or vocab is None:
        return
    for line in check(vocab, splits, train):
        print(line, file=log or sys.stderr)


def predict_run(run_dir: str | Path, inputs: list[str], *, device: str | None = None,
                **options: Any) -> list[Any]:
    """The task's predictions for raw inputs (continuations, translations, tags...)."""
    model, config = load_run(run_dir, device)
    return task_of(model, config).predict(model, inputs, **options)
