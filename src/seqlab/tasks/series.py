"""The time-series task: predict the next observation of real-valued sequences.

Data is a text file with one observation per line (``d`` numbers separated by spaces, tabs or
commas; ``nan`` marks a missing entry) and a blank line between independent sequences, or
seeded constant-velocity tracks (``data.path=generate``). Several sequences are split by
sequence; a single one is split in time (train first, then valid, then test), each block scored
from the model's initial state. The metric is the exact
negative log-likelihood per observed step, in nats (``log_prob`` of the protocol), which the
linear-Gaussian model computes with the Kalman filter.

    seqlab train --model kalman --data series.txt --out runs/kal   # EM
    seqlab eval runs/kal --data other.txt --json                   # nats per step
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from seqlab.data.splits import SplitConfig, Splits
from seqlab.errors import SeqlabError
from seqlab.io import write_json
from seqlab.scoring import ScoreRow
from seqlab.tasks.base import Metrics

GENERATED = "generate"


@dataclass
class SeriesConfig(SplitConfig):
    """Observations from a file, or a simulated constant-velocity target (2-d positions)."""

    path: str = GENERATED  # a file of observations, or "generate"
    sequences: int = 40  # generated independent tracks (split by track)
    steps: int = 100  # generated steps per track
    seed: int = 0  # the simulation's seed

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 2 or self.sequences < 3:
            raise SeqlabError("data.steps must be >= 2 and data.sequences >= 3, got "
                              f"{self.steps} and {self.sequences}")


def parse(lines: Sequence[str], where: str) -> list[np.ndarray]:
    """Sequences (T, d) from text lines; every line must hold the same number of values."""
    seqs: list[list[list[float]]] = [[]]
    width = None
    for n, line in enumerate(lines, 1):
        fields = [f for f in re.split(r"[\s,]+", line.strip()) if f]
        if not fields:
            if seqs[-1]:
                seqs.append([])
            continue
        try:
            row = [float(f) for f in fields]
        except ValueError:
            raise SeqlabError(f"{where}:{n}: expected numbers separated by spaces or commas, "
                              f"got {line.strip()[:40]!r}") from None
        if width is not None and len(row) != width:
            raise SeqlabError(f"{where}:{n}: expected {width} values per line, got {len(row)}")
        if any(math.isinf(v) for v in row):
            raise SeqlabError(f"{where}:{n}: expected finite numbers or nan, got infinity")
        width = len(row)
        seqs[-1].append(row)
    out = [np.array(s, dtype=np.float64) for s in seqs if s]
    if not out:
        raise SeqlabError(f"{where}: expected observations, got none")
    return out


def _read(path: str) -> list[np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise SeqlabError(f"{p}: file not found")
    return parse(p.read_text(encoding="utf-8").splitlines(), path)


def simulate(sequences: int, steps: int, seed: int) -> list[np.ndarray]:
    """Noisy 2-d positions of independent constant-velocity targets (Bar-Shalom's textbook
    model), each starting from the model's initial distribution."""
    from seqlab.models.kalman import LinearGaussianSSM, constant_velocity

    truth = LinearGaussianSSM(**constant_velocity())
    tracks = truth.sample(steps, sequences, random_state=seed)[1]
    return list(tracks)  # (B, T, 2) -> B arrays (T, 2)


SeriesData = Splits[list[np.ndarray]]  # sequences (T, d); real values have no vocabulary


def concat(seqs: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Sequences -> concatenated (N, d) observations and their lengths (hmmlearn style)."""
    return np.concatenate(seqs), [len(s) for s in seqs]


@dataclass
class SeriesEvaluation(ScoreRow):
    model: str
    split: str
    sequences: int
    steps: int
    nats_per_step: float  # -log p(x_t | x_<t) averaged over the steps
    log_likelihood: float
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: {self.nats_per_step:.4f} nats/step, "
                f"log-likelihood {self.log_likelihood:.2f}, {self.steps:,} steps")


class SeriesForecasting:
    """Next-observation density of real-valued sequences (the `Task` protocol)."""

    name: ClassVar[str] = "series"
    DataConfig: ClassVar[type] = SeriesConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {"kalman": ("kalman", {})}
    metric: ClassVar[str] = "nats_per_step"
    metrics: ClassVar[tuple[str, ...]] = ("nats_per_step",)  # what validation reports
    mode: ClassVar[str] = "min"

    def prepare(self, cfg: SeriesConfig, workdir: Path, vocab: Any = None,
                model: Any = None) -> SeriesData:
        main = (simulate(cfg.sequences, cfg.steps, cfg.seed) if cfg.path == GENERATED
                else _read(cfg.path))
        if len(main) == 1:  # one series: contiguous blocks in time
            n_train, n_valid, _ = cfg.split_sizes(len(main[0]))
            blocks = np.split(main[0], [n_train, n_train + n_valid])
            cuts = [[b] if len(b) else [] for b in blocks]
        else:  # several: whole sequences
            n_train, n_valid, _ = cfg.split_sizes(len(main))
            cuts = [main[:n_train], main[n_train : n_train + n_valid], main[n_train + n_valid :]]
        train, valid, test = cuts
        valid = _read(cfg.valid) if cfg.valid else valid
        test = _read(cfg.test) if cfg.test else test
        if not train or len(train[0]) < 2:
            raise SeqlabError(f"{cfg.path}: expected at least 2 training steps, got "
                              f"{sum(len(s) for s in train)}")
        return Splits(None, train, valid, test)

    def save_vocab(self, vocab: Any, path: Path) -> None:
        write_json(path, {"tokens": None})  # real-valued data has no vocabulary

    def load_vocab(self, path: Path) -> None:
        return None

    def describe_data(self, data: SeriesData) -> str:
        return (f"{sum(len(s) for s in data.train):,} steps in {len(data.train)} sequence(s) "
                f"of dimension {data.train[0].shape[1]}")

    def batches(self, data: SeriesData, cfg: SeriesConfig, train: Any, world: Any) -> Any:
        raise SeqlabError("the series task has no torch models yet; use --model kalman")

    def estimator_inputs(self, data: SeriesData) -> tuple[Any, Any, Any]:
        X, lengths = concat(data.train)
        return X, lengths, data.valid

    def validate(self, model: Any, data: SeriesData) -> Callable[[], Metrics] | None:
        return None  # EM has no validation hook; the fitted model is the best

    def evaluate(self, model: Any, split: list[np.ndarray], *, split_name: str, name: str
                 ) -> SeriesEvaluation:
        t0 = time.perf_counter()
        X, lengths = concat(split)
        lp = np.asarray(model.log_prob(X, lengths), dtype=np.float64)
        return SeriesEvaluation(model=name, split=split_name, sequences=len(split),
                                steps=len(lp), nats_per_step=float(-lp.mean()),
                                log_likelihood=float(lp.sum()), seconds=time.perf_counter() - t0)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> list[np.ndarray]:
        return _read(path)

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """The one-step-ahead forecast after the observations given, one per input line."""
        seq = parse(inputs, "<input>")[0]
        mean, _ = model.forecast(seq, 1)
        return [" ".join(f"{v:.6g}" for v in np.atleast_2d(mean)[0])]

    def add_commands(self, sub: Any) -> dict[str, Callable[..., int]]:
        return {}
