"""Models of polyphonic music: a recurrent or convolutional stack over piano-rolls, and an
output layer giving the probability of the next step's chord.

    roll at t-1 (B, T, 88) -> RecurrentStack or TCN stack -> h_t (B, T, H) -> p(chord_t | h_t)

Two output layers:

* ``sigmoid``: 88 independent Bernoulli keys, p(v | h) = prod_i s_i^v_i (1 - s_i)^(1 - v_i)
  with s = sigmoid(W h + b) (the models of the TCN paper's table, Bai, Kolter & Koltun 2018).
  It cannot express that keys move together (a chord is likely, each of its notes alone is
  not).
* ``nade``: the keys of one step modelled autoregressively, low to high, by a NADE (Larochelle
  & Murray 2011) whose biases are functions of the stack's state, as in Boulanger-Lewandowski,
  Bengio & Vincent 2012 (RNN-NADE)::

      a_i = b_h(h_t) + sum_{j<i} W_j v_j          (Hn,)   NADE's hidden pre-activation
      p(v_i = 1 | v_<i, h_t) = sigmoid(b_v(h_t)_i + V_i . sigmoid(a_i))

  A product of Bernoulli conditionals, so the 2^88 chords' probabilities sum to one exactly.

The stacks are the shared blocks of `seqlab.nn.recurrent` and `seqlab.nn.conv`; both are
causal, and both carry a state (hidden state, or convolution buffers), so generation feeds one
step at a time. The piano-roll task (`seqlab.tasks.music`) cuts the batches and scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.config import check_range
from seqlab.errors import SeqlabError
from seqlab.models.base import TorchModel, without_onednn
from seqlab.nn.conv import ConvConfig, build_stack
from seqlab.nn.recurrent import RecurrentStack, StackConfig
from seqlab.tasks.music import KEYS, RollBatch

PRIOR = -3.0  # initial logit of every key: about 4 of the 88 keys sound at a time (5%)
State = Any  # the stack's: (h,) / (h, c) for recurrent stacks, conv buffers for the TCN


def _tcn() -> ConvConfig:
    # Bai et al.'s poly_music defaults: kernel 5, 4 levels of 150 channels, dropout 0.25.
    return ConvConfig(kind="tcn", channels=150, kernel_size=5, levels=4, dropout=0.25)


@dataclass
class MusicConfig:
    """Which stack reads the roll, and which layer outputs the chord."""

    stack: Literal["recurrent", "conv"] = "recurrent"
    cell: Literal["lstm", "gru", "rnn"] = "lstm"  # the recurrent stack's cell
    recurrent: StackConfig = field(default_factory=lambda: StackConfig(hidden=200, layers=1))
    # ^ read when stack=recurrent; its input is the 88 keys of the previous step. An override
    # such as model.recurrent.hidden=64 refines this section (one layer stays one layer).
    conv: ConvConfig = field(default_factory=_tcn)  # read when stack=conv (emb_dim unused: the
    # 88 keys are the input channels)
    dropout: float = 0.0  # on the stack's output, before the output layer
    output: Literal["sigmoid", "nade", "made"] = "sigmoid"  # independent keys, or the keys
    # low to high through NADE or through masked layers (MADE)
    nade_hidden: int = 150  # NADE's or MADE's hidden units (output=nade or made)

    def __post_init__(self) -> None:
        check_range("model.dropout", self.dropout, "in [0, 1)")
        check_range("model.nade_hidden", self.nade_hidden, ">= 1")
        if self.recurrent.cell not in ("lstm", self.cell):  # lstm: the section's default
            raise SeqlabError(f"model.recurrent.cell={self.recurrent.cell} disagrees with "
                              f"model.cell={self.cell}; set model.cell")
        self.recurrent = replace(self.recurrent, cell=self.cell)  # stored as it is built
        if self.recurrent.bidirectional:
            raise SeqlabError("model.recurrent.bidirectional: a music model predicts the next "
                              "step and must not read it; valid: false")


# --- output layers ------------------------------------------------------------------------------
class IndependentKeys(nn.Module):
    """p(v | h) = prod_i Bernoulli(v_i; sigmoid(W h + b)_i)."""

    def __init__(self, context: int, keys: int = KEYS) -> None:
        super().__init__()
        self.proj = nn.Linear(context, keys)
        nn.init.constant_(self.proj.bias, PRIOR)

    def log_prob(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """h (..., C), v (..., N) in {0, 1} -> log p(v | h) (...)."""
        logits = self.proj(h)
        return -F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)

    def sample(self, h: torch.Tensor, gen: torch.Generator, temperature: float = 1.0
               ) -> torch.Tensor:
        """h (B, C) -> v (B, N)."""
        p = torch.sigmoid(self.proj(h) / temperature)
        return (torch.rand(p.shape, generator=gen).to(p.device) < p).to(h.dtype)


class NoteNADE(nn.Module):
    """The keys of one step, low to high, each conditioned on the lower ones and on h (see the
    module docstring). Built with any number of keys (the tests use a few)."""

    def __init__(self, context: int, keys: int = KEYS, hidden: int = 150) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(keys, hidden) * 0.01)  # key j -> NADE hidden
        self.V = nn.Parameter(torch.randn(keys, hidden) * 0.01)  # NADE hidden -> key i
        self.b_h = nn.Linear(context, hidden)  # the biases are functions of the stack's state
        self.b_v = nn.Linear(context, keys)
        nn.init.constant_(self.b_v.bias, PRIOR)

    def logits(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of p(v_i = 1 | v_<i, h): h (..., C), v (..., N) -> (..., N)."""
        step = v[..., :, None] * self.W  # (..., N, Hn): each key's contribution
        a = self.b_h(h)[..., None, :] + step.cumsum(-2) - step  # (..., N, Hn), keys j < i only
        return self.b_v(h) + (torch.sigmoid(a) * self.V).sum(-1)  # (..., N)

    def log_prob(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """log p(v | h) (...)."""
        return -F.binary_cross_entropy_with_logits(self.logits(h, v), v,
                                                   reduction="none").sum(-1)

    def sample(self, h: torch.Tensor, gen: torch.Generator, temperature: float = 1.0
               ) -> torch.Tensor:
        """h (B, C) -> v (B, N), key by key."""
        a, b_v = self.b_h(h), self.b_v(h)  # (B, Hn), (B, N)
        v = h.new_zeros(h.shape[0], self.W.shape[0])
        for i in range(self.W.shape[0]):
            p = torch.sigmoid((b_v[:, i] + torch.sigmoid(a) @ self.V[i]) / temperature)  # (B,)
            v[:, i] = (torch.rand(p.shape, generator=gen).to(p.device) < p).to(h.dtype)
            a = a + v[:, i:i + 1] * self.W[i]
        return v


class MaskedNotes(nn.Module):
    """The keys of one step, low to high, through masked layers (MADE, Germain et al. 2015):
    key i's logit reads only keys j < i, through a masked hidden layer whose biases are
    functions of h, plus direct masked connections. Matrix products only, so it costs little
    more than the independent keys; NADE's per-key hidden vectors cost keys x hidden."""

    def __init__(self, context: int, keys: int = KEYS, hidden: int = 300) -> None:
        super().__init__()
        d_in = torch.arange(1, keys + 1)  # key i has degree i + 1
        d_h = torch.arange(hidden) % max(keys - 1, 1) + 1  # hidden degrees 1 .. keys - 1
        self.m_in: torch.Tensor  # (Hm, N): hidden unit k reads keys of degree <= its own
        self.m_out: torch.Tensor  # (N, Hm): key i reads hidden units of degree < i + 1
        self.m_direct: torch.Tensor  # (N, N): key i reads keys j < i
        self.register_buffer("m_in", (d_h[:, None] >= d_in[None, :]).float())
        self.register_buffer("m_out", (d_in[:, None] > d_h[None, :]).float())
        self.register_buffer("m_direct", torch.tril(torch.ones(keys, keys), -1))
        self.inp = nn.Linear(keys, hidden, bias=False)
        self.out = nn.Linear(hidden, keys, bias=False)
        self.direct = nn.Linear(keys, keys, bias=False)
        self.b_h = nn.Linear(context, hidden)
        self.b_v = nn.Linear(context, keys)
        nn.init.constant_(self.b_v.bias, PRIOR)
        self.keys = keys

    def logits(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of p(v_i = 1 | v_<i, h): h (..., C), v (..., N) -> (..., N)."""
        z = torch.relu(F.linear(v, self.inp.weight * self.m_in) + self.b_h(h))  # (..., Hm)
        return (self.b_v(h) + F.linear(z, self.out.weight * self.m_out)
                + F.linear(v, self.direct.weight * self.m_direct))

    def log_prob(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """log p(v | h) (...)."""
        return -F.binary_cross_entropy_with_logits(self.logits(h, v), v,
                                                   reduction="none").sum(-1)

    def sample(self, h: torch.Tensor, gen: torch.Generator, temperature: float = 1.0
               ) -> torch.Tensor:
        """h (B, C) -> v (B, N), key by key (key i's logit does not read keys >= i)."""
        v = h.new_zeros(h.shape[0], self.keys)
        for i in range(self.keys):
            p = torch.sigmoid(self.logits(h, v)[:, i] / temperature)  # (B,)
            v[:, i] = (torch.rand(p.shape, generator=gen).to(p.device) < p).to(h.dtype)
        return v


# --- the model ----------------------------------------------------------------------------------
class MusicModel(TorchModel):
    """Stack + output layer; ``frame_log_prob(batch) -> (B, T)`` and ``generate``."""

    family = "music"
    Config = MusicConfig

    def __init__(self, config: MusicConfig, vocab: Any = None) -> None:
        super().__init__()
        self.config = config
        self.stack: nn.Module
        if config.stack == "recurrent":
            self.stack = RecurrentStack(KEYS, config.recurrent)
            width = self.stack.output_size
        else:
            conv = build_stack(KEYS, config.conv)
            self.stack, width = conv, conv.output_size
        self.drop = nn.Dropout(config.dropout)
        self.notes: IndependentKeys | NoteNADE | MaskedNotes = IndependentKeys(width, KEYS)
        if config.output == "nade":
            self.notes = NoteNADE(width, KEYS, config.nade_hidden)
        elif config.output == "made":
            self.notes = MaskedNotes(width, KEYS, config.nade_hidden)

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """x (B, T, 88), the roll shifted by one step -> h (B, T, H) and the carried state.
        Right-padding needs no lengths: both stacks are causal."""
        h, state = self.stack(x, state)
        return self.drop(h), state

    def frame_log_prob(self, batch: RollBatch) -> torch.Tensor:
        """log p(y_t | y_<t) of every frame (B, T), in nats (padding included; mask it)."""
        with self._inference():
            return self._log_prob(batch)

    def _log_prob(self, batch: RollBatch) -> torch.Tensor:
        h, _ = self(batch.x.to(self.device))
        return self.notes.log_prob(h, batch.y.to(self.device)).float()

    def training_loss(self, batch: RollBatch, state: State) -> tuple[torch.Tensor, None]:
        """Mean over the batch's real frames of the summed binary cross-entropy (nats)."""
        lp = self._log_prob(batch)  # (B, T)
        return -lp[batch.mask].sum() / batch.mask.sum().clamp_min(1), None

    # --- generation --------------------------------------------------------------------------
    def generate(self, prompt: np.ndarray, steps: int, *, seed: int = 0,
                 temperature: float = 1.0) -> np.ndarray:
        """The prompt (P, 88) followed by `steps` sampled steps: (P + steps, 88) uint8."""
        if prompt.ndim != 2 or prompt.shape[1] != KEYS:
            raise SeqlabError(f"expected a prompt of shape (steps, {KEYS}), got "
                              f"{tuple(prompt.shape)}")
        gen = torch.Generator().manual_seed(seed)
        x = torch.zeros(1, len(prompt) + 1, KEYS, device=self.device)
        x[0, 1:] = torch.from_numpy(prompt.astype(np.float32))
        out = [prompt.astype(np.uint8)]
        with self._inference(), without_onednn():
            h, state = self(x, None)  # the zero frame, then the prompt
            for _ in range(steps):
                v = self.notes.sample(h[:, -1], gen, temperature)  # (1, 88)
                out.append(v.cpu().numpy().astype(np.uint8))
                h, state = self(v[:, None], state)
        return np.concatenate(out)
