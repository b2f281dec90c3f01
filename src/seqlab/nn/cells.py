"""Hand-written recurrent cells: Elman (tanh or relu), LSTM (optionally with peepholes) and GRU.

These are the readable reference for the fused ``nn.RNN``/``nn.LSTM``/``nn.GRU`` kernels, written
straight from the equations with PyTorch's parameter layout, so weights copy across unchanged::

    weight_ih (G*H, I)   weight_hh (G*H, H)   bias_ih (G*H,)   bias_hh (G*H,)

with the G gate blocks stacked in PyTorch's order: Elman G=1; LSTM G=4 (i, f, g, o); GRU G=3
(r, z, n). Per step, with a_t = W_ih x_t + b_ih precomputed for all t in one GEMM:

    Elman  h' = tanh(a + W_hh h + b_hh)                 (or relu)
    LSTM   i, f, g, o = split(a + W_hh h + b_hh)
           i, f, o = sigmoid(i + p_i c), sigmoid(f + p_f c), o;  g = tanh(g)
           c' = f * c + i * g;   o = sigmoid(o + p_o c');   h' = o * tanh(c')
    GRU    r, z = sigmoid(a_r + W_hr h + b_hr), sigmoid(a_z + W_hz h + b_hz)
           n = tanh(a_n + r * (W_hn h + b_hn));   h' = (1 - z) * n + z * h

The peephole weights p = (p_i, p_f, p_o) (Gers, Schraudolph & Schmidhuber 2002) are diagonal, one
vector per gate; PyTorch's fused LSTM has none, so a peephole LSTM always runs here.

`scan` is the one time loop, shared by the cell modules below and by the layers of
`seqlab.nn.recurrent.RecurrentStack`, which run it on their fused module's own parameters.
It can record every gate and cell state for inspection, freeze the state on padded steps
(``mask``), and add a residual connection across time, h_t <- h_t + h_{t-k} (``skip=k``).
Following PERF-NOTES trap 3, the input projection is one GEMM before the loop and the loop walks
``unbind`` views, so the backward pass stays O(T).

References: Elman (1990); Hochreiter & Schmidhuber (1997) and Gers et al. (2000, forget gate);
Cho et al. (2014, GRU); Wang & Tian (2016) for residual connections across time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.errors import SeqlabError

GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # gate blocks stacked in the weight matrices
GATE_NAMES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o", "c"), "gru": ("r", "z", "n")}

CellState = tuple[torch.Tensor, ...]  # (h,) or, for the LSTM, (h, c); each (B, H)


class CellWeights(NamedTuple):
    """The parameters one direction of one layer runs on (views, never copies)."""

    w_ih: torch.Tensor  # (G*H, I)
    w_hh: torch.Tensor  # (G*H, H)
    b_ih: torch.Tensor | None  # (G*H,)
    b_hh: torch.Tensor | None  # (G*H,)
    peep: torch.Tensor | None = None  # (3, H): LSTM peepholes p_i, p_f, p_o


# --- one step of each cell: (a_t, state) -> (new state, gates) -------------------------------
def elman_step(a: torch.Tensor, state: CellState, w: CellWeights, relu: bool = False
               ) -> tuple[CellState, dict[str, torch.Tensor]]:
    pre = a + F.linear(state[0], w.w_hh, w.b_hh)  # (B, H)
    h = torch.relu(pre) if relu else torch.tanh(pre)
    return (h,), {"h": h}


def lstm_step(a: torch.Tensor, state: CellState, w: CellWeights, relu: bool = False
              ) -> tuple[CellState, dict[str, torch.Tensor]]:
    h, c = state
    i, f, g, o = (a + F.linear(h, w.w_hh, w.b_hh)).chunk(4, dim=-1)  # each (B, H)
    if w.peep is not None:
        i, f = i + w.peep[0] * c, f + w.peep[1] * c  # input and forget gates see c_{t-1}
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    c = f * c + i * g
    o = torch.sigmoid(o + w.peep[2] * c if w.peep is not None else o)  # output gate sees c_t
    h = o * torch.tanh(c)
    return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c}


def gru_step(a: torch.Tensor, state: CellState, w: CellWeights, relu: bool = False
             ) -> tuple[CellState, dict[str, torch.Tensor]]:
    h = state[0]
    a_r, a_z, a_n = a.chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w.w_hh, w.b_hh).chunk(3, dim=-1)  # each (B, H)
    r, z = torch.sigmoid(a_r + h_r), torch.sigmoid(a_z + h_z)
    n = torch.tanh(a_n + r * h_n)  # the reset gate scales W_hn h + b_hn, as in cuDNN/PyTorch
    h = (1 - z) * n + z * h
    return (h,), {"r": r, "z": z, "n": n}


STEPS: dict[str, Callable[..., tuple[CellState, dict[str, torch.Tensor]]]] = {
    "rnn": elman_step, "lstm": lstm_step, "gru": gru_step}


class ScanResult(NamedTuple):
    out: torch.Tensor  # (B, T, H) hidden outputs h_1..h_T (zero on masked steps)
    state: CellState  # the state after the last unmasked step
    history: torch.Tensor | None  # (B, k, H) h_{T-k+1..T} for the skip across time, else None
    gates: dict[str, torch.Tensor] | None  # name -> (B, T, H), when recorded


def scan(kind: str, x: torch.Tensor, state: CellState, w: CellWeights, *, relu: bool = False,
         mask: torch.Tensor | None = None, skip: int = 0, history: torch.Tensor | None = None,
         record: bool = False, probe: torch.Tensor | None = None) -> ScanResult:
    """Run a cell over x (B, T, I) from `state`.

    ``mask`` (B, T) bool freezes the state where False (padding). ``skip=k`` adds h_{t-k} to
    each new h_t (the recurrence sees the sum); ``history`` (B, k, H) holds the k outputs before
    x, zeros when None. ``probe`` (B, T, H), normally zeros, is added to every h_t before it is
    used: its gradient is then the total derivative dL/dh_t through all later steps.
    """
    step = STEPS[kind]
    a_all = F.linear(x, w.w_ih, w.b_ih)  # (B, T, G*H): the input projection, hoisted
    keep = mask.unbind(1) if mask is not None else None
    past: list[torch.Tensor] = []  # skip: the last k outputs, oldest first
    if skip:
        past = (list(history.unbind(1)) if history is not None
                else [x.new_zeros(x.shape[0], w.w_hh.shape[1])] * skip)
    outs, trace = [], []
    for t, a in enumerate(a_all.unbind(1)):
        new, gates = step(a, state, w, relu)
        if skip:
            new = (new[0] + past[-skip], *new[1:])
        if probe is not None:
            new = (new[0] + probe[:, t], *new[1:])
        if keep is not None:
            m = keep[t][:, None]  # (B, 1)
            new = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
        state = new
        if skip:
            past.append(state[0])
        outs.append(state[0] if keep is None else state[0] * keep[t][:, None])
        if record:
            trace.append(gates)
    hist = torch.stack(past[-skip:], 1) if skip else None  # (B, k, H)
    gates_out = ({k: torch.stack([g[k] for g in trace], 1) for k in trace[0]}
                 if record and trace else None)
    return ScanResult(torch.stack(outs, 1) if outs else x.new_zeros(x.shape[0], 0,
                      w.w_hh.shape[1]), state, hist, gates_out)


# --- the cells as modules -------------------------------------------------------------------
class Cell(nn.Module):
    """A single-layer, single-direction reference cell with ``nn.RNN``-style parameters.

    ``forward(x (B, T, I), state) -> (out (B, T, H), state)``; ``return_gates=True`` also returns
    every gate (and the LSTM cell state) as (B, T, H) tensors, for inspection.
    """

    kind: ClassVar[str]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        if min(input_size, hidden_size) < 1:
            raise SeqlabError(f"cell sizes must be >= 1, got input {input_size}, hidden "
                              f"{hidden_size}")
        G = GATES[self.kind]
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(G * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(G * hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: every parameter uniform in +-1/sqrt(H)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    def weights(self) -> CellWeights:
        return CellWeights(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def initial_state(self, batch_size: int) -> CellState:
        h = torch.zeros(batch_size, self.hidden_size, dtype=self.weight_hh.dtype)
        return (h, torch.zeros_like(h)) if self.kind == "lstm" else (h,)

    def forward(self, x: torch.Tensor, state: CellState | None = None, *,
                mask: torch.Tensor | None = None, return_gates: bool = False
                ) -> tuple[torch.Tensor, CellState] | tuple[
                    torch.Tensor, CellState, dict[str, torch.Tensor] | None]:  # None when T = 0
        state = state if state is not None else self.initial_state(x.shape[0])
        r = scan(self.kind, x, state, self.weights(), relu=getattr(self, "relu", False),
                 mask=mask, record=return_gates)
        return (r.out, r.state, r.gates) if return_gates else (r.out, r.state)

    def step(self, x: torch.Tensor, state: CellState) -> tuple[torch.Tensor, CellState]:
        """One step: x (B, I) -> h (B, H) and the new state."""
        new, _ = STEPS[self.kind](F.linear(x, self.weight_ih, self.bias_ih), state,
                                  self.weights(), getattr(self, "relu", False))
        return new[0], new

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class ElmanCell(Cell):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh), or relu; matches ``nn.RNN``."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise SeqlabError(f"nonlinearity must be tanh or relu, got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.relu = nonlinearity == "relu"


class LSTMCell(Cell):
    """Long short-term memory, gates (i, f, g, o); matches ``nn.LSTM`` without peepholes."""

    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 peepholes: bool = False) -> None:
        super().__init__(input_size, hidden_size, bias)
        # Peepholes start at zero, so a peephole LSTM starts as the plain one.
        self.weight_peep = nn.Parameter(torch.zeros(3, hidden_size)) if peepholes else None

    def weights(self) -> CellWeights:
        return super().weights()._replace(peep=self.weight_peep)


class GRUCell(Cell):
    """Gated recurrent unit, gates (r, z, n); matches ``nn.GRU``."""

    kind = "gru"


CELL_CLASSES: dict[str, type[Cell]] = {"rnn": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}
