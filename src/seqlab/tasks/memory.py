"""Algorithmic memory tasks of the Neural Turing Machine paper (Graves et al. 2014, section 4):
copy, repeat copy and associative recall, from seeded generators that ship here.

    seqlab train --model ntm data.task=copy train.threads=1 --out runs/copy
    seqlab eval runs/copy --json --data copy:30-50    # generated, longer than in training
    seqlab memory-plot runs/copy --out weights.png --length 20         # read/write weightings
    echo "10110011 00011100 11110000" | seqlab predict runs/copy      # -> the copy

Every step is a vector of ``BITS`` = 8 data bits plus two control channels, the outputs are 8
bits plus an end marker, all independent sigmoids. Layouts (time runs left to right; ``d`` is
the delimiter channel ``BITS``, ``c`` the second control channel ``BITS + 1``)::

    copy      in:  x1 .. xL  d  .  ..  .          out: .  ..  .  .  x1 .. xL
    repeat    in:  x1 .. xL  d+c=R/10  . .. .      out: .  ..  .  .  x1..xL x1..xL (R times) end
    recall    in:  d i1 d i2 .. d in  c q c  . .  out: .. .. .. .. .. .. .. .  i(q+1)

where an item ``i`` is ``data.item_len`` vectors and the query ``q`` is a copy of one item
(not the last); the answer is the item after it. Only the output steps count (a mask): for
copy and recall the 8 data bits, for repeat copy those and the end marker.

``data.min_len/max_len`` are the sequence length (copy, repeat copy) or the number of items
(recall); the paper's training ranges are the defaults (1-20, 1-10 with 1-10 repeats, 2-6
items). Training batches are drawn fresh at each step from ``(data.seed, step)``, so every run
sees new sequences and a resumed run the same ones; ``data.curriculum`` grows the longest length
from ``min_len`` to ``max_len`` over that many batches. With ``data.same_length`` (the default)
the sequences of one training batch share a length, drawn per batch, so no step is padding.

Scores per sequence, as the paper plots them: ``bits_per_sequence``, the binary cross-entropy
summed over a sequence's output bits in bits (the paper's "cost per sequence"), and
``bit_errors_per_sequence``, the output bits wrong after thresholding at 0.5 (the task metric:
0 means every sequence is reproduced exactly).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F

from seqlab.data.splits import Splits
from seqlab.distributed import World, shard
from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, write_json
from seqlab.scoring import ScoreRow
from seqlab.tasks.base import Metrics

GENERATED = "generate"  # the only data.path: every sequence comes from the generator
BITS = 8  # data bits per vector
INPUTS, OUTPUTS = BITS + 2, BITS + 1  # + delimiter and control channels; + end marker
REPEAT_SCALE = 10  # the repeat count enters as R / 10 on the control channel
PAPER_LENGTHS = {"copy": (1, 20), "repeat": (1, 10), "recall": (2, 6)}
TaskName = Literal["copy", "repeat", "recall"]


@dataclass
class MemoryConfig:
    """Which task, and the lengths its generator draws."""

    path: str = GENERATED  # must stay "generate"; the generators are the data
    task: TaskName = "copy"
    min_len: int | None = None  # shortest sequence (items for recall); None: the paper's
    max_len: int | None = None  # longest; None: the paper's (20 copy, 10 repeat, 6 recall)
    min_repeats: int = 1  # repeat copy: repeats are uniform in [min_repeats, max_repeats]
    max_repeats: int = 10
    item_len: int = 3  # recall: vectors per item
    curriculum: int = 0  # training batches over which max_len grows from min_len; 0: none
    same_length: bool = True  # every sequence of a training batch has one length (drawn per
    # batch): no padded steps, so a batch costs ~half the steps of one with mixed lengths
    valid_sequences: int = 256  # generated validation sequences
    test_sequences: int = 1000  # generated test sequences
    seed: int = 0  # valid and test sets, and the training stream

    def __post_init__(self) -> None:
        if self.path != GENERATED:
            raise SeqlabError(f"data.path: the memory task generates its data, expected "
                              f"{GENERATED!r}, got {self.path!r} (score a file with seqlab eval "
                              "--data)")
        if self.task not in PAPER_LENGTHS:
            raise SeqlabError(f"data.task must be one of {', '.join(PAPER_LENGTHS)}, got "
                              f"{self.task!r}")
        lo, hi = self.lengths
        least = 2 if self.task == "recall" else 1
        if not least <= lo <= hi:
            raise SeqlabError(f"data.min_len and data.max_len must satisfy {least} <= min_len <= "
                              f"max_len for {self.task}, got {lo} and {hi}")
        if not 1 <= self.min_repeats <= self.max_repeats or self.item_len < 1:
            raise SeqlabError("data.min_repeats/max_repeats must satisfy 1 <= min <= max and "
                              f"data.item_len >= 1, got {self.min_repeats}, {self.max_repeats}, "
                              f"{self.item_len}")
        if min(self.valid_sequences, self.test_sequences, self.curriculum + 1) < 1:
            raise SeqlabError("data.valid_sequences and test_sequences must be >= 1 and "
                              "data.curriculum >= 0, got "
                              f"{self.valid_sequences}, {self.test_sequences}, {self.curriculum}")

    @property
    def lengths(self) -> tuple[int, int]:
        lo, hi = PAPER_LENGTHS[self.task]
        return (lo if self.min_len is None else self.min_len,
                hi if self.max_len is None else self.max_len)


# --- generators ----------------------------------------------------------------------------
class Example(NamedTuple):
    x: np.ndarray  # (T, INPUTS) float32
    y: np.ndarray  # (T, OUTPUTS) float32 targets
    mask: np.ndarray  # (T, OUTPUTS) float32: 1 where an output bit counts


def _blank(T: int) -> Example:
    return Example(np.zeros((T, INPUTS), np.float32), np.zeros((T, OUTPUTS), np.float32),
                   np.zeros((T, OUTPUTS), np.float32))


def copy_example(seq: np.ndarray) -> Example:
    """seq (L, BITS) -> 2L + 1 steps: the sequence, the delimiter, then the copy."""
    L = len(seq)
    ex = _blank(2 * L + 1)
    ex.x[:L, :BITS], ex.x[L, BITS] = seq, 1
    ex.y[L + 1 :, :BITS], ex.mask[L + 1 :, :BITS] = seq, 1
    return ex


def repeat_example(seq: np.ndarray, repeats: int) -> Example:
    """seq (L, BITS) -> L + 1 + R L + 1 steps: the copies, then the end marker."""
    L = len(seq)
    ex = _blank(L + 1 + repeats * L + 1)
    ex.x[:L, :BITS], ex.x[L, BITS], ex.x[L, BITS + 1] = seq, 1, repeats / REPEAT_SCALE
    ex.y[L + 1 : -1, :BITS] = np.tile(seq, (repeats, 1))
    ex.y[-1, BITS] = 1
    ex.mask[L + 1 :] = 1
    return ex


def recall_example(items: np.ndarray, query: int) -> Example:
    """items (n, K, BITS), query index < n - 1 -> the items, the query, then item query + 1."""
    n, K, _ = items.shape
    q0 = n * (K + 1)  # where the query starts
    ex = _blank(q0 + K + 2 + K)
    for i in range(n):
        ex.x[i * (K + 1), BITS] = 1
        ex.x[i * (K + 1) + 1 : (i + 1) * (K + 1), :BITS] = items[i]
    ex.x[q0, BITS + 1] = ex.x[q0 + K + 1, BITS + 1] = 1
    ex.x[q0 + 1 : q0 + K + 1, :BITS] = items[query]
    ex.y[q0 + K + 2 :, :BITS], ex.mask[q0 + K + 2 :, :BITS] = items[query + 1], 1
    return ex


def draw(rng: np.random.Generator, cfg: MemoryConfig, max_len: int | None = None,
         length: int | None = None) -> Example:
    """One random example of ``cfg.task`` with a length in [min_len, max_len] (or `length`)."""
    lo, hi = cfg.lengths
    if length is None:
        length = int(rng.integers(lo, (hi if max_len is None else max_len) + 1))
    L = length
    if cfg.task == "copy":
        return copy_example(rng.integers(0, 2, (L, BITS)).astype(np.float32))
    if cfg.task == "repeat":
        repeats = int(rng.integers(cfg.min_repeats, cfg.max_repeats + 1))
        return repeat_example(rng.integers(0, 2, (L, BITS)).astype(np.float32), repeats)
    items = rng.integers(0, 2, (L, cfg.item_len, BITS)).astype(np.float32)
    return recall_example(items, int(rng.integers(0, L - 1)))


def generate(cfg: MemoryConfig, n: int, stream: int) -> list[Example]:
    """`n` examples; the same config, `n` and `stream` (1 valid, 2 test) give the same ones."""
    rng = np.random.default_rng([cfg.seed, stream])
    return [draw(rng, cfg) for _ in range(n)]


def pad(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, T, INPUTS), y and mask (B, T, OUTPUTS), zero after each example's end."""
    T = max(len(e.x) for e in examples)
    x = torch.zeros(len(examples), T, INPUTS)
    y, mask = torch.zeros(len(examples), T, OUTPUTS), torch.zeros(len(examples), T, OUTPUTS)
    for i, e in enumerate(examples):
        x[i, : len(e.x)], y[i, : len(e.x)] = torch.from_numpy(e.x), torch.from_numpy(e.y)
        mask[i, : len(e.x)] = torch.from_numpy(e.mask)
    return x, y, mask


