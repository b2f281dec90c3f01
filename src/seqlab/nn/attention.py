"""Attention over encoder states: Bahdanau (additive) and Luong dot / general (multiplicative).

Given a query ``q`` (the decoder state), keys ``h_j`` (the encoder states) and a mask of real
source positions, every kind returns the context ``c = sum_j a_j h_j`` and the weights ``a``::

    bahdanau  score_j = v^T tanh(W_q q + W_k h_j)     Bahdanau, Cho & Bengio (2015)
    dot       score_j = q^T h_j                       Luong, Pham & Manning (2015)
    general   score_j = q^T W h_j                     Luong, Pham & Manning (2015)
    a = softmax(score) over unmasked positions

Padded positions get a score of -inf before the softmax, so their weight is exactly 0 and the
weights of the real positions sum to 1. The key projection does not depend on the query, so it
is computed once per source (`project`) and reused at every decoder step.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from seqlab.errors import SeqlabError

Kind = Literal["none", "bahdanau", "dot", "general"]


class Attention(nn.Module):
    """One attention kind; ``forward(query, keys, values, mask) -> (context, weights)``."""

    def __init__(self, kind: Kind, query_dim: int, key_dim: int, hidden: int | None = None
                 ) -> None:
        super().__init__()
        if kind not in ("bahdanau", "dot", "general"):
            raise SeqlabError(f"attention kind must be bahdanau, dot or general, got {kind!r}")
        if kind == "dot" and query_dim != key_dim:
            raise SeqlabError(f"dot attention needs query and key sizes to match, got "
                              f"{query_dim} and {key_dim}")
        self.kind = kind
        if kind == "bahdanau":
            hidden = hidden or query_dim
            self.key_proj = nn.Linear(key_dim, hidden, bias=False)
            self.query_proj = nn.Linear(query_dim, hidden, bias=True)
            self.v = nn.Linear(hidden, 1, bias=False)
        elif kind == "general":
            self.key_proj = nn.Linear(key_dim, query_dim, bias=False)

    def project(self, values: torch.Tensor) -> torch.Tensor:
        """(B, S, K) encoder states -> the keys the scores use (once per source)."""
        return values if self.kind == "dot" else self.key_proj(values)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, Q), projected keys (B, S, ·) -> unnormalised scores (B, S)."""
        if self.kind == "bahdanau":
            return self.v(torch.tanh(self.query_proj(query)[:, None, :] + keys))[..., 0]
        return torch.bmm(keys, query[:, :, None])[..., 0]

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, K) and weights (B, S); `mask` (B, S) is True on real positions."""
        scores = self.scores(query, keys).masked_fill(~mask, float("-inf"))  # (B, S)
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights[:, None, :], values)[:, 0]  # (B, K)
        return context, weights
