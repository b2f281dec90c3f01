"""The family registry: each model family's class, found by the name in its checkpoints.

A family module defines a class following `seqlab.protocol` with a ``Config`` dataclass and a
``from_checkpoint`` classmethod; registering it here makes its checkpoints loadable everywhere.
Which model names (``--model lstm``) build it, with which preset, is declared by the tasks
(`seqlab.tasks`). Nothing else branches on the model type.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from seqlab.config import from_dict, merged
from seqlab.errors import SeqlabError

# family -> "module:Class"; the model names that use a family are declared by the tasks
# (`seqlab.tasks`), so the same family can serve several tasks.
FAMILIES: dict[str, str] = {
    "ngram": "seqlab.models.ngram:NGramLM",
    "recurrent": "seqlab.models.recurrent:RecurrentLM",
    "hmm": "seqlab.models.hmm:HMMLM",
    "window": "seqlab.models.window:WindowLM",
    "conv": "seqlab.models.conv:ConvLM",
    "transformer": "seqlab.models.transformer:TransformerLM",
    "seq2seq": "seqlab.seq2seq.model:Seq2Seq",
    "head": "seqlab.models.heads:SequenceHead",
    "kalman": "seqlab.models.kalman:LinearGaussianSSM",
    "particle": "seqlab.models.particle:BootstrapParticleFilter",
    "tagger": "seqlab.models.tagger:SequenceTagger",
    "treenet": "seqlab.models.treenet:TreeNet",
    "music": "seqlab.models.music:MusicModel",
    "ntm": "seqlab.models.ntm:NTM",
    "im2seq": "seqlab.models.im2seq:Im2Seq",
    "audio": "seqlab.models.audio:WaveNetAudio",
}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


def family_class(family: str) -> Any:
    if family not in FAMILIES:
        raise SeqlabError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return _import(FAMILIES[family])


def names() -> list[str]:
    """Every model name a user can pass to ``--model``."""
    from seqlab import tasks

    return list(tasks.model_table())


def __getattr__(attr: str) -> Any:
    if attr == "MODELS":  # name -> (family, preset), read from the tasks
        from seqlab import tasks

        return {n: (fam, preset) for n, (_, fam, preset) in tasks.model_table().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def resolve(name: str) -> tuple[Any, dict[str, Any]]:
    """The family class and preset for a model name."""
    from seqlab import tasks

    table = tasks.model_table()
    if name not in table:
        raise SeqlabError(f"unknown model {name!r}; valid models: {', '.join(table)}")
    _, family, preset = table[name]
    return family_class(family), preset


def make_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The validated config dataclass for model `name` with `overrides` (model.* keys)."""
    cls, preset = resolve(name)
    try:
        return from_dict(cls.Config, merged(preset, overrides or {}), prefix="model.")
    except ValueError as e:
        raise SeqlabError(str(e) if str(e).startswith(("model.", "unknown")) else f"model: {e}"
                          ) from None


def build(name: str, vocab: Any, overrides: dict[str, Any] | None = None) -> Any:
    """A fresh, untrained model: ``Family.from_config(config, vocab)``."""
    cls, _ = resolve(name)
    model = cls.from_config(make_config(name, overrides), vocab)
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