class MemoryBatcher:
    """An endless stream of fresh batches; batch k is drawn from ``(seed, 0, k)``."""

    def __init__(self, cfg: MemoryConfig, batch_size: int) -> None:
        self.cfg, self.batch_size, self.index = cfg, batch_size, 0

    def longest(self) -> int:
        """The longest length of batch `index`: grows linearly over ``cfg.curriculum``."""
        lo, hi = self.cfg.lengths
        if not self.cfg.curriculum:
            return hi
        return min(hi, lo + (hi - lo) * (self.index + 1) // self.cfg.curriculum)

    def next(self) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], bool]:
        rng = np.random.default_rng([self.cfg.seed, 0, self.index])
        lo, hi = self.cfg.lengths[0], self.longest()
        length = int(rng.integers(lo, hi + 1)) if self.cfg.same_length else None
        batch = pad([draw(rng, self.cfg, hi, length) for _ in range(self.batch_size)])
        self.index += 1
        return batch, True

    def tokens_per_batch(self) -> int:
        return self.batch_size  # sequences: the trainer's throughput counts them

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.index = int(d["index"])


# --- scoring -------------------------------------------------------------------------------
@dataclass
class MemoryEvaluation(ScoreRow):
    model: str
    split: str
    sequences: int
    bits_per_sequence: float  # cross-entropy summed over each sequence's output bits, in bits
    bit_errors_per_sequence: float  # output bits wrong after thresholding at 0.5
    sequence_accuracy: float  # share of sequences with no wrong bit
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: {self.bit_errors_per_sequence:.3f} bit errors "
                f"and {self.bits_per_sequence:.3f} bits of cost per sequence, "
                f"{self.sequence_accuracy:.2%} exact, {self.sequences:,} sequences")


