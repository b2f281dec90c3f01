"""The TCN paper's synthetic tasks: generator invariants and their analytic baselines."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.errors import SeqlabError
from seqlab.synthetic import (
    MEMORY,
    TaskBatcher,
    adding_baseline,
    adding_problem,
    copy_baseline,
    copy_memory,
)


def test_adding_problem_structure_and_baseline() -> None:
    x, y = adding_problem(20_000, 50, seed=0)
    assert x.shape == (20_000, 50, 2) and y.shape == (20_000, 1)
    marks = x[..., 1]
    assert torch.equal(marks.sum(1), torch.full((20_000,), 2.0))  # exactly two marked steps
    torch.testing.assert_close((x[..., 0] * marks).sum(1, keepdim=True), y)
    assert x[..., 0].min() >= 0 and x[..., 0].max() < 1
    # Always predicting 1 scores Var(u1 + u2) = 1/6 (the paper's ~0.167).
    assert F.mse_loss(torch.ones_like(y), y).item() == pytest.approx(adding_baseline(), abs=4e-3)
    # Every position is marked equally often (uniform pairs).
    freq = marks.mean(0)
    assert freq.min() > 0.03 and freq.max() < 0.05


def test_copy_memory_structure_and_memoryless_baseline() -> None:
    T = 30
    x, y = copy_memory(4000, T, seed=1)
    assert x.shape == (4000, T + 20, 1) and y.shape == (4000, T + 20)
    seq = x[:, :MEMORY, 0].long()
    assert seq.min() == 1 and seq.max() == 8
    assert (x[:, MEMORY:MEMORY + T - 1] == 0).all() and (x[:, -MEMORY - 1:] == 9).all()
    assert (y[:, :-MEMORY] == 0).all() and torch.equal(y[:, -MEMORY:], seq)
    # The best memoryless predictor: blank with certainty, then uniform over 1..8.
    logits = torch.full((4000, T + 20, 10), -1e9)
    logits[:, :-MEMORY, 0] = 0
    logits[:, -MEMORY:, 1:9] = 0
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert ce == pytest.approx(copy_baseline(T)["all"], rel=1e-6)
    assert copy_baseline(1000)["all"] == pytest.approx(0.0204, abs=1e-4)  # the paper's figure
    assert copy_baseline(T)["last10"] == pytest.approx(math.log(8))


def test_generators_are_seeded() -> None:
    assert torch.equal(adding_problem(5, 10, seed=3)[0], adding_problem(5, 10, seed=3)[0])
    assert not torch.equal(copy_memory(5, 10, seed=3)[0], copy_memory(5, 10, seed=4)[0])
    with pytest.raises(SeqlabError, match="T >= 2"):
        adding_problem(5, 1, seed=0)


def test_task_batcher_walks_the_set_in_order_and_resumes() -> None:
    x, y = torch.arange(10)[:, None], torch.arange(10)
    b = TaskBatcher(x, y, batch_size=4)
    seen = []
    for _ in range(5):
        epoch = b.next_epoch()
        (bx, _), fresh = b.next()
        assert fresh and b.epoch == epoch
        seen.append(bx[:, 0].tolist())
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]
    again = TaskBatcher(x, y, batch_size=4)
    again.load_state_dict(b.state_dict())
    assert torch.equal(again.next()[0][0], b.next()[0][0])
    with pytest.raises(SeqlabError, match="at least batch_size"):
        TaskBatcher(x[:3], y[:3], batch_size=4)
