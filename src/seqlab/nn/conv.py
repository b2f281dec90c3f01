"""Dilated causal convolutions over sequences: the WaveNet and TCN stacks.

Both stacks see only the past: a convolution with kernel k and dilation d reads x_t, x_{t-d},
..., x_{t-(k-1)d}. Dilations double layer by layer (1, 2, 4, ...), so the receptive field, the
number of input positions one output depends on, grows exponentially with depth::

    WaveNet  1 + sum_l (k - 1) d_l        one gated convolution per layer
    TCN      1 + sum_l 2 (k - 1) d_l      two convolutions per residual block

* WaveNet (van den Oord et al. 2016): per layer, z = tanh(W_f * x) . sigmoid(W_g * x); a 1x1
  convolution of z is added to x (residual) and another goes to the skip path; the sum of skips
  goes through relu -> 1x1 -> relu -> 1x1. Dilations 1, 2, ..., 2^(levels-1), repeated
  ``blocks`` times.
* TCN (Bai, Kolter & Koltun 2018): residual blocks of two weight-normalised (Salimans & Kingma
  2016) dilated causal convolutions, each followed by relu and dropout, plus a 1x1 convolution
  on the residual when the width changes; block l has dilation 2^l.

Every causal convolution keeps its left context in a buffer: the last (k - 1) d inputs it has
seen, zeros at the start of a stream. A stack follows the shared sequence-block signature of
`seqlab.nn`, ``forward(x (B, T, D_in), state=None, lengths=None) -> (y (B, T, D_out), state)``,
with the state the tuple of every convolution's buffer. ``forward`` prepends the buffers, so a
long stream scored in chunks gives every token its full receptive field (an exact
``log_prob``), and one step is the same code on one token: each layer reads k taps from its
queue, so a new token costs O(layers) convolutions of width k instead of a forward pass over the
whole context (the queue scheme of Paine et al. 2016, "Fast WaveNet generation").

`ConvConfig` configures a stack; the convolutional LM (`seqlab.models.conv.ConvLM`) reads its
embedding size and dropout from the same config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.config import check_range
from seqlab.errors import SeqlabError

State = tuple[torch.Tensor, ...]  # one buffer (B, C_in, (k - 1) d) per causal convolution


@dataclass
class ConvConfig:
    """A dilated causal convolution stack (and, in the LM, its embedding and softmax)."""

    kind: Literal["tcn", "wavenet"] = "tcn"
    emb_dim: int = 64  # token embedding size (the LM's input channels)
    channels: int = 128  # channels of every layer
    kernel_size: int | None = None  # k; None: 3 for tcn, 2 for wavenet
    levels: int = 6  # dilations 1, 2, 4, ..., 2^(levels-1): receptive field 253 for a k=3 TCN
    blocks: int = 1  # how many times the dilation cycle repeats (WaveNet uses several)
    dilations: tuple[int, ...] = ()  # an explicit schedule instead of levels x blocks
    skip_channels: int = 128  # wavenet: width of the skip path
    dropout: float = 0.1  # tcn: after every convolution; both: on embeddings and before softmax
    weight_norm: bool = True  # tcn: weight-normalised convolutions, as in Bai et al.
    context: int | None = None  # refuse a schedule whose receptive field is shorter than this

    def __post_init__(self) -> None:
        if self.kernel_size is None:
            self.kernel_size = 3 if self.kind == "tcn" else 2
        sizes = (self.emb_dim, self.channels, self.levels, self.blocks, self.skip_channels)
        if min(sizes) < 1 or self.kernel_size < 2:
            raise SeqlabError("model.emb_dim, channels, levels, blocks and skip_channels must be "
                              f">= 1 and model.kernel_size >= 2, got {sizes} and "
                              f"{self.kernel_size}")
        if any(d < 1 for d in self.dilations):
            raise SeqlabError(f"model.dilations must all be >= 1, got {list(self.dilations)}")
        # Dilations reach torch as int64, and the schedule is a list of levels x blocks layers.
        check_range("model.levels", self.levels, "<= 62")
        check_range("model.blocks", self.blocks, "<= 10000")
        for d in self.dilations:
            check_range("model.dilations", d, f"<= {2**62}")
        check_range("model.context", self.context, ">= 1", null=True)
        if not 0 <= self.dropout < 1:
            raise SeqlabError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.context is not None and self.receptive_field < self.context:
            raise SeqlabError(self._short_context_message())

    @property
    def schedule(self) -> list[int]:
        """The dilation of every layer (WaveNet) or block (TCN), bottom first."""
        if self.dilations:
            return list(self.dilations)
        return [2 ** i for i in range(self.levels)] * self.blocks

    @property
    def convs_per_layer(self) -> int:
        return 2 if self.kind == "tcn" else 1

    @property
    def receptive_field(self) -> int:
        """How many input positions (the current one included) one output depends on."""
        assert self.kernel_size is not None
        return 1 + self.convs_per_layer * (self.kernel_size - 1) * sum(self.schedule)

    def _short_context_message(self) -> str:
        k = self.kernel_size
        assert k is not None and self.context is not None
        per_cycle = self.convs_per_layer * (k - 1)
        # The fewest levels L with per_cycle * blocks * (2**L - 1) >= context - 1, in integers
        # (a float log2 overflows for a huge context).
        need = -(-(self.context - 1) // (per_cycle * self.blocks))
        levels = max(1, need.bit_length())
        return (f"model.context={self.context} needs a receptive field of at least "
                f"{self.context} tokens, but {self.kind} with kernel_size {k} and dilations "
                f"{', '.join(map(str, self.schedule))} gives {self.receptive_field}; valid: "
                f"model.levels >= {levels}, a larger model.kernel_size, or longer "
                "model.dilations")


# --- blocks -------------------------------------------------------------------------------------
class CausalConv1d(nn.Module):
    """A dilated convolution over (B, C, T) that sees only the past, with its left context
    carried in a buffer of the last (k - 1) d inputs: ``(x, buf) -> (y, new buf)``."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int,
                 weight_norm: bool = False) -> None:
        super().__init__()
        conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)
        self.conv = nn.utils.parametrizations.weight_norm(conv) if weight_norm else conv
        self.c_in, self.dilation, self.context = c_in, dilation, (kernel_size - 1) * dilation

    def initial_state(self, batch_size: int) -> torch.Tensor:
        w = self.conv.weight  # the buffer follows the weights' dtype and device
        return w.new_zeros(batch_size, self.c_in, self.context)

    def forward(self, x: torch.Tensor, buf: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        buf = buf if buf is not None else x.new_zeros(x.shape[0], self.c_in, self.context)
        full = torch.cat([buf, x], -1)  # (B, C_in, context + T)
        if x.shape[-1] == 1 and self.dilation > 1:
            # One step: read the k taps x_t, x_{t-d}, ... straight from the queue. (A dilated
            # convolution over the whole queue takes PyTorch's slow path without oneDNN.)
            y = F.conv1d(full[:, :, ::self.dilation], self.conv.weight, self.conv.bias)
        else:
            y = self.conv(full)  # (B, C_out, T)
        return y, full[:, :, full.shape[-1] - self.context:]


class TemporalBlock(nn.Module):
    """TCN residual block: [causal conv -> relu -> dropout] x 2, plus the (1x1) residual."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float,
                 weight_norm: bool) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(c_in, c_out, kernel_size, dilation, weight_norm)
        self.conv2 = CausalConv1d(c_out, c_out, kernel_size, dilation, weight_norm)
        self.drop = nn.Dropout(dropout)
        self.down = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, bufs: State) -> tuple[torch.Tensor, State]:
        h, b1 = self.conv1(x, bufs[0])
        h, b2 = self.conv2(self.drop(F.relu(h)), bufs[1])
        res = x if self.down is None else self.down(x)
        return F.relu(self.drop(F.relu(h)) + res), (b1, b2)


class GatedResidualLayer(nn.Module):
    """WaveNet layer: z = tanh(filter) * sigmoid(gate); x + 1x1(z) onward, 1x1(z) to the skips."""

    def __init__(self, channels: int, skip_channels: int, kernel_size: int, dilation: int
                 ) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * channels, kernel_size, dilation)
        self.res = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def forward(self, x: torch.Tensor, bufs: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        h, buf = self.conv(x, bufs[0])
        f, g = h.chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)  # (B, C, T)
        return x + self.res(z), self.skip(z), (buf,)


# --- stacks -------------------------------------------------------------------------------------
class ConvStack(nn.Module):
    """The shared shape of both stacks: ``forward(x (B, T, input), state, lengths) -> (y (B, T,
    out), state)`` with the state a flat tuple of every convolution's buffer, and
    `receptive_field`.

    ``lengths`` is accepted, for the one signature of `seqlab.nn`, and ignored: the stacks are
    causal, so the padding after a sequence never reaches its real outputs. The returned buffers
    are those after the last column, padding included; carry them only across unpadded streams.
    """

    output_size: int

    def __init__(self, cfg: ConvConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def receptive_field(self) -> int:
        return self.cfg.receptive_field

    def convs(self) -> list[CausalConv1d]:
        return [m for m in self.modules() if isinstance(m, CausalConv1d)]

    def initial_state(self, batch_size: int = 1) -> State:
        return tuple(c.initial_state(batch_size) for c in self.convs())

    def forward(self, x: torch.Tensor, state: State | None = None,
                lengths: torch.Tensor | None = None, *, taps: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, State]:
        """x (B, T, input) -> y (B, T, output_size) and the buffers after the last step.
        ``taps``, when given, collects every layer's output (B, T, C) for diagnostics."""
        bufs: list[torch.Tensor | None] = (list(state) if state is not None  # None: zeros
                                           else [None] * len(self.convs()))
        y, state = self._run(x.transpose(1, 2), bufs, taps)  # (B, C, T) inside
        return y.transpose(1, 2), state

    def _run(self, x: torch.Tensor, bufs: list[torch.Tensor | None],
             taps: list[torch.Tensor] | None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError


def _tap(taps: list[torch.Tensor] | None, h: torch.Tensor) -> torch.Tensor:
    """Record h (B, C, T) as a (B, T, C) tensor whose ``.grad`` will be the total dL/dh, and
    continue the computation from it."""
    if taps is None or not h.requires_grad:
        return h
    t = h.transpose(1, 2)
    t.retain_grad()
    taps.append(t)
    return t.transpose(1, 2)


class TCNStack(ConvStack):
    """Temporal convolutional network (Bai et al. 2018): residual blocks with dilation 2^l."""

    def __init__(self, input_size: int, cfg: ConvConfig) -> None:
        super().__init__(cfg)
        assert cfg.kernel_size is not None
        widths = [input_size] + [cfg.channels] * len(cfg.schedule)
        self.blocks = nn.ModuleList(
            TemporalBlock(widths[i], widths[i + 1], cfg.kernel_size, d, cfg.dropout,
                          cfg.weight_norm) for i, d in enumerate(cfg.schedule))
        self.output_size = cfg.channels

    def _run(self, x: torch.Tensor, bufs: list[torch.Tensor | None],
             taps: list[torch.Tensor] | None) -> tuple[torch.Tensor, State]:
        new: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x, b = block(x, tuple(bufs[2 * i:2 * i + 2]))
            new.extend(b)
            x = _tap(taps, x)
        return x, tuple(new)


class WaveNetStack(ConvStack):
    """WaveNet (van den Oord et al. 2016): gated residual layers, skips summed into the output.

    The input is first mapped to ``channels`` by a 1x1 convolution (an embedding, for tokens).
    """

    def __init__(self, input_size: int, cfg: ConvConfig) -> None:
        super().__init__(cfg)
        assert cfg.kernel_size is not None
        self.inp = nn.Conv1d(input_size, cfg.channels, 1)
        self.layers = nn.ModuleList(
            GatedResidualLayer(cfg.channels, cfg.skip_channels, cfg.kernel_size, d)
            for d in cfg.schedule)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1),
                                 nn.ReLU())
        self.output_size = cfg.skip_channels

    def _run(self, x: torch.Tensor, bufs: list[torch.Tensor | None],
             taps: list[torch.Tensor] | None) -> tuple[torch.Tensor, State]:
        x = self.inp(x)  # (B, C, T)
        skips, new = None, []
        for layer, buf in zip(self.layers, bufs, strict=True):
            x, s, (b,) = layer(x, (buf,))
            skips = s if skips is None else skips + s  # (B, S, T)
            new.append(b)
            x = _tap(taps, x)
        return self.out(skips), tuple(new)


# Callable, not type[ConvStack]: the subclasses' constructors also take input_size.
STACKS: dict[str, Callable[[int, ConvConfig], ConvStack]] = {"tcn": TCNStack,
                                                               "wavenet": WaveNetStack}


def build_stack(input_size: int, cfg: ConvConfig) -> ConvStack:
    """The stack ``cfg.kind`` names, reading ``input_size`` channels per step."""
    return STACKS[cfg.kind](input_size, cfg)
