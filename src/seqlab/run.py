"""A run folder and what a model's ``fit`` needs to know about it: the training settings
(`TrainConfig`), the callbacks, and where to write (`Run`). Counting and EM models read only
this; the torch trainer (`seqlab.trainer`) reads it too, so neither imports the other.

Layout of a run folder::

    RUN/
      config.json        resolved config (model, data, train), format version, command line
      vocab.json         the vocabulary
      best.safetensors   weights with the best validation bits/token (self-describing)
      last.safetensors   weights plus optimizer, schedule, RNG and data position (for --resume)
      metrics.jsonl      one JSON object per log line: training and evaluation records
      data/              the tokenised corpus (memmapped ids); safe to delete
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from seqlab.config import check_range
from seqlab.errors import SeqlabError
from seqlab.io import atomic_open

if TYPE_CHECKING:
    import torch


@dataclass
class BudgetConfig:
    """How long to train and what to record: read by every family's ``fit``."""

    max_steps: int = 2000  # total optimizer (or EM) steps, counted across resumes
    max_minutes: float | None = None  # wall-clock budget for this invocation
    stop_at_step: int | None = None  # end this invocation early; the schedule still plans max_steps
    eval_interval: int = 200  # full validation pass every N steps (and at the end)
    select_metric: str | None = None  # validation metric that picks best.safetensors; None:
    # the task's own (bits_per_token for language models, exact_match for seq2seq, ...)
    select_mode: Literal["min", "max"] | None = None  # None: the task's ("max" for accuracy)
    seed: int = 1337
    log_interval: int = 20  # steps between metrics.jsonl records
    threads: int | None = None  # torch threads; None keeps torch's default
    progress: bool = True  # show a progress bar on stderr
    device: str = "auto"  # auto (an accelerator when present), cpu, cuda, cuda:N or mps


@dataclass
class OptimConfig:
    """The optimiser, its schedule, clipping and precision: read by the torch trainer only."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3  # peak learning rate, reached after warm-up
    min_lr: float = 1e-4  # floor of the cosine schedule
    weight_decay: float = 0.0  # AdamW decay on matrices only (not biases, norms, embeddings)
    beta1: float = 0.9
    beta2: float = 0.99  # a little below 0.999: small batches, short runs
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    schedule: Literal["cosine", "plateau", "constant", "step"] = "cosine"
    decay_start: int = 4  # step: first epoch (from 0) at lr * decay_factor; later ones decay again
    decay_factor: float = 0.5  # step: per-epoch multiplier from decay_start on (Zaremba et al.)
    plateau_factor: float = 0.5  # plateau: multiply lr by this when validation stalls
    plateau_patience: int = 1  # plateau: evaluations without improvement before a cut
    clip_norm: float | None = 1.0  # clip gradients by global norm; None disables
    clip_value: float | None = None  # clip each gradient element to [-v, v]; None disables
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the probe
    # succeeds (~2x matmul speed on AVX512-BF16/AMX), else fp32; on GPUs bf16, or fp16 with a
    # gradient scaler where bf16 is missing; see seqlab.precision


@dataclass
class BatchConfig:
    """How the task cuts batches: read by the task's batch source."""

    batch_size: int = 32  # B: parallel contiguous streams (LMs), pairs or strings per batch
    seq_len: int = 128  # T: truncated-BPTT window of a language model (state carried across)


@dataclass
class TrainConfig(BatchConfig, OptimConfig, BudgetConfig):
    """The ``train`` section: a budget for every family, plus the optimiser and the batching
    for the families the torch trainer fits. Each part is its own dataclass so each key is
    declared beside what reads it; the keys stay flat (``train.lr``, ``train.batch_size``)."""

    def __post_init__(self) -> None:
        for name, rule in _TRAIN_RULES.items():
            check_range(f"train.{name}", getattr(self, name), rule)
        for name, rule in _TRAIN_NULLABLE_RULES.items():
            check_range(f"train.{name}", getattr(self, name), rule, null=True)
        if self.min_lr > self.lr:  # the cosine would climb from lr up to min_lr
            raise SeqlabError(f"train.min_lr must be <= train.lr ({self.lr}), got {self.min_lr}")
        from seqlab.distributed import check_device_name, device_type

        check_device_name(self.device)
        if self.precision in ("bf16", "fp16"):
            from seqlab.precision import resolve_precision

            # fail here, before a run folder exists, not at step 1
            resolve_precision(self.precision, device_type(self.device))


