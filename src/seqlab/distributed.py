"""Devices and processes: where a run computes, and how several processes share one.

``train.device`` is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``auto`` takes an
accelerator when one is present (``cuda:LOCAL_RANK`` under torchrun). Several processes are
PyTorch's own engine: ``torchrun --nproc_per_node=N -m seqlab train ...`` (or
``seqlab train --nproc N``, which starts torchrun) runs DistributedDataParallel, with the gloo
backend on CPUs and nccl on GPUs. `World` says which process this is; only rank 0 writes.

How the figures relate to one process: ``train.batch_size`` is the *global* batch. Each of the
N ranks reads its own B/N rows of it, DDP averages the gradients, so a step is the step one
process would take on the whole batch (to rounding: the test suite checks 1e-5 on the weights),
with the same learning rate. Tokens per step, and so tokens/s, count all ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from seqlab.errors import SeqlabError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the accelerator if present, else the CPU; a named one must exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise SeqlabError(f"train.device: expected one of auto, cpu, cuda, cuda:N, mps; got "
                          f"{requested!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqlabError(f"train.device={requested}: no CUDA device is available here; use "
                          "train.device=auto or cpu")
    if device.type == "cuda" and device.index is not None and (
            device.index >= torch.cuda.device_count()):
        raise SeqlabError(f"train.device={requested}: this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SeqlabError(f"train.device={requested}: MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise SeqlabError(f"train.device: expected one of auto, cpu, cuda, cuda:N, mps; got "
                          f"{requested!r}")
    return device


def check_device_name(value: str) -> None:
    """Config-time check of ``train.device`` (availability is checked when training starts)."""
    kind, _, index = value.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise SeqlabError(f"train.device: expected one of auto, cpu, cuda, cuda:N, mps; got "
                          f"{value!r}")


def device_type(requested: str) -> str:
    """The kind of device a ``train.device`` value will give, without checking it exists."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else (
            "mps" if torch.backends.mps.is_available() else "cpu")
    return requested.partition(":")[0]


def map_tensors(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply `fn` to every tensor of a batch: a tensor, a tuple or list of them, or a
    dataclass of them (other values pass through)."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, tuple | list):
        return type(batch)(map_tensors(b, fn) for b in batch)
    if hasattr(batch, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.replace(batch, **{f.name: map_tensors(getattr(batch, f.name), fn)
                                             for f in dataclasses.fields(batch)})
    return batch


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch to `device`."""
    return map_tensors(batch, lambda t: t.to(device, non_blocking=True))


def rows(batch: Any, part: slice) -> Any:
    """The rows `part` (first dimension) of every tensor in a batch."""
    return map_tensors(batch, lambda t: t[part])


class ShardedSource:
    """A batch source cut among processes: each rank keeps rows rank, rank + N, ... of every
    global batch (for sources of independent examples; the LM stream shards itself)."""

    def __init__(self, source: Any, world: World) -> None:
        if source.batch_size < world.size:
            raise SeqlabError(f"train.batch_size is the global batch and must be at least the "
                              f"{world.size} processes, got {source.batch_size}")
        self.source, self.part = source, slice(world.rank, None, world.size)
        self.world = world

    @property
    def batch_size(self) -> int:
        return len(range(self.source.batch_size)[self.part])

    def next(self) -> tuple[Any, bool]:
        batch, fresh = self.source.next()
        return rows(batch, self.part), fresh

    def tokens_per_batch(self) -> int:
        return int(self.source.tokens_per_batch()) // self.world.size

    def state_dict(self) -> dict[str, int]:
        return dict(self.source.state_dict())

    def load_state_dict(self, d: Mapping[str, int]) -> None:
        self.source.load_state_dict(d)

    def __getattr__(self, name: str) -> Any:  # next_epoch and the like
        return getattr(self.source, name)


def shard(source: Any, world: World) -> Any:
    """`source` itself for one process, else each rank's share of it."""
    return ShardedSource(source, world) if world.distributed else source


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Only rank 0 writes the run folder, the metrics and the progress bar."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (metrics, stop decisions)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over the ranks (each rank's loss is the mean of its share)."""
        if not self.distributed:
            return value.item()
        t = value.detach().float().reshape(1).cpu()
        dist.all_reduce(t)
        return t.item() / self.size

    def all_max(self, flag: bool) -> bool:
        """True on every rank when any rank says True (stop when one rank must)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Every rank's `tensors` (the same shapes on each), on every rank: [rank][i]."""
        if not self.distributed:
            return [tensors]
        out: list[list[torch.Tensor]] = [[] for _ in range(self.size)]
        for t in tensors:
            parts = [torch.empty_like(t) for _ in range(self.size)]
            dist.all_gather(parts, t.contiguous())
            for r, p in enumerate(parts):
                out[r].append(p)
        return out


def world() -> World:
    """The current world, joining the process group when torchrun started this process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(local % torch.cuda.device_count())
    return World(rank=rank, size=size, local_rank=local)
