"""The convolutional language model: embedding -> WaveNet or TCN stack -> softmax.

The stacks (dilated causal convolutions with carried buffers, their receptive fields and the
incremental queue scheme for generation) are the shared blocks of `seqlab.nn.conv`, together
with `ConvConfig`, which configures both a stack and this model. References: van den Oord et al.
(2016, WaveNet); Bai, Kolter & Koltun (2018, TCN); Paine et al. (2016, fast generation).
"""

from __future__ import annotations

import sys
from typing import Self

import numpy as np
import torch
from torch import nn

from seqlab.data.vocab import Vocab
from seqlab.models.base import NeuralLM
from seqlab.nn.conv import ConvConfig, State, build_stack
from seqlab.run import Run


# --- the language model -------------------------------------------------------------------------
class ConvLM(NeuralLM):
    """Embedding -> WaveNet or TCN stack -> softmax. Trained on independent windows (each starts
    from zero context, as in Bai et al.); scored and sampled with carried buffers, exactly."""

    family = "conv"
    Config = ConvConfig
    width = "channels"  # the key `compare --params` sizes
    carries_state = False

    def __init__(self, config: ConvConfig, vocab: Vocab) -> None:
        super().__init__(config, vocab)
        self.name = config.kind
        self.embed = nn.Embedding(len(vocab), config.emb_dim)
        self.drop = nn.Dropout(config.dropout)
        self.stack = build_stack(config.emb_dim, config)
        self.head = nn.Linear(self.stack.output_size, len(vocab))

    @property
    def receptive_field(self) -> int:
        return self.stack.receptive_field

    def initial_state(self, batch_size: int = 1) -> State:
        return self.stack.initial_state(batch_size)

    def forward(self, idx: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """idx (B, T) -> logits (B, T, V) and the buffers after the last token."""
        x = self.drop(self.embed(idx))  # (B, T, E)
        y, state = self.stack(x, state)  # (B, T, C)
        return self.head(self.drop(y)), state

    def fit(self, X: np.ndarray, lengths: list[int] | None = None, *,
            valid: np.ndarray | None = None, run: Run | None = None) -> Self:
        run = run or Run()
        rf = self.receptive_field
        print(f"{self.name}: receptive field {rf} tokens", file=sys.stderr)
        run.log({"kind": "model", "step": 0, "receptive_field": rf,
                 "parameters": self.num_parameters()})
        if run.train.seq_len < rf:
            print(f"note: train.seq_len={run.train.seq_len} is shorter than the receptive field;"
                  " training windows never fill it (scoring and sampling do)", file=sys.stderr)
        return super().fit(X, lengths, valid=valid, run=run)

    def describe(self) -> dict:
        return {**super().describe(), "receptive_field": self.receptive_field}

    def trace(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and tensors whose ``.grad`` diagnoses gradient flow: ``input`` (embeddings)
        and ``layer{i}`` (each layer's output), each (B, T, C)."""
        x = self.embed(idx).detach().requires_grad_(True)
        taps: list[torch.Tensor] = []
        y, _ = self.stack(x, taps=taps)
        return self.head(y), {"input": x, **{f"layer{i + 1}": t for i, t in enumerate(taps)}}
