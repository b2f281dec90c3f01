"""The part of a `data` section that every task shares: where the three splits come from and
how large the vocabulary may grow.

Each task's ``DataConfig`` extends `SplitConfig` with its own keys (token level, pair format,
tag column, ...). Train, valid and test come either from separate files or from fractions of the
main file; `split_sizes` turns those fractions into counts the same way for every task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from seqlab.errors import SeqlabError

S = TypeVar("S")  # what one split holds: an id array, encoded pairs, a list of sequences


@dataclass
class SplitConfig:
    """Where the data comes from, and the vocabulary's limits."""

    path: str = ""  # the training file (or the task's built-in data)
    valid: str | None = None  # separate validation file; None takes valid_fraction of `path`
    test: str | None = None  # separate test file; None takes test_fraction of `path`
    valid_fraction: float = 0.05  # used only when `valid` is None
    test_fraction: float = 0.05  # used only when `test` is None
    min_count: int = 1  # rarer tokens become <unk>
    max_vocab: int | None = None  # cap on a vocabulary's size, special tokens included

    def __post_init__(self) -> None:
        fractions = (self.valid_fraction, self.test_fraction)
        held = (0 if self.valid else self.valid_fraction) + (0 if self.test else self.test_fraction)
        if not all(math.isfinite(f) and 0 <= f < 1 for f in fractions) or held >= 1:
            raise SeqlabError(
                "data.valid_fraction and data.test_fraction must be in [0, 1) and leave some "
                f"training data, got {self.valid_fraction} and {self.test_fraction}")
        if self.min_count < 1:
            raise SeqlabError(f"data.min_count must be >= 1, got {self.min_count}")
        if self.max_vocab is not None and self.max_vocab < 2:
            raise SeqlabError("data.max_vocab must be at least 2 (the special tokens and one "
                              f"more) or null, got {self.max_vocab}")

    def split_sizes(self, total: int) -> tuple[int, int, int]:
        """(train, valid, test) counts of the main file's `total` units or examples; a split
        read from its own file takes none."""
        n_valid = 0 if self.valid else int(total * self.valid_fraction)
        n_test = 0 if self.test else int(total * self.test_fraction)
        return total - n_valid - n_test, n_valid, n_test


@dataclass
class Splits(Generic[S]):
    """A task's prepared data: its vocabulary (None where there is none) and three splits."""

    vocab: Any
    train: S
    valid: S
    test: S

    def split(self, name: str) -> S:
        if name not in ("train", "valid", "test"):
            raise SeqlabError(f"split must be one of train, valid, test; got {name!r}")
        return getattr(self, name)


class Cursor:
    """The position of a batch source that walks epochs in steps: (epoch, index). Saved in
    every checkpoint, so a resumed run reads the batches an uninterrupted one would."""

    epoch: int = 0
    index: int = 0

    def take(self, size: int, total: int) -> int:
        """Where the next `size` of `total` items start; a new epoch when they do not fit."""
        if self.index + size > total:
            self.epoch, self.index = self.epoch + 1, 0
        start, self.index = self.index, self.index + size
        return start

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, d: Mapping[str, int]) -> None:
        self.epoch, self.index = int(d["epoch"]), int(d["index"])
