"""The task registry: each kind of problem seqlab solves, by name.

A task module defines one class following `seqlab.tasks.base.Task`; the line below that names
it is all the rest of seqlab needs. The CLI (`train`, `eval` and the task's own commands),
`seqlab compare`, the pipeline and the trainer then work for it unchanged. The model names a
task offers (``--model lstm``) are declared by the task itself.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from seqlab.errors import SeqlabError
from seqlab.tasks.base import Task

# name -> "module:Class"
TASKS: dict[str, str] = {
    "lm": "seqlab.tasks.lm:LanguageModeling",
    "seq2seq": "seqlab.tasks.seq2seq:Translation",
    "series": "seqlab.tasks.series:SeriesForecasting",
    "parity": "seqlab.tasks.parity:ParityTagging",
    "tagging": "seqlab.tasks.tagging:Tagging",
    "tree": "seqlab.tasks.trees:TreeTask",
    "music": "seqlab.tasks.music:PolyphonicMusic",
    "memory": "seqlab.tasks.memory:MemoryTask",
    "image2seq": "seqlab.tasks.image2seq:Image2Seq",
    "audio": "seqlab.tasks.audio:RawAudio",
}


@cache
def get(name: str) -> Task:
    """The task called `name` (an instance; tasks hold no state)."""
    if name not in TASKS:
        raise SeqlabError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def model_table() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Every model name: ``name -> (task, family, preset)``; names are unique across tasks."""
    table: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for task in TASKS:
        for model, (family, preset) in get(task).models.items():
            if model in table:
                raise AssertionError(f"model name {model!r} is offered by both "
                                     f"{table[model][0]} and {task}")
            table[model] = (task, family, preset)
    return table


def for_model(name: str) -> Task:
    """The task that offers model `name`."""
    table = model_table()
    if name not in table:
        raise SeqlabError(f"unknown model {name!r}; valid models: {', '.join(table)}")
    return get(table[name][0])


def for_family(family: str) -> Task:
    """The first task whose models use `family` (for a bare checkpoint without a name)."""
    for task, fam, _ in model_table().values():
        if fam == family:
            return get(task)
    raise SeqlabError(f"no task uses the {family} family")