def outputs(model: Any, examples: Sequence[Example], chunk: int = 250) -> list[np.ndarray]:
    """The model's logits (T, OUTPUTS) for each example."""
    out: list[np.ndarray] = []
    with model._inference():
        for s in range(0, len(examples), chunk):
            part = examples[s : s + chunk]
            logits = model(pad(part)[0].to(model.device)).float().cpu()  # (B, T, OUTPUTS)
            out += [logits[i, : len(e.x)].numpy() for i, e in enumerate(part)]
    return out


def score(model: Any, examples: Sequence[Example], split: str, name: str) -> MemoryEvaluation:
    t0 = time.perf_counter()
    cost, errors, exact = 0.0, 0, 0
    for logits, e in zip(outputs(model, examples), examples, strict=True):
        z, y, m = torch.from_numpy(logits), torch.from_numpy(e.y), torch.from_numpy(e.mask)
        cost += float((F.binary_cross_entropy_with_logits(z, y, reduction="none") * m).sum())
        wrong = int((((z > 0).float() != y).float() * m).sum())
        errors, exact = errors + wrong, exact + (wrong == 0)
    n = max(len(examples), 1)
    return MemoryEvaluation(model=name, split=split, sequences=len(examples),
                            bits_per_sequence=cost / math.log(2) / n,
                            bit_errors_per_sequence=errors / n, sequence_accuracy=exact / n,
                            seconds=time.perf_counter() - t0)


