"""Recurrent language model: embedding -> stack of RNN/LSTM/GRU layers -> dropout -> softmax.

One class for every cell, chosen by name (composition, not a class per variant); the builders
``rnn``, ``lstm`` and ``gru`` in the registry are presets of it. Training uses PyTorch's fused
``nn.RNN``/``nn.LSTM``/``nn.GRU`` kernels. References: Elman (1990); Hochreiter & Schmidhuber
(1997); Cho et al. (2014); Press & Wolf (2017) for weight tying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.models.base import NeuralLM

State = tuple[torch.Tensor, ...]  # (h,) for RNN/GRU, (h, c) for LSTM; each (layers, B, hidden)
CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class RecurrentConfig:
    """Shape of the recurrent LM."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"  # rnn is Elman's, with tanh
    emb_dim: int = 64  # token embedding size
    hidden: int = 256  # units per layer
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # on embeddings, between layers and before the softmax
    tie_weights: bool = False  # share embedding and output matrices (needs emb_dim == hidden)

    def __post_init__(self) -> None:
        if min(self.emb_dim, self.hidden, self.layers) < 1:
            raise SeqlabError("model.emb_dim, model.hidden and model.layers must be >= 1, got "
                              f"{self.emb_dim}, {self.hidden}, {self.layers}")
        if not 0 <= self.dropout < 1:
            raise SeqlabError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.emb_dim != self.hidden:
            raise SeqlabError("model.tie_weights needs model.emb_dim == model.hidden, got "
                              f"{self.emb_dim} and {self.hidden}")


class RecurrentLM(NeuralLM):
    family = "recurrent"
    Config = RecurrentConfig

    def __init__(self, config: RecurrentConfig, vocab: Vocab) -> None:
        super().__init__(config, vocab)
        c, V = config, len(vocab)
        self.name = c.cell
        self.embed = nn.Embedding(V, c.emb_dim)
        self.drop = nn.Dropout(c.dropout)
        self.rnn = CELLS[c.cell](c.emb_dim, c.hidden, num_layers=c.layers, batch_first=True,
                                 dropout=c.dropout if c.layers > 1 else 0.0)
        self.head = nn.Linear(c.hidden, V)
        if c.tie_weights:
            self.head.weight = self.embed.weight

    def initial_state(self, batch_size: int = 1) -> State:
        c = self.config
        h = torch.zeros(c.layers, batch_size, c.hidden)
        return (h, torch.zeros_like(h)) if c.cell == "lstm" else (h,)

    def forward(self, idx: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """idx (B, T) token ids -> logits (B, T, V) and the final state."""
        state = state if state is not None else self.initial_state(idx.shape[0])
        x = self.drop(self.embed(idx))  # (B, T, E)
        out, new = self.rnn(x, state if self.config.cell == "lstm" else state[0])  # (B, T, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        return logits, (tuple(new) if self.config.cell == "lstm" else (new,))
