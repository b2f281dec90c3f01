"""The one protocol every seqlab model family follows.

Every family, neural or classical, implements `SequenceModel`:

* ``fit(X, lengths=None, *, valid=None, run=None) -> self``: learn from the sequence(s) in ``X``.
  Several independent sequences are passed concatenated, with ``lengths`` (hmmlearn style).
  ``run`` carries the training budget, the run folder and callbacks; families that need none of
  it (counting models) may ignore all but its logging. When ``run.dir`` is set, ``fit`` leaves
  its best model in ``run.best_path``.
* ``log_prob(X, lengths=None) -> np.ndarray``: per-step conditional log-probabilities in nats,
  ``log p(x_t | x_<t)``, one per element of ``X`` (densities for continuous data). Their sum is the
  log-likelihood; evaluation turns them into bits per token, so one definition serves every family.
* ``generate(n, *, prompt=None, seed=None, ...) -> np.ndarray``: sample a continuation.
* ``save(path)`` / ``load(path)``: one safetensors file, self-describing through its JSON metadata.

Models over a finite vocabulary (n-grams, HMMs on text, RNNs, convolutions) are
`LanguageModel`\\ s. They add ``vocab`` and the incremental interface
``initial_state()`` / ``step(token, state) -> (logits, state)``, through which a single sampler
(`seqlab.sampling`) generates from every family: RNN hidden state, n-gram context, HMM belief
and convolution buffers are all just "state".

``step(token, state)`` consumes ``token`` and returns logits for the next one. A stream starts
with ``state = initial_state()`` followed by ``step(vocab.eos_id, state)``: the first token is
predicted as if after an end-of-line, which is also how ``log_prob`` scores it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:
    from seqlab.data.vocab import Vocab
    from seqlab.run import Run

State = Any  # whatever a family carries between steps; opaque to the sampler


@runtime_checkable
class SequenceModel(Protocol):
    family: ClassVar[str]

    def fit(
        self, X: np.ndarray, lengths: list[int] | None = None, *,
        valid: np.ndarray | None = None, run: Run | None = None,
    ) -> Self: ...

    def log_prob(self, X: np.ndarray, lengths: list[int] | None = None) -> np.ndarray: ...

    def generate(self, n: int, *, prompt: np.ndarray | None = None, seed: int | None = None
                 ) -> np.ndarray: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> Self: ...


@runtime_checkable
class LanguageModel(SequenceModel, Protocol):
    vocab: Vocab

    def initial_state(self) -> State: ...

    def step(self, token: int, state: State) -> tuple[torch.Tensor, State]: ...

    def prime(self, prompt: np.ndarray | list[int]) -> tuple[torch.Tensor, State]:
        """Step over the virtual end-of-line and `prompt`; return next-token logits and state."""
        ...


def split_lengths(X: np.ndarray, lengths: list[int] | None) -> list[np.ndarray]:
    """Split concatenated sequences; checks that `lengths` add up to ``len(X)``."""
    from seqlab.errors import SeqlabError

    if lengths is None:
        return [X]
    lengths = [int(n) for n in lengths]
    if any(n < 0 for n in lengths) or sum(lengths) != len(X):
        raise SeqlabError(
            f"lengths must be non-negative and sum to len(X) = {len(X)}, got sum {sum(lengths)}"
            f" over {len(lengths)} sequences"
        )
    bounds = np.cumsum([0, *lengths])
    return [X[a:b] for a, b in itertools.pairwise(bounds)]
