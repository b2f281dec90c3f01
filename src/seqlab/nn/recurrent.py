"""Recurrent stacks: layers of RNN/LSTM/GRU cells, the sequence block of the recurrent family.

`RecurrentStack` is the reusable block (language models, taggers, seq2seq encoders/decoders):
layers of one cell kind, each a fused ``nn.RNN``/``nn.LSTM``/``nn.GRU`` module of one layer whose
own parameters also drive the hand-written cells of `seqlab.nn.cells`. So the fused kernel
(``impl=fused``, the default for training) and the readable reference (``impl=reference``) are
two ways to run the *same* weights: a checkpoint trained one way loads the other way, and
`RecurrentStack.trace` reads out gates and dL/dh_t of a model trained with the fused kernel.

On top of the cell, composition rather than a class per variant:

* residual connections between layers (GNMT, Wu et al. 2016): from layer ``residual_start`` on,
  a layer's input is added to its output;
* a residual connection across time, h_t <- h_t + h_{t-k} inside the recurrence
  (``time_skip=k``, after Wang & Tian 2016), which gives gradients an identity path every k steps;
* bidirectional layers (Schuster & Paliwal 1997), for encoders and taggers only: the language
  model refuses them, since a left-to-right LM must not read the token it predicts;
* dropout between layers, one rate per gap, optionally one mask per sequence (Gal & Ghahramani
  2016); peephole LSTMs (Gers et al. 2002); and initialisation schemes: orthogonal recurrent
  weights (Saxe et al. 2014), xavier (Glorot & Bengio 2010), uniform (Zaremba et al. 2014) and the
  LSTM forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015).

References: Elman (1990); Hochreiter & Schmidhuber (1997); Cho et al. (2014).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.config import check_range
from seqlab.errors import SeqlabError
from seqlab.nn.cells import GATES, CellWeights, scan

# The stack's state: (h,) or (h, c) for the LSTM, then the history for time_skip when k > 0.
# h, c: (layers * directions, B, hidden); history: (layers * directions, B, k, hidden).
State = tuple[torch.Tensor, ...]
FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


# --- configuration ------------------------------------------------------------------------------
@dataclass
class StackConfig:
    """A stack of recurrent layers: the cell, its size, and how layers connect."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"  # rnn is Elman's
    hidden: int = 256  # units per layer and direction
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # between layers (and, in the LM, on embeddings and before the softmax)
    layer_dropout: tuple[float, ...] = ()  # after layer i < layers: one rate, or one per gap;
    # empty uses `dropout`
    variational: bool = False  # one dropout mask per sequence, shared by all steps (Gal 2016)
    impl: Literal["auto", "fused", "reference"] = "auto"  # auto: fused unless a feature needs
    # the hand-written cells (peepholes, time_skip); reference: always the hand-written cells
    nonlinearity: Literal["tanh", "relu"] = "tanh"  # Elman RNN only
    peepholes: bool = False  # LSTM only: gates see the cell state (runs the reference cell)
    residual: bool = False  # GNMT residuals: layer input is added to its output
    residual_start: int = 2  # first layer (1-based) with a residual; GNMT uses 3
    time_skip: int = 0  # k > 0: h_t <- h_t + h_{t-k} inside the recurrence (reference cell)
    bidirectional: bool = False  # encoders and taggers only; outputs are [forward; backward]
    init: Literal["default", "uniform", "xavier", "orthogonal"] = "default"  # default: PyTorch's
    # uniform +-1/sqrt(hidden); orthogonal: W_hh blocks orthogonal, W_ih xavier, biases 0
    init_scale: float = 0.1  # init=uniform: every parameter in +-init_scale (Zaremba: 0.1)
    forget_bias: float | None = None  # LSTM: set the forget gate's bias to this; None keeps init

    def __post_init__(self) -> None:
        if min(self.hidden, self.layers) < 1:
            raise SeqlabError(f"model.hidden and model.layers must be >= 1, got {self.hidden}, "
                              f"{self.layers}")
        rates = (self.dropout, *self.layer_dropout)
        if not all(0 <= r < 1 for r in rates):
            raise SeqlabError(f"model.dropout and model.layer_dropout must be in [0, 1), got "
                              f"{self.dropout}, {list(self.layer_dropout)}")
        if len(self.layer_dropout) not in (0, 1, self.layers - 1):
            raise SeqlabError(f"model.layer_dropout takes one rate or one per gap between the "
                              f"{self.layers} layers ({self.layers - 1}), got "
                              f"{len(self.layer_dropout)}")
        if self.residual_start < 1 or self.time_skip < 0:
            raise SeqlabError("model.residual_start must be >= 1 and model.time_skip >= 0, got "
                              f"{self.residual_start} and {self.time_skip}")
        check_range("model.init_scale", self.init_scale, "> 0")
        check_range("model.forget_bias", self.forget_bias, "finite", null=True)
        _check_cell_options(self)

    @property
    def uses_reference(self) -> bool:
        """Whether the layers run the hand-written cells rather than the fused kernel."""
        needs = self.peepholes or self.time_skip > 0
        return self.impl == "reference" or (self.impl == "auto" and needs)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def gap_dropout(self, i: int) -> float:
        """Dropout rate after layer i (0-based), before layer i + 1."""
        if not self.layer_dropout:
            return self.dropout
        return self.layer_dropout[0 if len(self.layer_dropout) == 1 else i]


