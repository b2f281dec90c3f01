"""Fixed-window neural language model (Bengio, Ducharme, Vincent & Jauvin 2003).

The previous n tokens are embedded, concatenated and passed through an MLP; a softmax over the
vocabulary follows. With ``direct=True`` the concatenated embeddings also feed the output layer
directly, the paper's optional "direct connections"::

    x = [C(w_{t-n+1}); ...; C(w_t)]                              (n * emb_dim)
    y = b + W x + U tanh(d + H x)                                  (logits over the vocabulary)

Like an n-gram of order n + 1 it sees exactly n tokens; unlike it, similar contexts share
statistical strength through the embeddings. Its state between steps is just the last n tokens
(the end-of-line token stands in before a stream starts), so training windows are independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.models.base import NeuralLM

State = torch.Tensor  # (B, context): the last `context` tokens consumed, oldest first


@dataclass
class WindowConfig:
    """Shape of the fixed-window MLP LM."""

    context: int = 8  # n: tokens the prediction sees (an n-gram of order n + 1)
    emb_dim: int = 32  # embedding size per token
    hidden: int = 512  # units per hidden layer
    layers: int = 1  # hidden layers of the MLP (Bengio et al. use one)
    activation: Literal["tanh", "relu"] = "tanh"  # tanh as in the paper
    dropout: float = 0.1  # on the concatenated embeddings and on hidden layers
    direct: bool = False  # the paper's direct connections from embeddings to output

    def __post_init__(self) -> None:
        if min(self.context, self.emb_dim, self.hidden, self.layers) < 1:
            raise SeqlabError("model.context, emb_dim, hidden and layers must be >= 1, got "
                              f"{self.context}, {self.emb_dim}, {self.hidden}, {self.layers}")
        if not 0 <= self.dropout < 1:
            raise SeqlabError(f"model.dropout must be in [0, 1), got {self.dropout}")


class WindowLM(NeuralLM):
    family = "window"
    Config = WindowConfig
    width = "hidden"  # the key `compare --params` sizes
    carries_state = False  # training windows are independent: each starts from end-of-lines

    def __init__(self, config: WindowConfig, vocab: Vocab) -> None:
        super().__init__(config, vocab)
        c, V = config, len(vocab)
        self.name = "window"
        self.embed = nn.Embedding(V, c.emb_dim)
        act = nn.Tanh if c.activation == "tanh" else nn.ReLU
        width, mlp = c.context * c.emb_dim, []
        for i in range(c.layers):
            mlp += [nn.Linear(width if i == 0 else c.hidden, c.hidden), act(),
                    nn.Dropout(c.dropout)]
        self.drop = nn.Dropout(c.dropout)
        self.mlp = nn.Sequential(*mlp)
        self.head = nn.Linear(c.hidden, V)
        self.direct = nn.Linear(width, V, bias=False) if c.direct else None

    def initial_state(self, batch_size: int = 1) -> State:
        return torch.full((batch_size, self.config.context), self.vocab.eos_id, dtype=torch.long,
                          device=self.device)

    def windows(self, idx: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """The n tokens ending at every position: idx (B, T) -> (B, T, n), and the new state."""
        n = self.config.context
        state = state if state is not None else self.initial_state(idx.shape[0])
        full = torch.cat([state.to(idx.device), idx], 1)  # (B, n + T)
        return full.unfold(1, n, 1)[:, 1:], full[:, -n:]  # window t ends at idx[:, t]

    def forward(self, idx: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """idx (B, T) -> logits (B, T, V) and the last n tokens."""
        win, state = self.windows(idx, state)
        return self._logits(self.embed(win).flatten(2)), state  # (B, T, n*E) -> (B, T, V)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        logits = self.head(self.mlp(x))
        return logits + self.direct(x) if self.direct is not None else logits

    def trace(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the per-position input embeddings (B, T, E) whose ``.grad`` shows the
        gradient flow: exactly zero beyond the window."""
        x = self.embed(idx).detach().requires_grad_(True)  # (B, T, E)
        n, (B, T) = self.config.context, idx.shape
        # Gather embeddings by position, so each gradient lands on its own position; window
        # slots before the stream read the end-of-line embedding, as `initial_state` does.
        pad = self.embed.weight[self.vocab.eos_id].detach().expand(B, n, -1)
        full = torch.cat([pad, x], 1)  # (B, n + T, E)
        pos = torch.arange(T)[:, None] + torch.arange(1, n + 1)  # (T, n): window t ends at x_t
        return self._logits(full[:, pos].flatten(2)), {"input": x}  # (B, T, n, E) -> logits