# What every TrainConfig number must obey (see `check_range`). A negative clip would flip the
# gradients into ascent; betas of 1 or more make Adam's moment estimates diverge; hmmlearn and
# NumPy's legacy generator take seeds below 2**32; torch would try to start any number of threads.
_TRAIN_RULES = {
    "batch_size": ">= 1", "seq_len": ">= 1", "max_steps": ">= 1", "eval_interval": ">= 1",
    "log_interval": ">= 1", "lr": "> 0", "min_lr": ">= 0", "weight_decay": ">= 0",
    "beta1": "in [0, 1)", "beta2": "in [0, 1)", "warmup_steps": ">= 0", "decay_start": ">= 0",
    "decay_factor": "in (0, 1]", "plateau_factor": "in (0, 1]", "plateau_patience": ">= 0",
    "seed": f"in [0, {2**32 - 1}]",
}
_TRAIN_NULLABLE_RULES = {  # None switches these off
    "max_minutes": "> 0", "stop_at_step": ">= 0", "clip_norm": "> 0", "clip_value": "> 0",
    "threads": "in [1, 1024]",
}


CLOCK_ONLY = 10**9  # train.max_steps when minutes are the only budget: the clock ends the run


def set_budget(train_raw: dict[str, Any], max_minutes: float | None, max_steps: int | None
               ) -> None:
    """The budget options (``--max-minutes``, ``--max-steps``) into a raw ``train`` section.
    Minutes without a step budget (here or already in the section) make the clock the budget:
    max_steps becomes `CLOCK_ONLY` and the schedule is paced by the time fraction."""
    if max_steps is not None:
        train_raw["max_steps"] = max_steps
    if max_minutes is not None:
        train_raw["max_minutes"] = max_minutes
        train_raw.setdefault("max_steps", CLOCK_ONLY)


def trainer_only_keys() -> set[str]:
    """The ``train`` keys that only the torch trainer reads (optimiser and batching)."""
    return {f.name for cls in (OptimConfig, BatchConfig) for f in dataclasses.fields(cls)}


class Callback:
    """Hooks into the training loop; override what you need."""

    def on_log(self, record: dict[str, Any]) -> None:
        """Every metrics record (training and evaluation)."""

    def on_backward(self, model: torch.nn.Module, step: int) -> None:
        """After ``loss.backward()``, before clipping: gradients are available."""




@dataclass
class Run:
    """Training budget, run folder and callbacks handed to ``model.fit``."""

    train: TrainConfig = field(default_factory=TrainConfig)
    dir: Path | None = None  # None: nothing is written to disk
    callbacks: list[Callback] = field(default_factory=list)
    resume: bool = False  # continue from dir/last.safetensors
    writer: bool = True  # False on the ranks of a multi-process run other than 0: read only

    def __post_init__(self) -> None:
        if self.dir is not None:
            self.dir = Path(self.dir)
            self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def best_path(self) -> Path | None:
        return self.dir / "best.safetensors" if self.dir else None

    @property
    def last_path(self) -> Path | None:
        return self.dir / "last.safetensors" if self.dir else None

    @property
    def metrics_path(self) -> Path | None:
        return self.dir / "metrics.jsonl" if self.dir else None

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and pass it to the callbacks (rank 0 only)."""
        if not self.writer:
            return
        if self.metrics_path is not None:
            with self.metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")  # one write per line: appends stay whole
        for cb in self.callbacks:
            cb.on_log(record)

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step` (work lost after the last checkpoint, before a resume)."""
        path = self.metrics_path
        if path is None or not path.exists():
            return
        records = [r for r in map(_record, path.read_text(encoding="utf-8").splitlines()) if r]
        keep = [json.dumps(r) for r in records
                if r.get("kind") != "final" and r.get("step", 0) <= step]
        with atomic_open(path, "w") as f:
            f.write("".join(ln + "\n" for ln in keep))


def _record(line: str) -> dict[str, Any] | None:
    """One metrics line; a line cut short (a full disk, a power cut) is dropped, not fatal."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