# --- text form (predict, eval --data) -----------------------------------------------------
def parse_line(line: str, where: str) -> Example:
    """One input line -> an example whose target follows from it:

    ``v1 v2 ..`` copies; ``v1 v2 .. *R`` repeats R times; ``i1 | i2 | .. ? q`` recalls the
    item after q, where each v is 8 bits (``10110011``) and an item one or more vectors."""
    text = line.strip()
    try:
        if "?" in text:
            items_text, query_text = text.split("?")
            items = np.stack([_vectors(t) for t in items_text.split("|")])  # (n, K, BITS)
            query = _vectors(query_text)
            hits = [i for i in range(len(items) - 1) if np.array_equal(items[i], query)]
            if not hits:
                raise ValueError("the query must equal an item other than the last")
            return recall_example(items, hits[0])
        words = text.split()
        if words and words[-1].startswith("*"):
            return repeat_example(_vectors(" ".join(words[:-1])), int(words[-1][1:]))
        return copy_example(_vectors(text))
    except ValueError as e:
        raise SeqlabError(f"{where}: expected 8-bit vectors ('v1 v2', 'v1 v2 *R' or "
                          f"'i1 | i2 ? q'), got {text[:40]!r} ({e})") from None


def _vectors(text: str) -> np.ndarray:
    words = text.split()
    if not words or any(len(w) != BITS or set(w) - {"0", "1"} for w in words):
        raise ValueError(f"each vector is {BITS} characters of 0 and 1")
    return np.array([[int(c) for c in w] for w in words], dtype=np.float32)


def generated_set(spec: str, n: int = 1000) -> list[Example]:
    """``copy:30-50`` -> the test set of that task with those lengths (seed 0, stream 2):
    how ``seqlab eval RUN --data copy:30-50`` scores lengths other than the training ones."""
    task, _, lengths = spec.partition(":")
    lo, sep, hi = lengths.partition("-")
    if not (sep and lo.isdigit() and hi.isdigit()):
        raise SeqlabError(f"--data: expected a file, or TASK:MIN-MAX such as copy:30-50, got "
                          f"{spec!r}")
    # Any name may come from the command line: MemoryConfig rejects all but TaskName's.
    cfg = MemoryConfig(task=cast(TaskName, task), min_len=int(lo), max_len=int(hi))
    return generate(cfg, n, 2)


def _bits(rows: np.ndarray) -> str:
    return " ".join("".join(str(int(b)) for b in row[:BITS]) for row in rows)


# --- the task --------------------------------------------------------------------------------
_NTM: dict[str, Any] = {"inputs": INPUTS, "outputs": OUTPUTS}
MemoryData = Splits[list[Example]]  # train is empty: training batches are drawn fresh