def _check_cell_options(c: StackConfig) -> None:
    """Options that only make sense for some cells or implementations."""
    if c.peepholes and c.cell != "lstm":
        raise SeqlabError(f"model.peepholes applies to the lstm cell only, got cell {c.cell}; "
                          "valid: model.cell=lstm or model.peepholes=false")
    if c.forget_bias is not None and c.cell != "lstm":
        raise SeqlabError(f"model.forget_bias applies to the lstm cell only, got cell {c.cell}; "
                          "valid: model.cell=lstm or model.forget_bias=null")
    if c.nonlinearity != "tanh" and c.cell != "rnn":
        raise SeqlabError(f"model.nonlinearity applies to the rnn cell only, got cell {c.cell}; "
                          "valid: model.cell=rnn or model.nonlinearity=tanh")
    if c.impl == "fused" and (c.peepholes or c.time_skip):
        what = "model.peepholes" if c.peepholes else "model.time_skip"
        raise SeqlabError(f"{what} needs the hand-written cells, which the fused kernel lacks; "
                          "valid: model.impl=auto or model.impl=reference, got fused")


# --- one layer ----------------------------------------------------------------------------------
def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of x (B, T, ...) within its length; padding stays in place."""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T)[None, :]  # (1, T)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    return x.gather(1, idx.view(*idx.shape, *[1] * (x.dim() - 2)).expand_as(x))


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < lengths[:, None]  # (B, T) bool


class RecurrentLayer(nn.Module):
    """One layer (one or two directions) over a fused module's parameters.

    ``forward(x (B, T, I), state, lengths) -> (out (B, T, D*H), state)``; the state is this
    layer's slice of the stack state (see `State`).
    """

    def __init__(self, input_size: int, cfg: StackConfig) -> None:
        super().__init__()
        self.cfg = cfg
        kw: dict[str, Any] = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
        self.rnn = FUSED[cfg.cell](input_size, cfg.hidden, batch_first=True,
                                   bidirectional=cfg.bidirectional, **kw)
        D = cfg.directions
        # Peepholes start at zero, so a peephole LSTM starts as the plain one.
        self.peep = nn.Parameter(torch.zeros(D, 3, cfg.hidden)) if cfg.peepholes else None

    def weights(self, direction: int) -> CellWeights:
        """Views of this layer's parameters for one direction, for the hand-written cell."""
        sfx = "_l0_reverse" if direction else "_l0"
        p = {n: getattr(self.rnn, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih",
                                                    "bias_hh")}
        return CellWeights(p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"],
                           None if self.peep is None else self.peep[direction])

    def forward(self, x: torch.Tensor, state: State, lengths: torch.Tensor | None = None, *,
                trace: list[dict[str, torch.Tensor]] | None = None) -> tuple[torch.Tensor, State]:
        if trace is not None or self.cfg.uses_reference:
            return self._reference(x, state, lengths, trace)
        lstm = self.cfg.cell == "lstm"
        hx = (state[0], state[1]) if lstm else state[0]
        if lengths is None:
            out, new = self.rnn(x, hx)  # (B, T, D*H)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            out, new = self.rnn(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, (tuple(new) if lstm else (new,))

    def _reference(self, x: torch.Tensor, state: State, lengths: torch.Tensor | None,
                   trace: list[dict[str, torch.Tensor]] | None) -> tuple[torch.Tensor, State]:
        """The hand-written cells, one direction at a time; `trace` collects gates and probes."""
        c, k = self.cfg, self.cfg.time_skip
        n_cell = 2 if c.cell == "lstm" else 1
        mask = None if lengths is None else length_mask(lengths, x.shape[1])
        outs, states, hists = [], [], []
        for d in range(c.directions):
            xd = x if d == 0 else reverse_padded(x, lengths)
            probe = None
            if trace is not None:  # a zero added to every h_t: its gradient is the total dL/dh_t
                probe = x.new_zeros(x.shape[0], x.shape[1], c.hidden, requires_grad=True)
            r = scan(c.cell, xd, tuple(s[d] for s in state[:n_cell]), self.weights(d),
                     relu=c.nonlinearity == "relu", mask=mask, skip=k,
                     history=state[n_cell][d] if k else None, record=trace is not None,
                     probe=probe)
            outs.append(r.out if d == 0 else reverse_padded(r.out, lengths))
            states.append(r.state)
            if k:
                assert r.history is not None  # scan returns the history whenever skip > 0
                hists.append(r.history)
            if trace is not None:
                assert r.gates is not None and probe is not None
                trace.append({**r.gates, "probe": probe})
        new = tuple(torch.stack([s[i] for s in states]) for i in range(n_cell))
        if k:
            new = (*new, torch.stack(hists))
        return torch.cat(outs, -1), new


