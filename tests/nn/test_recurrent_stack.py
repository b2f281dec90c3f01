"""Recurrent stacks: fused == reference, padding, causality, residuals, state carried across
windows, step == forward, dropout masks and initialisation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.nn.recurrent import RecurrentStack, StackConfig

CELLS = ["rnn", "lstm", "gru"]


def _stack(seed: int = 0, input_size: int = 5, **kw: object) -> RecurrentStack:
    torch.manual_seed(seed)
    return RecurrentStack(input_size, StackConfig(**{"hidden": 6, "layers": 2, **kw}))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fused_and_reference_run_the_same_weights(cell: str, bidirectional: bool) -> None:
    stack = _stack(cell=cell, bidirectional=bidirectional, residual=True)
    x = torch.randn(3, 8, 5, requires_grad=True)
    lengths = torch.tensor([8, 5, 1])
    runs = []
    for impl in ("fused", "reference"):
        stack.cfg.impl = impl
        out, state = stack(x, lengths=lengths)
        loss = (out * torch.linspace(-1, 1, out.shape[-1])).sum() + sum(s.sum() for s in state)
        runs.append((out, state, torch.autograd.grad(loss, [x, *stack.parameters()])))
    (o1, s1, g1), (o2, s2, g2) = runs
    torch.testing.assert_close(o2, o1, atol=1e-6, rtol=1e-6)
    for a, b in zip([*s1, *g1], [*s2, *g2], strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_padding_changes_nothing(impl: str) -> None:
    """A padded batch gives each sequence what it gets alone; padded steps output zeros."""
    stack = _stack(cell="gru", bidirectional=True, impl=impl)
    x = torch.randn(2, 7, 5)
    out, (h,) = stack(x, lengths=torch.tensor([7, 4]))
    alone, (h_alone,) = stack(x[1:, :4])
    torch.testing.assert_close(out[1, :4], alone[0])
    torch.testing.assert_close(h[:, 1], h_alone[:, 0])
    assert (out[1, 4:] == 0).all()


@settings(max_examples=12, deadline=None)
@given(t=st.integers(0, 9), cell=st.sampled_from(CELLS), skip=st.sampled_from([0, 3]))
def test_unidirectional_outputs_before_t_ignore_input_at_t(t: int, cell: str, skip: int) -> None:
    stack = _stack(cell=cell, time_skip=skip, residual=True)
    x = torch.randn(2, 10, 5)
    y = x.clone()
    y[:, t] += torch.randn(2, 5)
    a, b = stack(x)[0], stack(y)[0]
    torch.testing.assert_close(a[:, :t], b[:, :t], atol=0, rtol=0)
    assert (a[:, t] - b[:, t]).abs().max() > 1e-4


def test_bidirectional_halves_read_past_and_future() -> None:
    stack = _stack(cell="lstm", bidirectional=True, layers=1)
    x = torch.randn(1, 9, 5)
    y = x.clone()
    y[:, 4] += 1.0
    a, b = stack(x)[0], stack(y)[0]
    fwd, bwd = slice(0, 6), slice(6, 12)
    torch.testing.assert_close(a[:, :4, fwd], b[:, :4, fwd], atol=0, rtol=0)  # past only
    torch.testing.assert_close(a[:, 5:, bwd], b[:, 5:, bwd], atol=0, rtol=0)  # future only
    assert (a[:, 0, bwd] - b[:, 0, bwd]).abs().max() > 1e-5


def test_gnmt_residual_adds_layer_input() -> None:
    stack = _stack(cell="lstm", layers=3, residual=True, residual_start=2, input_size=6)
    x = torch.randn(2, 5, 6)
    out, _ = stack(x)
    h0 = [s for s in stack.initial_state(2)]
    y1, _ = stack.layers[0](x, tuple(s[0:1] for s in h0))
    y2, _ = stack.layers[1](y1, tuple(s[1:2] for s in h0))
    y3, _ = stack.layers[2](y2 + y1, tuple(s[2:3] for s in h0))
    torch.testing.assert_close(out, y3 + y2 + y1)


def test_state_carries_across_windows_and_step_equals_forward() -> None:
    stack = _stack(cell="lstm", time_skip=2, peepholes=True)
    with torch.no_grad():
        for layer in stack.layers:
            layer.peep.normal_()
    x = torch.randn(2, 9, 5)
    full, s_full = stack(x)
    first, s = stack(x[:, :4])
    rest, s = stack(x[:, 4:], s)
    torch.testing.assert_close(torch.cat([first, rest], 1), full)
    s = stack.initial_state(2)
    for t in range(9):
        y, s = stack.step(x[:, t], s)
        torch.testing.assert_close(y, full[:, t])
    for a, b in zip(s, s_full, strict=True):
        torch.testing.assert_close(a, b)


def test_time_skip_keeps_gradients_alive() -> None:
    """A skip every 10 steps gives dL/dx_{T-50} an identity path a tanh RNN otherwise lacks."""
    norms = {}
    for k in (0, 10):
        stack = _stack(cell="rnn", hidden=32, layers=1, time_skip=k, input_size=4)
        x = torch.randn(4, 60, 4, requires_grad=True)
        out, _ = stack(x)
        (g,) = torch.autograd.grad(out[:, -1].sum(), [x])
        norms[k] = float(g[:, 9].norm())  # 50 steps before the last output
    assert norms[10] > 1e4 * norms[0]


def test_variational_dropout_shares_one_mask_across_time() -> None:
    stack = _stack(cell="gru", layers=2, dropout=0.5, variational=True)
    stack.train()
    captured = []
    stack.layers[1].register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    torch.manual_seed(3)
    stack(torch.randn(2, 6, 5))
    zeros = captured[0] == 0  # (B, T, H): dropped units
    assert zeros.any() and (zeros == zeros[:, :1]).all()
    stack.eval()  # no dropout at evaluation: deterministic
    x = torch.randn(1, 3, 5)
    torch.testing.assert_close(stack(x)[0], stack(x)[0], atol=0, rtol=0)


def test_layer_dropout_rates_per_gap() -> None:
    cfg = StackConfig(layers=3, dropout=0.1, layer_dropout=(0.2, 0.4))
    assert [cfg.gap_dropout(i) for i in range(2)] == [0.2, 0.4]
    assert StackConfig(layers=3, dropout=0.1).gap_dropout(1) == 0.1


def test_initialisation_schemes() -> None:
    H = 8
    orth = _stack(cell="lstm", hidden=H, init="orthogonal", forget_bias=1.0)
    w = orth.layers[1].rnn.weight_hh_l0
    for g in range(4):
        block = w[g * H:(g + 1) * H]
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
    for layer in orth.layers:
        b = layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0
        assert torch.equal(b[H:2 * H], torch.ones(H)) and torch.equal(b[:H], torch.zeros(H))
    uni = _stack(cell="gru", init="uniform", init_scale=0.05)
    assert all(p.abs().max() <= 0.05 for p in uni.parameters())
    xav = _stack(cell="rnn", hidden=H, init="xavier", input_size=5)
    bound = (6 / (5 + H)) ** 0.5
    assert xav.layers[0].rnn.weight_ih_l0.abs().max() <= bound
    assert xav.layers[0].rnn.bias_ih_l0.abs().max() == 0
    default = _stack(cell="lstm", hidden=H, forget_bias=1.0)  # default init, forget bias set
    b = default.layers[0].rnn.bias_ih_l0 + default.layers[0].rnn.bias_hh_l0
    assert torch.equal(b[H:2 * H], torch.ones(H))