class MemoryTask:
    """Copy, repeat copy and associative recall (the `Task` protocol)."""

    name: ClassVar[str] = "memory"
    DataConfig: ClassVar[type] = MemoryConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "ntm": ("ntm", {**_NTM, "controller": 100, "memory_n": 128, "memory_m": 20}),
        # about the NTM's parameter count (64,449 against 63,237)
        "memory-lstm": ("ntm", {**_NTM, "controller": 120, "memory_n": 0}),
    }
    metric: ClassVar[str] = "bit_errors_per_sequence"
    metrics: ClassVar[tuple[str, ...]] = ("bit_errors_per_sequence", "bits_per_sequence")
    mode: ClassVar[str] = "min"

    def prepare(self, cfg: MemoryConfig, workdir: Path, vocab: Any = None,
                model: Any = None) -> MemoryData:
        if model is not None and (model.inputs, model.outputs) != (INPUTS, OUTPUTS):
            raise SeqlabError(f"the memory task needs model.inputs={INPUTS} and model.outputs="
                              f"{OUTPUTS}, got {model.inputs} and {model.outputs}")
        return Splits(None, [], generate(cfg, cfg.valid_sequences, 1),
                      generate(cfg, cfg.test_sequences, 2))

    def save_vocab(self, vocab: Any, path: Path) -> None:
        write_json(path, {"bits": BITS, "inputs": INPUTS, "outputs": OUTPUTS})  # fixed

    def load_vocab(self, path: Path) -> None:
        return None

    def describe_data(self, data: MemoryData) -> str:
        return (f"generated sequences ({len(data.valid)} valid, {len(data.test)} test; "
                "training batches drawn fresh)")

    def batches(self, data: MemoryData, cfg: MemoryConfig, train: Any, world: World) -> Any:
        return shard(MemoryBatcher(cfg, train.batch_size), world)

    def estimator_inputs(self, data: MemoryData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the memory task trains torch models only")

    def validate(self, model: Any, data: MemoryData) -> Callable[[], Metrics] | None:
        def metrics() -> Metrics:
            e = score(model, data.valid, "valid", "")
            return {"bit_errors_per_sequence": e.bit_errors_per_sequence,
                    "bits_per_sequence": e.bits_per_sequence}

        return metrics

    def evaluate(self, model: Any, split: list[Example], *, split_name: str, name: str
                 ) -> MemoryEvaluation:
        return score(model, split, split_name, name)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> list[Example]:
        """A file of lines (`parse_line`), or generated data: ``TASK:MIN-MAX``."""
        p = Path(path)
        if not p.is_file() and ":" in path:
            return generated_set(path)
        if not p.is_file():
            raise SeqlabError(f"{p}: file not found")
        lines = p.read_text(encoding="utf-8").splitlines()
        return [parse_line(ln, f"{path}:{n}") for n, ln in enumerate(lines, 1) if ln.strip()]

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """The output vectors (thresholded) over each line's output steps."""
        examples = [parse_line(ln, f"<input>:{n}") for n, ln in enumerate(inputs, 1)]
        rows = [(z > 0)[e.mask.any(-1) > 0] for z, e in zip(outputs(model, examples), examples,
                                                                  strict=True)]
        return [_bits(r) for r in rows]

    def add_commands(self, sub: Any) -> dict[str, Callable[..., int]]:
        p = sub.add_parser("memory-plot", help="draw an NTM run's read and write weightings")
        p.add_argument("run", help="run folder of an ntm model")
        p.add_argument("--out", required=True, help="PNG file to write")
        p.add_argument("--length", type=int, help="sequence length (items for recall); "
                       "default: the run's max_len")
        p.add_argument("--seed", type=int, default=0, help="which random sequence")
        return {"memory-plot": cmd_memory_plot}


# --- drawing ---------------------------------------------------------------------------------
def plot_weights(model: Any, example: Example, path: str | Path, title: str = "") -> None:
    """Inputs, targets, outputs and the read and write weightings over time, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with model._inference():
        logits, reads, writes = model.trace(torch.from_numpy(example.x)[None].to(model.device))
    T = len(example.x)
    used = int(max(reads[0].argmax(-1).max(), writes[0].argmax(-1).max())) + 3  # slots shown
    panels = [("inputs", example.x.T), ("targets", (example.y * example.mask).T),
              ("outputs", torch.sigmoid(logits[0]).cpu().numpy().T * example.mask.T),
              ("write weighting", writes[0, :, :used].cpu().numpy().T),
              ("read weighting", reads[0, :, :used].cpu().numpy().T)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, T / 8), 9), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1, 1, 2.5, 2.5]})
    for ax, (label, image) in zip(axes, panels, strict=True):
        ax.imshow(image, aspect="auto", cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel(label if "weighting" not in label else f"{label}\nmemory slot")
    axes[-1].set_xlabel("time step")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def cmd_memory_plot(args: argparse.Namespace) -> int:
    from seqlab.config import from_dict
    from seqlab.experiment import load_run

    model, config = load_run(args.run)
    if getattr(model, "family", None) != "ntm" or not model.config.memory_n:
        raise SeqlabError(f"{args.run}: expected a run of the ntm model, got "
                          f"{getattr(model, 'name', '') or model.family} (no memory to draw)")
    cfg: MemoryConfig = from_dict(MemoryConfig, config.get("data", {}), prefix="data.")
    if args.length is not None:
        cfg = from_dict(MemoryConfig, {**config.get("data", {}), "min_len": args.length,
                                       "max_len": args.length}, prefix="data.")
    example = draw(np.random.default_rng([args.seed, 3]), cfg)
    plot_weights(model, example, args.out, f"{cfg.task}, length {len(example.x)} steps")
    print(f"wrote {args.out}")
    return 0
