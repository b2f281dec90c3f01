"""The language-model task: predict the next token of a text.

Data is a text file (or the built-in corpus) tokenised to a memmapped id stream
(`seqlab.data.corpus`); batches are truncated-BPTT windows (`StreamBatcher`); the metric is bits
per token (`seqlab.scoring`), the same definition for every family; prediction continues a
prompt through the one sampler (`seqlab.sampling`). Its own CLI command is ``seqlab sample``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from seqlab.data.corpus import Corpus, encode_for_eval, prepare
from seqlab.data.corpus import DataConfig as TextConfig
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError, TrainingDiverged
from seqlab.run import Run
from seqlab.scoring import Evaluation, evaluate
from seqlab.tasks.base import Metrics

# Validation above this many times the uniform distribution's bits per token is not a model
# that is still learning: the weights have blown up without becoming NaN (train.lr=1e6).
HOPELESS = 4.0


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
    """

    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, seed: int = 0) -> None:
        self.data, self.B, self.T, self.seed = data, batch_size, seq_len, seed
        self.epoch, self.window = 0, 0
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
        rows = start + self._row_len(self.epoch) * np.arange(self.B)
        idx = rows[:, None] + np.arange(self.T + 1)  # (B, T+1)
        xy = torch.from_numpy(np.asarray(self.data[idx], dtype=np.int64))
        fresh = self.window == 0
        self.window += 1
        return (xy[:, :-1], xy[:, 1:]), fresh

    @property
    def batch_size(self) -> int:
        return self.B

    def tokens_per_batch(self) -> int:
        return self.B * self.T

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, d: Mapping[str, int]) -> None:
        self.epoch, self.window = int(d["epoch"]), int(d["window"])


def fit_stream(model: Any, X: np.ndarray, valid: np.ndarray | None, run: Run) -> None:
    """Train a torch language model on a token stream (the notebook path of ``fit``)."""
    from seqlab.trainer import Trainer

    batches = StreamBatcher(X, run.train.batch_size, run.train.seq_len, run.train.seed)
    Trainer(run).fit(model, batches, _validator(model, valid))  # type: ignore[arg-type]


def _validator(model: Any, valid: np.ndarray | None) -> Callable[[], Metrics] | None:
    if valid is None or len(valid) == 0:
        return None
    uniform = math.log2(len(model.vocab))

    def validate() -> Metrics:
        bits = evaluate(model, valid).bits_per_token
        if bits > HOPELESS * uniform + 1:
            raise TrainingDiverged(
                f"training stopped: validation reached {bits:.4g} bits/token, far above the "
                f"uniform distribution's {uniform:.2f}; the run diverged and its best checkpoint "
                "was kept. Try a lower train.lr")
        return {"bits_per_token": bits}

    return validate


class LanguageModeling:
    """Next-token prediction on text (the `Task` protocol)."""

    name: ClassVar[str] = "lm"
    DataConfig: ClassVar[type] = TextConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "ngram": ("ngram", {}),
        "rnn": ("recurrent", {"cell": "rnn"}),
        "lstm": ("recurrent", {"cell": "lstm"}),
        "gru": ("recurrent", {"cell": "gru"}),
        "hmm": ("hmm", {}),
        "window": ("window", {}),
        "tcn": ("conv", {"kind": "tcn"}),
        "wavenet": ("conv", {"kind": "wavenet"}),
    }
    metric: ClassVar[str] = "bits_per_token"
    metrics: ClassVar[tuple[str, ...]] = ("bits_per_token",)  # what validation reports
    mode: ClassVar[str] = "min"

    def prepare(self, cfg: TextConfig, workdir: Path, vocab: Vocab | None = None,
                model: Any = None) -> Corpus:
        return prepare(cfg, workdir, vocab=vocab)

    def save_vocab(self, vocab: Vocab, path: Path) -> None:
        vocab.save(path)

    def load_vocab(self, path: Path) -> Vocab:
        return Vocab.load(path)

    def describe_data(self, data: Corpus) -> str:
        return (f"{len(data.train):,} {data.vocab.level} tokens (vocabulary {len(data.vocab)})")

    def batches(self, data: Corpus, cfg: TextConfig, train: Any) -> StreamBatcher:
        return StreamBatcher(data.train, train.batch_size, train.seq_len, train.seed)

    def estimator_inputs(self, data: Corpus) -> tuple[np.ndarray, list[int] | None, Any]:
        """``fit(X, lengths, valid=...)`` arguments for counting and EM models."""
        return data.train, None, data.valid

    def validate(self, model: Any, data: Corpus) -> Callable[[], Metrics] | None:
        return _validator(model, data.valid)

    def evaluate(self, model: Any, split: np.ndarray, *, split_name: str, name: str
                 ) -> Evaluation:
        return evaluate(model, split, split=split_name, name=name)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> np.ndarray:
        return encode_for_eval(path, model.vocab, workdir)

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """One sampled continuation per prompt; `options` are `SampleConfig` keys."""
        from seqlab.config import from_dict
        from seqlab.sampling import SampleConfig, sample_text

        out = []
        for prompt in inputs:
            cfg = from_dict(SampleConfig, {**options, "prompt": prompt, "num_samples": 1},
                            prefix="sample.")
            out.append("".join(next(iter(sample_text(model, cfg)))))
        return out

    def add_commands(self, sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
        s = sub.add_parser("sample", help="generate text from a trained language model")
        s.add_argument("run", help="run folder or checkpoint file")
        s.add_argument("--prompt", help="text to continue")
        s.add_argument("--length", type=int, help="tokens per sample")
        s.add_argument("--temperature", type=float)
        s.add_argument("--top-k", type=int)
        s.add_argument("--top-p", type=float)
        s.add_argument("--greedy", action="store_true", default=None)
        s.add_argument("--num-samples", type=int)
        s.add_argument("--seed", type=int)
        s.add_argument("overrides", nargs="*", metavar="sample.key=value",
                       help="dotted overrides of the sample section")
        return {"sample": cmd_sample}


def cmd_sample(args: argparse.Namespace) -> int:
    """``seqlab sample RUN``: stream samples to standard output."""
    from seqlab.config import apply_overrides, from_dict
    from seqlab.experiment import load_run
    from seqlab.protocol import LanguageModel
    from seqlab.sampling import SampleConfig, sample_text

    model, config = load_run(args.run)
    if not isinstance(model, LanguageModel):
        raise SeqlabError(f"{args.run}: expected a language model run, got a {model.family} "
                          "model; use the command for its task (e.g. seqlab translate)")
    raw = apply_overrides({"sample": dict(config.get("sample", {}))}, args.overrides)
    if set(raw) != {"sample"}:
        raise SeqlabError(f"sample accepts only sample.* overrides, got {sorted(raw)}")
    flags = {"length": args.length, "temperature": args.temperature, "top_k": args.top_k,
             "top_p": args.top_p, "greedy": args.greedy, "num_samples": args.num_samples,
             "seed": args.seed, "prompt": args.prompt}  # the prompt verbatim: no YAML parsing
    raw["sample"].update({k: v for k, v in flags.items() if v is not None})
    cfg = from_dict(SampleConfig, raw["sample"], prefix="sample.")
    for i, pieces in enumerate(sample_text(model, cfg)):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