# --- the stack ----------------------------------------------------------------------------------
class RecurrentStack(nn.Module):
    """Layers of recurrent cells, with residuals, dropout between layers and chosen init.

    The building block for language models, taggers and seq2seq encoders/decoders::

        stack = RecurrentStack(input_size=64, cfg=StackConfig(cell="gru", bidirectional=True))
        out, state = stack(x, lengths=lengths)       # x (B, T, 64) -> out (B, T, 2 * hidden)
        y, state = stack.step(x_t, state)            # x_t (B, input) -> y (B, output_size)

    ``forward`` has the sequence-block signature of `seqlab.nn`. It accepts a state from
    ``initial_state`` or a previous call (carried across windows) and optional ``lengths`` (B,)
    for right-padded batches: padded steps neither change the state nor produce output (zeros),
    and the backward direction starts at each sequence's own last token. ``step`` equals
    ``forward`` on a length-1 sequence.
    """

    def __init__(self, input_size: int, cfg: StackConfig) -> None:
        super().__init__()
        self.cfg, self.input_size = cfg, input_size
        width = cfg.hidden * cfg.directions
        if cfg.residual and cfg.residual_start == 1 and input_size != width:
            raise SeqlabError(f"model.residual_start=1 adds the stack's input to layer 1's "
                              f"output, which needs input size {input_size} == hidden x "
                              f"directions = {width}; valid: model.residual_start >= 2")
        self.layers = nn.ModuleList(
            RecurrentLayer(input_size if i == 0 else width, cfg) for i in range(cfg.layers))
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.cfg.hidden * self.cfg.directions

    def reset_parameters(self) -> None:
        for layer in self.layers:
            initialise(cast(RecurrentLayer, layer), self.cfg)  # ModuleList items are Modules

    def initial_state(self, batch_size: int = 1) -> State:
        c = self.cfg
        first = cast(RecurrentLayer, self.layers[0])  # ModuleList items are typed as Module
        w = first.rnn.weight_hh_l0  # the state follows the weights' dtype and device
        h = torch.zeros(c.layers * c.directions, batch_size, c.hidden, dtype=w.dtype,
                        device=w.device)
        state = (h, torch.zeros_like(h)) if c.cell == "lstm" else (h,)
        if c.time_skip:
            state = (*state, h.new_zeros(*h.shape[:2], c.time_skip, c.hidden))
        return state

    def forward(self, x: torch.Tensor, state: State | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """x (B, T, input_size) -> out (B, T, output_size) and the final state."""
        return self._run(x, state, lengths, None)

    def step(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One time step: x (B, input_size) -> y (B, output_size) and the new state."""
        y, state = self._run(x[:, None], state, None, None)
        return y[:, 0], state

    def trace(self, x: torch.Tensor, state: State | None = None,
              lengths: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, State, list[list[dict[str, torch.Tensor]]]]:
        """Forward through the hand-written cells, whatever ``impl``, recording per layer and
        direction every gate (B, T, H), the LSTM cell states, and a zero ``probe`` added to each
        h_t: after ``backward()``, ``probe.grad[:, t]`` is the total dL/dh_t."""
        traces: list[list[dict[str, torch.Tensor]]] = [[] for _ in self.layers]
        out, state = self._run(x, state, lengths, traces)
        return out, state, traces

    def _run(self, x: torch.Tensor, state: State | None, lengths: torch.Tensor | None,
             traces: list[list[dict[str, torch.Tensor]]] | None) -> tuple[torch.Tensor, State]:
        c = self.cfg
        state = state if state is not None else self.initial_state(x.shape[0])
        D, new = c.directions, []
        for i, layer in enumerate(self.layers):
            part = tuple(s[i * D:(i + 1) * D] for s in state)
            y, s = layer(x, part, lengths, trace=None if traces is None else traces[i])
            if i + 1 < len(self.layers):
                y = self._dropout(y, c.gap_dropout(i))
            x = y + x if c.residual and i + 1 >= c.residual_start else y
            new.append(s)
        return x, tuple(torch.cat(parts) for parts in zip(*new, strict=True))

    def _dropout(self, y: torch.Tensor, p: float) -> torch.Tensor:
        if not self.training or p == 0:
            return y
        if not self.cfg.variational:
            return nn.functional.dropout(y, p, training=True)
        keep = torch.empty(y.shape[0], 1, y.shape[2], dtype=y.dtype).bernoulli_(1 - p)
        return y * keep / (1 - p)  # one mask per sequence, the same at every step


def initialise(layer: RecurrentLayer, cfg: StackConfig) -> None:
    """Apply ``cfg.init`` and ``cfg.forget_bias`` to one layer's parameters, gate by gate."""
    H, G = cfg.hidden, GATES[cfg.cell]
    with torch.no_grad():
        for name, p in layer.rnn.named_parameters():
            if cfg.init == "uniform":
                p.uniform_(-cfg.init_scale, cfg.init_scale)
            elif cfg.init != "default":
                for g in range(G):  # each gate block is its own (H, fan_in) matrix
                    block = p[g * H:(g + 1) * H]
                    if name.startswith("bias"):
                        block.zero_()
                    elif name.startswith("weight_hh") and cfg.init == "orthogonal":
                        nn.init.orthogonal_(block)
                    else:
                        nn.init.xavier_uniform_(block)
            if cfg.forget_bias is not None and name.startswith("bias"):
                # The forget gate is block 1 of (i, f, g, o); the two biases add up.
                p[H:2 * H] = cfg.forget_bias if name.startswith("bias_ih") else 0.0
        if layer.peep is not None:
            layer.peep.zero_()
