"""Bits per token, the same definition for every family.

``evaluate(model, ids)`` is a full pass over a split: every token is scored, the first one
conditioned on a virtual end-of-line token (see `seqlab.protocol`). End-of-line tokens (``"\\n"``
at char level, ``<eos>`` at word level) are predicted and counted like any other token; no
begin-of-sequence token is ever scored. Tokens that fell back to ``<unk>`` because they were never
seen in training are scored like any other token (every model gives ``<unk>`` non-zero
probability) and counted in ``unk_tokens``.

    bits_per_token = -sum_t log p(x_t | x_<t) / (N ln 2),  perplexity = exp(nats per token)
    bits_per_char  = the same total / (C ln 2), C the characters of the scored text

Bits per token depend on the level (a bpe token holds several characters, a byte a fraction of
one); bits per character divide the same total by the text's characters (`Vocab.count_chars`),
so char, byte, word and bpe levels compare on one text. At char level the two are equal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from seqlab.errors import TrainingDiverged
from seqlab.protocol import LanguageModel


class ScoreRow:
    """What every task's evaluation result shares: it is a dataclass, and ``as_dict`` gives the
    row that ``--json``, metrics.jsonl and the leaderboard record."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses


@dataclass
class Evaluation(ScoreRow):
    model: str  # the model's name (e.g. "lstm", "ngram")
    split: str  # which split or file was scored
    tokens: int  # number of tokens scored (N)
    nats: float  # total negative log-likelihood, in nats
    bits_per_token: float
    chars: int  # characters of the scored text (C; see `Vocab.count_chars`)
    bits_per_char: float  # nats / (C ln 2): comparable across levels
    perplexity: float  # exp(nats / N); per word at word level
    unk_tokens: int  # tokens that were unseen in training and scored as <unk>
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: {self.bits_per_token:.4f} bits/token, "
                f"{self.bits_per_char:.4f} bits/char, perplexity {self.perplexity:.2f}, "
                f"{self.tokens:,} tokens, {self.unk_tokens} unknown")


def evaluate(model: LanguageModel, ids: np.ndarray, *, split: str = "valid",
             name: str | None = None) -> Evaluation:
    """Score every token of `ids` with `model` and summarise in bits per token."""
    t0 = time.perf_counter()
    n = len(ids)
    lp = np.asarray(model.log_prob(ids), dtype=np.float64) if n else np.zeros(0)
    if lp.shape != (n,):
        raise AssertionError(f"{type(model).__name__}.log_prob returned {lp.shape}, not ({n},)")
    nats = float(-lp.sum())
    unk = model.vocab.unk_id
    chars = model.vocab.count_chars(ids)
    label: str = getattr(model, "name", type(model).__name__)  # the protocol has no name
    return Evaluation(
        model=name or label,
        split=split,
        tokens=n,
        nats=nats,
        bits_per_token=nats / (n * math.log(2)) if n else float("nan"),
        chars=chars,
        bits_per_char=nats / (chars * math.log(2)) if chars else float("nan"),
        perplexity=math.exp(min(nats / n, 700)) if n else float("nan"),
        unk_tokens=int(np.count_nonzero(np.asarray(ids) == unk)) if unk is not None else 0,
        seconds=time.perf_counter() - t0,
    )


def validator(model: Any, valid: np.ndarray | None) -> Callable[[], dict[str, float]] | None:
    """The trainer's validation callable for a language model: bits per token and per
    character on `valid` (None without a validation split). A score far above the uniform
    distribution's stops the run: the weights have blown up without becoming NaN
    (``train.lr=1e6``)."""
    if valid is None or len(valid) == 0:
        return None
    uniform = math.log2(len(model.vocab))

    def validate() -> dict[str, float]:
        scored = evaluate(model, valid)
        bits = scored.bits_per_token
        if bits > 4 * uniform + 1:
            raise TrainingDiverged(
                f"training stopped: validation reached {bits:.4g} bits/token, far above the "
                f"uniform distribution's {uniform:.2f}; the run diverged, this step was not saved "
                "and earlier checkpoints are kept. Try a lower train.lr")
        return {"bits_per_token": bits, "bits_per_char": scored.bits_per_char}

    return validate
