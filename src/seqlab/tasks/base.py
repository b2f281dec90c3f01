"""The contracts between a task, its models, its batches and the one training loop.

A *task* is a kind of problem: language modelling, translation, tagging, trees, music. It owns
its data config, reads and checks the data (before any run folder exists), cuts batches, and
scores models with its own metrics. The generic pipeline (`seqlab.experiment`) and the generic
`seqlab.trainer.Trainer` only talk to these protocols, so a new task is one new module plus one
line in `seqlab.tasks.TASKS`::

    class MyTask:                                   # follows `Task`
        name = "mine"
        DataConfig = MyDataConfig                   # the `data` section; path, batch_size, ...
        models = {"my-lstm": ("head", {...})}       # model names it offers: family + preset
        metric, mode = "accuracy", "max"            # what picks best.safetensors
        def prepare(self, cfg, workdir, vocab=None, model=None) -> MyData: ...
        ...

Everything here is a `typing.Protocol`: nothing has to inherit from it, and a type checker
verifies that each task, model and batch source fits. `JsonVocabFile` alone is a default to
inherit: `Task.save_vocab`/`load_vocab` for a vocabulary that writes itself as JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch

from seqlab.io import read_json, write_json

if TYPE_CHECKING:
    from seqlab.distributed import World
    from seqlab.run import TrainConfig

Metrics = dict[str, float]  # named validation metrics, e.g. {"bits_per_token": 1.9}
State = Any  # what a model carries between steps or batches; only the model looks inside


@runtime_checkable
class BatchSource(Protocol):
    """An endless, resumable stream of training batches.

    ``next()`` returns a batch and whether it starts a new pass over the data (the trainer then
    starts from a fresh model state). The position is a small dict of integers, saved in every
    checkpoint so a resumed run reads exactly the batches an uninterrupted one would. A source
    that is built with ``rank``/``world_size`` reads only its shard of the data.
    """

    @property
    def batch_size(self) -> int: ...  # rows per batch: the trainer starts this many fresh states

    def next(self) -> tuple[Any, bool]: ...

    def tokens_per_batch(self) -> int: ...

    def state_dict(self) -> dict[str, int]: ...

    def load_state_dict(self, d: Mapping[str, int]) -> None: ...


@runtime_checkable
class Trainable(Protocol):
    """What `seqlab.trainer.Trainer` needs of a model (a torch ``nn.Module``)."""

    def parameters(self, recurse: bool = True) -> Iterable[torch.nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def configure_optimizer(self, cfg: TrainConfig) -> torch.optim.Optimizer: ...

    def initial_state(self, batch_size: int = 1) -> State: ...

    def training_loss(self, batch: Any, state: State) -> tuple[torch.Tensor, State]:
        """Mean loss of one batch (in nats for likelihood models) and the state to carry."""
        ...

    def state_tensors(self, state: State) -> list[torch.Tensor]:
        """The carried state as tensors, for a checkpoint (``[]`` for none)."""
        ...

    def state_from_tensors(self, tensors: list[torch.Tensor]) -> State: ...

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON metadata that rebuild the model (``models.load`` reads them)."""
        ...

    def load_checkpoint(self, tensors: Mapping[str, torch.Tensor]) -> None: ...


@runtime_checkable
class Scored(Protocol):
    """A task's evaluation result: a row for tables and ``--json``."""

    model: str
    split: str
    seconds: float

    def as_dict(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


@runtime_checkable
class TaskData(Protocol):
    """A task's prepared data: the vocabulary (whatever the task uses) and three splits."""

    vocab: Any

    def split(self, name: str) -> Any: ...


@runtime_checkable
class Task(Protocol):
    """A kind of problem; see the module docstring."""

    name: ClassVar[str]
    DataConfig: ClassVar[type]
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]]  # name -> (family, preset)
    metric: ClassVar[str]  # validation metric that selects best.safetensors
    metrics: ClassVar[tuple[str, ...]]  # every metric its validation reports
    mode: ClassVar[str]  # "min" or "max"

    def prepare(self, cfg: Any, workdir: Path, vocab: Any = None, model: Any = None
                ) -> TaskData:
        """Read and check the data, build the vocabulary unless given; raise `SeqlabError`
        naming the file and line for bad input. `workdir` may hold caches (token ids); `model`
        is the model's config, for tasks whose checks depend on it (maximum lengths)."""
        ...

    def save_vocab(self, vocab: Any, path: Path) -> None: ...

    def load_vocab(self, path: Path) -> Any: ...

    def batches(self, data: TaskData, cfg: Any, train: TrainConfig, world: World) -> BatchSource:
        """Training batches of `data`, cut as the data config `cfg` and `train` say; under
        several processes, this rank's share of each global batch (see `seqlab.distributed`)."""
        ...

    def estimator_inputs(self, data: TaskData) -> tuple[Any, Any, Any]:
        """``(X, lengths, valid)`` for models fitted by their own ``fit`` (counting, EM)."""
        ...

    def validate(self, model: Any, data: TaskData) -> Callable[[], Metrics] | None:
        """The validation callable handed to the trainer (None without a validation split)."""
        ...

    def evaluate(self, model: Any, split: Any, *, split_name: str, name: str) -> Scored: ...

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> Any:
        """Any file, encoded with the model's vocabulary, for ``seqlab eval --data``."""
        ...

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[Any]:
        """Outputs for raw inputs (one string each): text, tags, a translation..."""
        ...

    def describe_data(self, data: TaskData) -> str:
        """One line for the log: how much data, how large the vocabulary."""
        ...

    def add_commands(self, sub: argparse._SubParsersAction) -> dict[str, Callable[..., int]]:
        """The task's own CLI subcommands (e.g. ``translate``); ``{}`` for none."""
        ...


class JsonVocab(Protocol):
    """A vocabulary that writes itself as JSON (`Vocab`, `PairVocab`, `TagVocab`, ...)."""

    def to_json(self) -> Any: ...

    @classmethod
    def from_json(cls, obj: Any) -> Any: ...


class JsonVocabFile:
    """`Task.save_vocab` and `load_vocab` for a task whose vocabulary class follows `JsonVocab`:
    the file holds ``to_json()``. The class is named where the task inherits this::

        class Translation(JsonVocabFile, vocab=PairVocab): ...
    """

    Vocab: ClassVar[type[JsonVocab]]

    def __init_subclass__(cls, *, vocab: type[JsonVocab] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if vocab is not None:  # a subclass of a task keeps its parent's vocabulary class
            cls.Vocab = vocab

    def save_vocab(self, vocab: JsonVocab, path: Path) -> None:
        write_json(path, vocab.to_json())

    def load_vocab(self, path: Path) -> Any:
        return self.Vocab.from_json(read_json(path))
