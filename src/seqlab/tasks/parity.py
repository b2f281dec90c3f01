"""An example task, small enough to read in one sitting: per-token parity tagging.

Each input is a string of bits; the tag at position t is the parity (XOR) of bits 1..t, so the
model must carry one bit of memory across the whole sequence. It shows what a new task needs:
this module and one line in `seqlab.tasks.TASKS`. Everything else (``seqlab train/eval/
predict``, ``seqlab compare``, resume, checkpoints) comes from the generic pipeline.

    seqlab train --model parity-lstm --out runs/parity        # generated data, seeded
    seqlab train --model parity-lstm --data bits.txt --out R   # one bit string per line
    echo 0110 | seqlab predict runs/parity                     # -> 0100

The model is a `seqlab.models.heads.SequenceHead`: an embedding of the two bits, a recurrent
stack and a two-class output at every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from seqlab.data.splits import Cursor, SplitConfig, Splits
from seqlab.distributed import World, shard
from seqlab.errors import SeqlabError
from seqlab.io import write_json
from seqlab.scoring import ScoreRow
from seqlab.tasks.base import Metrics

GENERATED = "generate"  # data.path value: draw the data from the seeded generator

_HEAD = {"vocab": 2, "emb_dim": 8, "outputs": 2, "output": "sequence", "loss": "cross_entropy"}


@dataclass
class ParityConfig(SplitConfig):
    """Bit strings from a file (one per line) or from the generator."""

    path: str = GENERATED  # a file of 0/1 lines, or "generate"
    examples: int = 4000  # generated strings (train, valid and test together)
    min_length: int = 2  # generated lengths are uniform in [min_length, max_length]
    max_length: int = 24
    seed: int = 0  # the generator's seed

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.examples < 10 or not 1 <= self.min_length <= self.max_length:
            raise SeqlabError("data.examples must be >= 10 and 1 <= data.min_length <= "
                              f"data.max_length, got {self.examples}, {self.min_length}, "
                              f"{self.max_length}")


def generate(n: int, min_length: int, max_length: int, seed: int) -> list[np.ndarray]:
    """`n` random bit strings; the same seed gives the same strings."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 2, int(k)) for k in rng.integers(min_length, max_length + 1, n)]


def parity(bits: np.ndarray) -> np.ndarray:
    """The tags: running XOR of the bits."""
    return np.bitwise_xor.accumulate(bits) if len(bits) else bits


def parse(lines: Sequence[str], where: str) -> list[np.ndarray]:
    """Bit strings from text lines; anything but 0/1 is an error naming the line."""
    out = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or set(text) - {"0", "1"}:
            raise SeqlabError(f"{where}:{n}: expected a non-empty string of 0 and 1, got "
                              f"{text[:40]!r}")
        out.append(np.array([int(c) for c in text], dtype=np.int64))
    return out


