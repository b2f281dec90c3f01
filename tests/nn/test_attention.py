"""Attention: hand-computed values, masking (sum to 1, exactly 0 on padding), float64 gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from seqlab.errors import SeqlabError
from seqlab.nn.attention import Attention

KINDS = ("bahdanau", "dot", "general")


def _inputs(B: int = 3, S: int = 5, H: int = 4, dtype: torch.dtype = torch.float32
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    query = torch.randn(B, H, generator=g, dtype=dtype)
    values = torch.randn(B, S, H, generator=g, dtype=dtype)
    mask = torch.arange(S)[None, :] < torch.tensor([5, 2, 1])[:, None]  # (B, S)
    return query, values, mask


def test_luong_dot_golden_values() -> None:
    att = Attention("dot", 2, 2)
    query = torch.tensor([[1.0, 0.0]])
    values = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])  # last position is padding
    context, weights = att(query, att.project(values), values, torch.tensor([[True, True, False]]))
    e = math.e
    assert weights.tolist()[0] == pytest.approx([e / (e + 1), 1 / (e + 1), 0.0], abs=1e-7)
    assert context.tolist()[0] == pytest.approx([e / (e + 1), 1 / (e + 1)], abs=1e-7)


def test_bahdanau_and_general_match_their_formulas() -> None:
    query, values, mask = _inputs(dtype=torch.float64)
    for kind in ("bahdanau", "general"):
        torch.manual_seed(1)
        att = Attention(kind, 4, 4).double()
        _, weights = att(query, att.project(values), values, mask)
        if kind == "bahdanau":  # v^T tanh(W_q q + b + W_k h_j)
            pre = (query @ att.query_proj.weight.T + att.query_proj.bias)[:, None, :]
            scores = torch.tanh(pre + values @ att.key_proj.weight.T) @ att.v.weight[0]
        else:  # q^T W h_j
            scores = torch.einsum("bq,qk,bsk->bs", query, att.key_proj.weight, values)
        expected = torch.softmax(scores.masked_fill(~mask, -torch.inf), -1)
        assert torch.allclose(weights, expected, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_are_exactly_zero_on_padding(kind: str) -> None:
    query, values, mask = _inputs()
    att = Attention(kind, 4, 4)
    context, weights = att(query, att.project(values), values, mask)
    assert torch.all(weights[~mask] == 0.0)  # exactly, not approximately
    assert torch.allclose(weights.sum(-1), torch.ones(3), atol=1e-6)
    assert torch.all(weights[mask] > 0)
    # whatever sits in the padded positions cannot change anything
    noisy = values.masked_fill(~mask[..., None], 1e4)
    context2, weights2 = att(query, att.project(noisy), noisy, mask)
    assert torch.equal(weights, weights2) and torch.allclose(context, context2, atol=1e-6)


class _Full(torch.nn.Module):
    """Key projection and attention in one call, so functional_call reaches every parameter."""

    def __init__(self, att: Attention) -> None:
        super().__init__()
        self.att = att

    def forward(self, q: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.att(q, self.att.project(v), v, mask)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind: str) -> None:
    torch.manual_seed(2)
    full = _Full(Attention(kind, 4, 4)).double()
    names = [n for n, _ in full.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in full.named_parameters()]
    query, values, mask = _inputs(dtype=torch.float64)

    def f(q: torch.Tensor, v: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return functional_call(full, dict(zip(names, ps, strict=True)), (q, v, mask))

    inputs = (query.requires_grad_(), values.requires_grad_(), *params)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_dot_attention_needs_matching_sizes() -> None:
    with pytest.raises(SeqlabError, match="dot attention needs query and key sizes to match"):
        Attention("dot", 4, 6)
