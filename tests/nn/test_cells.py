"""Hand-written cells: equal to PyTorch's fused kernels (values and gradients), gradcheck, gates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.nn.cells import CELL_CLASSES, ElmanCell, GRUCell, LSTMCell, scan
from seqlab.nn.recurrent import RecurrentStack, StackConfig

FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]


def _pair(kind: str, nonlinearity: str | None, I: int, H: int, dtype=torch.float32):
    """A fused single-layer module and a hand-written cell holding the same weights."""
    kw = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    fused = FUSED[kind](I, H, batch_first=True, **kw).to(dtype)
    cell = CELL_CLASSES[kind](I, H, **kw).to(dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(fused, name + "_l0"))
    return fused, cell


@pytest.mark.parametrize(("kind", "nonlinearity"), KINDS)
def test_reference_equals_fused_forward_and_backward(kind: str, nonlinearity: str | None) -> None:
    torch.manual_seed(0)
    B, T, I, H = 3, 9, 5, 7
    fused, cell = _pair(kind, nonlinearity, I, H)
    x = torch.randn(B, T, I, requires_grad=True)
    h0 = [torch.randn(1, B, H, requires_grad=True) for _ in range(2 if kind == "lstm" else 1)]
    out_f, st_f = fused(x, tuple(h0) if kind == "lstm" else h0[0])
    st_f = st_f if kind == "lstm" else (st_f,)
    out_r, st_r = cell(x, tuple(h[0] for h in h0))
    torch.testing.assert_close(out_r, out_f, atol=1e-6, rtol=1e-6)
    for a, b in zip(st_r, st_f, strict=True):
        torch.testing.assert_close(a, b[0], atol=1e-6, rtol=1e-6)

    # The same scalar loss through both; compare every gradient. "To 1e-6" means
    # |a - b| <= 1e-6 + 1e-6 |b|: a parameter gradient sums B*T float32 terms of size ~1.
    w = torch.randn_like(out_f)
    grads_f = torch.autograd.grad((out_f * w).sum() + sum(s.sum() for s in st_f),
                                  [x, *h0, *fused.parameters()])
    grads_r = torch.autograd.grad((out_r * w).sum() + sum(s.sum() for s in st_r),
                                  [x, *h0, *cell.parameters()])
    for gf, gr in zip(grads_f, grads_r, strict=True):
        torch.testing.assert_close(gr, gf, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("cls", [ElmanCell, LSTMCell, GRUCell])
def test_gradcheck_each_cell_float64(cls: type) -> None:
    torch.manual_seed(1)
    cell = cls(3, 4).double()
    if cls is LSTMCell:
        cell = LSTMCell(3, 4, peepholes=True).double()
        with torch.no_grad():
            cell.weight_peep.normal_()  # non-zero peepholes, so their gradient is exercised
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
                  for _ in cell.initial_state(2))
    params = list(cell.parameters())

    def f(x, *rest):
        st, ps = rest[:len(state)], rest[len(state):]
        names = [n for n, _ in cell.named_parameters()]
        out, new = torch.func.functional_call(cell, dict(zip(names, ps, strict=True)), (x, st))
        return out, *new

    assert torch.autograd.gradcheck(f, (x, *state, *params), eps=1e-6, atol=1e-6)


def test_gradcheck_three_step_unrolled_stack_float64() -> None:
    """2 layers, bidirectional, residual, skip across time, peepholes: 3 unrolled steps."""
    torch.manual_seed(2)
    cfg = StackConfig(cell="lstm", hidden=3, layers=2, impl="reference", bidirectional=True,
                      residual=True, time_skip=2, peepholes=True)
    stack = RecurrentStack(6, cfg).double()
    with torch.no_grad():
        for layer in stack.layers:
            layer.peep.normal_()
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in stack.named_parameters()]

    def f(x, *ps):
        out, state = torch.func.functional_call(stack, dict(zip(names, ps, strict=True)), (x,))
        return out, *state

    assert torch.autograd.gradcheck(f, (x, *stack.parameters()), eps=1e-6, atol=1e-6)


def test_lstm_gates_reproduce_outputs() -> None:
    torch.manual_seed(3)
    cell = LSTMCell(4, 6)
    x = torch.randn(2, 5, 4)
    out, (_, c), g = cell(x, return_gates=True)
    c_prev = torch.cat([torch.zeros(2, 1, 6), g["c"][:, :-1]], 1)
    torch.testing.assert_close(g["c"], g["f"] * c_prev + g["i"] * g["g"])
    torch.testing.assert_close(out, g["o"] * torch.tanh(g["c"]))
    assert ((g["f"] > 0) & (g["f"] < 1)).all() and ((g["g"] > -1) & (g["g"] < 1)).all()
    torch.testing.assert_close(c, g["c"][:, -1])


def test_gru_gates_reproduce_outputs() -> None:
    torch.manual_seed(4)
    cell = GRUCell(4, 6)
    x = torch.randn(2, 5, 4)
    out, _, g = cell(x, return_gates=True)
    h_prev = torch.cat([torch.zeros(2, 1, 6), out[:, :-1]], 1)
    torch.testing.assert_close(out, (1 - g["z"]) * g["n"] + g["z"] * h_prev)


def test_peephole_step_by_hand() -> None:
    torch.manual_seed(5)
    cell = LSTMCell(2, 3, peepholes=True)
    with torch.no_grad():
        cell.weight_peep.normal_()
    x, h, c = torch.randn(1, 2), torch.randn(1, 3), torch.randn(1, 3)
    pre = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = pre.chunk(4, -1)
    p = cell.weight_peep
    c_new = torch.sigmoid(f + p[1] * c) * c + torch.sigmoid(i + p[0] * c) * torch.tanh(g)
    h_new = torch.sigmoid(o + p[2] * c_new) * torch.tanh(c_new)
    y, (h2, c2) = cell.step(x, (h, c))
    torch.testing.assert_close(c2, c_new)
    torch.testing.assert_close(h2, h_new)
    torch.testing.assert_close(y, h_new)


def test_zero_peepholes_equal_plain_lstm() -> None:
    torch.manual_seed(6)
    plain, peep = LSTMCell(3, 4), LSTMCell(3, 4, peepholes=True)
    peep.load_state_dict({**plain.state_dict(), "weight_peep": torch.zeros(3, 4)})
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(peep(x)[0], plain(x)[0], atol=0, rtol=0)


def test_step_equals_forward_and_mask_freezes_state() -> None:
    torch.manual_seed(7)
    cell = GRUCell(3, 5)
    x = torch.randn(2, 4, 3)
    out, state = cell(x)
    st = cell.initial_state(2)
    for t in range(4):
        y, st = cell.step(x[:, t], st)
        torch.testing.assert_close(y, out[:, t])
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out_m, (h_m,) = cell(x, mask=mask)
    torch.testing.assert_close(h_m[0], out[0, 1])  # row 0 stopped after step 2
    torch.testing.assert_close(h_m[1], state[0][1])
    assert (out_m[0, 2:] == 0).all()


def test_skip_across_time_by_hand() -> None:
    torch.manual_seed(8)
    cell = ElmanCell(2, 3)
    x = torch.randn(1, 5, 2)
    r = scan("rnn", x, cell.initial_state(1), cell.weights(), skip=2)
    h, hs = torch.zeros(1, 3), [torch.zeros(1, 3)] * 2
    for t in range(5):
        h = torch.tanh(x[:, t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T
                       + cell.bias_hh) + hs[-2]
        hs.append(h)
        torch.testing.assert_close(r.out[:, t], h)
    torch.testing.assert_close(r.history, torch.stack(hs[-2:], 1))


def test_bad_cell_arguments() -> None:
    with pytest.raises(SeqlabError, match="nonlinearity must be tanh or relu, got 'sigmoid'"):
        ElmanCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(SeqlabError, match="cell sizes must be >= 1"):
        GRUCell(0, 3)
