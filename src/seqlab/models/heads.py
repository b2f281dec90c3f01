"""Task heads over the recurrent and convolutional stacks, beside next-token prediction.

``SequenceHead`` reads a sequence of feature vectors (or token ids) with any sequence block of
`seqlab.nn`, a `seqlab.nn.recurrent.RecurrentStack` (unidirectional or bidirectional) or a
WaveNet/TCN stack from `seqlab.nn.conv`, then maps it to

* one output per sequence (many-to-one): the state at the last real step (``last``; for a
  bidirectional stack, the forward half at the end and the backward half at the start), or the
  mean or max over real steps; for regression (the adding problem) or classification;
* one output per step (``sequence``): taggers, and the copy-memory task.

Losses are mean squared error for regression and cross-entropy for classes; padded steps (from
``lengths``) never count. The head has the small interface `seqlab.trainer.Trainer` needs
(``training_loss``, ``configure_optimizer``, ``initial_state``, ``checkpoint``), so the generic
training loop trains it, clipping, schedules and all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.models.base import TorchModel
from seqlab.nn.conv import ConvConfig, build_stack
from seqlab.nn.recurrent import RecurrentStack, StackConfig


@dataclass
class HeadConfig:
    """An encoder stack and what to predict from it."""

    encoder: Literal["recurrent", "conv"] = "recurrent"
    recurrent: StackConfig = field(default_factory=StackConfig)  # used when encoder=recurrent
    conv: ConvConfig = field(default_factory=ConvConfig)  # used when encoder=conv
    inputs: int = 1  # features per step (ignored with `vocab`)
    vocab: int | None = None  # token inputs: embed ids in [0, vocab) instead of features
    emb_dim: int = 16  # embedding size for token inputs
    outputs: int = 1  # regression targets, or classes
    output: Literal["last", "mean", "max", "sequence"] = "last"  # pooling, or one per step
    loss: Literal["mse", "cross_entropy"] = "mse"  # mse: regression; cross_entropy: classes

    def __post_init__(self) -> None:
        if min(self.inputs, self.emb_dim, self.outputs) < 1 or (self.vocab or 1) < 1:
            raise SeqlabError("head inputs, emb_dim, outputs and vocab must be >= 1, got "
                              f"{self.inputs}, {self.emb_dim}, {self.outputs}, {self.vocab}")
        if self.loss == "cross_entropy" and self.outputs < 2:
            raise SeqlabError(f"loss=cross_entropy needs outputs >= 2 classes, got {self.outputs}")


class SequenceHead(TorchModel):
    """``forward(x (B, T, F) or ids (B, T), lengths) -> (B, outputs) or (B, T, outputs)``."""

    family = "head"
    Config = HeadConfig
    width = "recurrent.hidden"  # the key `compare --params` sizes

    def __init__(self, cfg: HeadConfig, vocab: Any = None) -> None:
        super().__init__()  # `vocab` is unused: token inputs are ids below cfg.vocab
        self.config = self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.emb_dim) if cfg.vocab else None
        width = cfg.emb_dim if cfg.vocab else cfg.inputs
        self.encoder: nn.Module = (RecurrentStack(width, cfg.recurrent)
                                   if cfg.encoder == "recurrent" else build_stack(width, cfg.conv))
        self.out = nn.Linear(self.encoder.output_size, cfg.outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)  # (B, T, E)
        h, _ = self.encoder(x, lengths=lengths)  # (B, T, D); a causal conv stack ignores lengths
        if self.cfg.output == "sequence":
            return self.out(h)  # (B, T, outputs)
        return self.out(self._pool(h, lengths))  # (B, outputs)

    def _pool(self, h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, T, D) -> (B, D) over each sequence's real steps."""
        B, T, _ = h.shape
        lengths = lengths if lengths is not None else torch.full((B,), T)
        if self.cfg.output == "last":
            last = h[torch.arange(B), lengths - 1]  # (B, D)
            if self.cfg.encoder == "recurrent" and self.cfg.recurrent.bidirectional:
                H = self.cfg.recurrent.hidden  # the backward half has read everything at t = 0
                last = torch.cat([last[:, :H], h[:, 0, H:]], -1)
            return last
        mask = (torch.arange(T)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
        if self.cfg.output == "mean":
            return (h * mask).sum(1) / lengths[:, None].to(h.dtype)
        return h.masked_fill(~mask, float("-inf")).amax(1)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """MSE, or cross-entropy over classes; targets of -100 (padding) are ignored."""
        if self.cfg.loss == "mse":
            return F.mse_loss(pred, y.to(pred.dtype).view_as(pred))
        return F.cross_entropy(pred.flatten(0, -2), y.flatten(), ignore_index=-100)

    # --- what the generic trainer needs (the rest comes from TorchModel) ----------------------
    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor], state: Any
                      ) -> tuple[torch.Tensor, None]:
        x, y = batch
        return self.loss(self(x), y), None
