"""The recurrent language model: embedding -> RNN/LSTM/GRU stack -> softmax.

The stack, with its cells, residuals, bidirectional layers, dropout and initialisation schemes,
is the shared block `seqlab.nn.recurrent.RecurrentStack`; this module adds the embedding, the
output layer (optionally tied to the embedding, Press & Wolf 2017) and the LM's own checks. The
builders ``rnn``, ``lstm`` and ``gru`` are presets in the registry.
References: Elman (1990); Hochreiter & Schmidhuber (1997); Cho et al. (2014).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.models.base import NeuralLM
from seqlab.nn.recurrent import RecurrentStack, StackConfig, State


# --- the language model -------------------------------------------------------------------------
@dataclass
class RecurrentConfig(StackConfig):
    """The recurrent LM: a `StackConfig` plus the embedding and the output layer."""

    emb_dim: int = 64  # token embedding size
    tie_weights: bool = False  # share embedding and output matrices (needs emb_dim == hidden)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bidirectional:
            raise SeqlabError("model.bidirectional=true: a left-to-right language model must not "
                              "read the token it predicts; valid: model.bidirectional=false "
                              "(bidirectional stacks are for encoders and taggers, see "
                              "seqlab.models.heads)")
        if self.emb_dim < 1:
            raise SeqlabError(f"model.emb_dim must be >= 1, got {self.emb_dim}")
        if self.tie_weights and self.emb_dim != self.hidden:
            raise SeqlabError("model.tie_weights needs model.emb_dim == model.hidden, got "
                              f"{self.emb_dim} and {self.hidden}")
        if self.residual and self.residual_start == 1 and self.emb_dim != self.hidden:
            raise SeqlabError(f"model.residual_start=1 adds the embedding to layer 1's output, "
                              f"which needs model.emb_dim == model.hidden, got {self.emb_dim} and "
                              f"{self.hidden}; valid: model.residual_start >= 2")


class RecurrentLM(NeuralLM):
    family = "recurrent"
    Config = RecurrentConfig
    width = "hidden"  # the key `compare --params` sizes

    def __init__(self, config: RecurrentConfig, vocab: Vocab) -> None:
        super().__init__(config, vocab)
        c, V = config, len(vocab)
        self.name = c.cell
        self.embed = nn.Embedding(V, c.emb_dim)
        self.drop = nn.Dropout(c.dropout)
        self.stack = RecurrentStack(c.emb_dim, c)
        self.head = nn.Linear(c.hidden, V)
        if c.tie_weights:
            self.head.weight = self.embed.weight

    def initial_state(self, batch_size: int = 1) -> State:
        return self.stack.initial_state(batch_size)

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().checkpoint()
        if self.config.tie_weights:  # one tensor under two names: safetensors stores it once
            tensors.pop("model.head.weight")
        return tensors, meta

    def load_checkpoint(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if self.config.tie_weights and "model.embed.weight" in tensors:
            tensors = {**tensors, "model.head.weight": tensors["model.embed.weight"]}
        super().load_checkpoint(tensors)

    def forward(self, idx: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """idx (B, T) token ids -> logits (B, T, V) and the final state."""
        x = self.drop(self.embed(idx))  # (B, T, E)
        out, state = self.stack(x, state)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)

    def trace(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits through the hand-written cells, and tensors whose gradients diagnose the
        gradient flow: ``input`` (the embeddings) and ``layer{i}`` (a zero probe added to h_t, so
        its gradient is the total dL/dh_t), each (B, T, D)."""
        x = self.embed(idx).detach().requires_grad_(True)  # (B, T, E)
        out, _, traces = self.stack.trace(x)
        probes = {f"layer{i + 1}": t[0]["probe"] for i, t in enumerate(traces)}
        return self.head(out), {"input": x, **probes}
