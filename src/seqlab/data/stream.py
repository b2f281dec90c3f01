"""Truncated-BPTT batches from one long token stream (the language-model task's batches)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from seqlab.errors import SeqlabError


class StreamBatcher:
    """Truncated-BPTT batches from one long token stream.

    The stream is cut into B contiguous rows, and step i reads window i of every row, so row b
    of consecutive batches continues the same text and the hidden state can be carried over::

        data (after a per-epoch offset o < T):  a b c d e f g h i j k l m n o p q r ...
        B = 2, T = 3:
            row 0: a b c d e f g h i     batch 0: x = [a b c]  y = [b c d]
            row 1: j k l m n o p q r              x = [j k l]  y = [k l m]
                                         batch 1: x = [d e f]  y = [e f g]
                                                  x = [m n o]  y = [n o p]

    Targets are inputs shifted by one. A new epoch draws a new offset (from seed and epoch
    alone, so the position is two integers) and starts with a fresh hidden state.

    With several processes (`rank` of `world`), B is the global batch and each rank reads only
    its B / world rows: together the ranks read exactly the batches one process would.
    """

    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, seed: int = 0, *,
                 rank: int = 0, world: int = 1) -> None:
        self.data, self.B, self.T, self.seed = data, batch_size, seq_len, seed
        self.epoch, self.window = 0, 0
        if batch_size % world:
            raise SeqlabError(f"train.batch_size is the global batch and must divide among the "
                              f"{world} processes, got {batch_size}")
        self.shard = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
        if self.windows_per_epoch(0) < 1:
            raise SeqlabError(
                f"the training split has {len(data)} tokens; batch_size x (seq_len + 1) = "
                f"{batch_size} x {seq_len + 1} needs at least {batch_size * (seq_len + 1) * 2}; "
                "lower train.batch_size or train.seq_len"
            )

    def _offset(self, epoch: int) -> int:
        return 0 if epoch == 0 else int(np.random.default_rng([self.seed, epoch]).integers(self.T))

    def _row_len(self, epoch: int) -> int:
        return (len(self.data) - self._offset(epoch)) // self.B

    def next_epoch(self) -> int:
        """The epoch the next batch belongs to (the step schedule decays by epoch)."""
        return self.epoch + (self.window >= self.windows_per_epoch(self.epoch))

    def windows_per_epoch(self, epoch: int) -> int:
        return (self._row_len(epoch) - 1) // self.T

    def next(self) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        """The next (x, y) batch, each (B, T), and whether it starts a new epoch."""
        if self.window >= self.windows_per_epoch(self.epoch):
            self.epoch, self.window = self.epoch + 1, 0
        start = self._offset(self.epoch) + self.window * self.T
        rows = start + self._row_len(self.epoch) * np.arange(self.B)[self.shard]
        idx = rows[:, None] + np.arange(self.T + 1)  # (B, T+1)
        xy = torch.from_numpy(np.asarray(self.data[idx], dtype=np.int64))
        fresh = self.window == 0
        self.window += 1
        return (xy[:, :-1], xy[:, 1:]), fresh

    @property
    def batch_size(self) -> int:
        """Rows this process reads per batch (the global batch over the processes)."""
        return self.shard.stop - self.shard.start

    def tokens_per_batch(self) -> int:
        return self.batch_size * self.T

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, d: Mapping[str, int]) -> None:
        self.epoch, self.window = int(d["epoch"]), int(d["window"])