def _read(path: str) -> list[np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise SeqlabError(f"{p}: file not found")
    return parse([ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()], path)


ParityData = Splits[list[np.ndarray]]  # bit strings; the vocabulary (two bits) is fixed


def pad(strings: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bits (B, T) padded with 0, tags (B, T) padded with -100 (ignored by the loss)."""
    T = max(len(s) for s in strings)
    x = torch.zeros(len(strings), T, dtype=torch.long)
    y = torch.full((len(strings), T), -100, dtype=torch.long)
    for i, s in enumerate(strings):
        x[i, : len(s)] = torch.from_numpy(s)
        y[i, : len(s)] = torch.from_numpy(parity(s))
    return x, y


class ParityBatcher(Cursor):
    """Shuffled batches of whole strings; the position is (epoch, index)."""

    def __init__(self, strings: list[np.ndarray], batch_size: int, seed: int) -> None:
        if len(strings) < batch_size:
            raise SeqlabError(f"expected at least train.batch_size = {batch_size} training "
                              f"strings, got {len(strings)}")
        self.strings, self.batch_size, self.seed = strings, batch_size, seed

    def next(self) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        start = self.take(self.batch_size, len(self.strings))
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.strings))
        return pad([self.strings[i] for i in order[start : start + self.batch_size]]), True

    def tokens_per_batch(self) -> int:
        return self.batch_size



@dataclass
class ParityEvaluation(ScoreRow):
    model: str
    split: str
    strings: int
    tokens: int
    token_accuracy: float  # share of tags right
    sequence_accuracy: float  # share of strings with every tag right
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: token accuracy {self.token_accuracy:.2%}, "
                f"sequence accuracy {self.sequence_accuracy:.2%}, {self.strings:,} strings")


def _tags(model: Any, strings: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    with model._inference():
        for s in range(0, len(strings), 256):
            chunk = strings[s : s + 256]
            x, _ = pad(chunk)
            pred = model(x).argmax(-1)  # (B, T)
            out += [pred[i, : len(b)].numpy() for i, b in enumerate(chunk)]
    return out


class ParityTagging:
    """Per-token parity of bit strings (the `Task` protocol)."""

    name: ClassVar[str] = "parity"
    DataConfig: ClassVar[type] = ParityConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "parity-lstm": ("head", {**_HEAD, "recurrent": {"cell": "lstm", "hidden": 32}}),
        "parity-rnn": ("head", {**_HEAD, "recurrent": {"cell": "rnn", "hidden": 32}}),
    }
    metric: ClassVar[str] = "token_accuracy"
    metrics: ClassVar[tuple[str, ...]] = ("token_accuracy",)  # what validation reports
    mode: ClassVar[str] = "max"

    def prepare(self, cfg: ParityConfig, workdir: Path, vocab: Any = None,
                model: Any = None) -> ParityData:
        main = (generate(cfg.examples, cfg.min_length, cfg.max_length, cfg.seed)
                if cfg.path == GENERATED else _read(cfg.path))
        n_train, n_valid, _ = cfg.split_sizes(len(main))
        if n_train < 1:
            raise SeqlabError(f"{cfg.path}: expected training strings after the held-out "
                              "splits, got none")
        held = main[n_train:]
        valid = _read(cfg.valid) if cfg.valid else held[:n_valid]
        test = _read(cfg.test) if cfg.test else held[n_valid:]
        return Splits(None, main[:n_train], valid, test)

    def save_vocab(self, vocab: Any, path: Path) -> None:
        write_json(path, {"tokens": ["0", "1"]})  # fixed: the two bits

    def load_vocab(self, path: Path) -> None:
        return None

    def describe_data(self, data: ParityData) -> str:
        return f"{len(data.train):,} bit strings"

    def batches(self, data: ParityData, cfg: ParityConfig, train: Any, world: World) -> Any:
        return shard(ParityBatcher(data.train, train.batch_size, train.seed), world)

    def estimator_inputs(self, data: ParityData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the parity task trains torch models only")

    def validate(self, model: Any, data: ParityData) -> Callable[[], Metrics] | None:
        if not data.valid:
            return None
        return lambda: {"token_accuracy": self.evaluate(
            model, data.valid, split_name="valid", name="").token_accuracy}

    def evaluate(self, model: Any, split: list[np.ndarray], *, split_name: str, name: str
                 ) -> ParityEvaluation:
        t0 = time.perf_counter()
        pred = _tags(model, split)
        hits = [p == parity(s) for p, s in zip(pred, split, strict=True)]
        tokens = sum(len(s) for s in split)
        return ParityEvaluation(
            model=name, split=split_name, strings=len(split), tokens=tokens,
            token_accuracy=sum(int(h.sum()) for h in hits) / max(tokens, 1),
            sequence_accuracy=sum(bool(h.all()) for h in hits) / max(len(split), 1),
            seconds=time.perf_counter() - t0)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> list[np.ndarray]:
        return _read(path)

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        tags = _tags(model, parse(inputs, "<input>"))
        return ["".join(map(str, t)) for t in tags]

    def add_commands(self, sub: Any) -> dict[str, Callable[..., int]]:
        return {}
