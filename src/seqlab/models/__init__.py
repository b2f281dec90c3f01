"""The model registry: names users type (``--model lstm``) mapped to family classes and presets.

A family module defines a class following `seqlab.protocol` with a ``Config`` dataclass and a
``from_checkpoint`` classmethod; registering it here makes it available to the CLI, evaluation,
sampling and comparison, which never branch on the model type.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from seqlab.config import from_dict
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError

# family -> "module:Class"
FAMILIES: dict[str, str] = {
    "ngram": "seqlab.models.ngram:NGramLM",
    "recurrent": "seqlab.models.recurrent:RecurrentLM",
    "hmm": "seqlab.models.hmm:HMMLM",
    "window": "seqlab.models.window:WindowLM",
    "conv": "seqlab.models.conv:ConvLM",
    "seq2seq": "seqlab.seq2seq.model:Seq2Seq",
}

# name -> (family, preset config values)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "ngram": ("ngram", {}),
    "rnn": ("recurrent", {"cell": "rnn"}),
    "lstm": ("recurrent", {"cell": "lstm"}),
    "gru": ("recurrent", {"cell": "gru"}),
    "hmm": ("hmm", {}),
    "window": ("window", {}),
    "tcn": ("conv", {"kind": "tcn"}),
    "wavenet": ("conv", {"kind": "wavenet"}),
    "seq2seq": ("seq2seq", {}),
}

# Each family class names its task ("lm" by default); a task module runs the whole pipeline
# (data preparation, training, evaluation) for that kind of problem.
TASKS: dict[str, str] = {"lm": "seqlab.experiment", "seq2seq": "seqlab.seq2seq.experiment"}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


def family_class(family: str) -> type:
    if family not in FAMILIES:
        raise SeqlabError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return _import(FAMILIES[family])


def task_module(cls: type) -> Any:
    """The pipeline module for a family class (``seqlab.experiment`` for language models)."""
    return _import(TASKS[getattr(cls, "task", "lm")])


def resolve(name: str) -> tuple[type, dict[str, Any]]:
    """The family class and preset for a model name."""
    if name not in MODELS:
        raise SeqlabError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    family, preset = MODELS[name]
    return family_class(family), preset


def make_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The validated config dataclass for model `name` with `overrides` (model.* keys)."""
    cls, preset = resolve(name)
    try:
        return from_dict(cls.Config, {**preset, **(overrides or {})}, prefix="model.")
    except ValueError as e:
        raise SeqlabError(str(e) if str(e).startswith(("model.", "unknown")) else f"model: {e}"
                          ) from None


def build(name: str, vocab: Vocab, overrides: dict[str, Any] | None = None) -> Any:
    """A fresh, untrained model."""
    cls, _ = resolve(name)
    model = cls(make_config(name, overrides), vocab)
    model.name = name
    return model


def load(path: str | Path) -> Any:
    """Load any seqlab model checkpoint (its family is read from the file)."""
    from seqlab.models.base import load_checkpoint_file

    tensors, meta = load_checkpoint_file(path)
    cls = family_class(meta["family"])
    try:
        return cls.from_checkpoint(tensors, meta)
    except SeqlabError as e:
        raise SeqlabError(f"{path}: {e}") from None
