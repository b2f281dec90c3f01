"""The synthetic memory tasks of Bai, Kolter & Koltun (2018), with the paper's data generators.

* Adding problem (Hochreiter & Schmidhuber 1997): each step carries two features, a value drawn
  uniformly from [0, 1) and a marker; exactly two steps, chosen uniformly without replacement,
  are marked. The target is the sum of the two marked values, scored by mean squared error.
  Always predicting 1 scores Var(u1 + u2) = 1/6 ~ 0.167.
* Copy memory: ten symbols drawn uniformly from 1..8, then T - 1 blanks (0), then eleven
  markers (9); the model must output blanks (0) everywhere except the last ten steps, where it
  must repeat the ten symbols. The input is the symbol's value as one feature, as in the paper's
  code. A memoryless model that predicts blanks, then a uniform guess over 1..8, scores
  10 ln 8 / (T + 20) averaged over all steps (the paper's figure: 0.0204 at T = 1000) and ln 8 ~
  2.08 on the last ten.

`TaskBatcher` serves a fixed training set in order, epoch after epoch, to the generic
`seqlab.trainer.Trainer`, exactly as the paper's scripts iterate over theirs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from seqlab.data.splits import Cursor
from seqlab.errors import SeqlabError

MEMORY = 10  # symbols to remember in the copy-memory task


def adding_problem(n: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences of length T: inputs (n, T, 2) = (value, marker), targets (n, 1)."""
    if T < 2 or n < 1:
        raise SeqlabError(f"the adding problem needs T >= 2 and n >= 1, got T={T}, n={n}")
    rng = np.random.default_rng(seed)
    values = rng.random((n, T), dtype=np.float32)
    first = rng.integers(T, size=n)
    second = rng.integers(T - 1, size=n)
    second += second >= first  # two distinct positions, uniform over pairs
    marks = np.zeros((n, T), dtype=np.float32)
    rows = np.arange(n)
    marks[rows, first] = marks[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.from_numpy(np.stack([values, marks], -1)), torch.from_numpy(y[:, None])


def copy_memory(n: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences of length T + 20: inputs (n, T + 20, 1) float, targets (n, T + 20) long."""
    if T < 1 or n < 1:
        raise SeqlabError(f"copy memory needs T >= 1 and n >= 1, got T={T}, n={n}")
    rng = np.random.default_rng(seed)
    seq = rng.integers(1, 9, size=(n, MEMORY))
    x = np.concatenate([seq, np.zeros((n, T - 1)), np.full((n, MEMORY + 1), 9)], 1)
    y = np.concatenate([np.zeros((n, MEMORY + T)), seq], 1)
    return torch.from_numpy(x.astype(np.float32)[..., None]), torch.from_numpy(y.astype(np.int64))


def adding_baseline() -> float:
    """MSE of always predicting 1: the variance of the sum of two U(0, 1) values."""
    return 1.0 / 6.0


def copy_baseline(T: int) -> dict[str, float]:
    """Cross-entropy of the best memoryless model: over all steps and on the last ten."""
    return {"all": MEMORY * math.log(8) / (T + 2 * MEMORY), "last10": math.log(8)}


class TaskBatcher(Cursor):
    """Batches of a fixed training set, in order, for `seqlab.trainer.Trainer`.

    Every batch is independent (``fresh`` is always True: no state crosses batches); the
    position is two integers, so a resumed run continues with the same batches.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        if len(x) != len(y) or len(x) < batch_size:
            raise SeqlabError(f"expected as many inputs as targets and at least batch_size = "
                              f"{batch_size} of them, got {len(x)} and {len(y)}")
        self.x, self.y, self.B = x, y, batch_size

    def next(self) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        start = self.take(self.B, len(self.x))
        s = slice(start, start + self.B)
        return (self.x[s], self.y[s]), True

    @property
    def batch_size(self) -> int:
        return self.B

    def next_epoch(self) -> int:
        return self.epoch + (self.index + self.B > len(self.x))

    def tokens_per_batch(self) -> int:
        return self.B * self.x.shape[1]

