"""A Neural Turing Machine (Graves, Wayne & Danihelka 2014, arXiv:1410.5401).

An LSTM controller reads the input and the last read vector, and drives two heads over an
external memory of N slots of width M: one read head and one write head. Each head addresses
the memory in four stages (section 3.3 of the paper)::

    content      w_c  = softmax(beta * cos(k, M_i))            focus on slots like the key
    interpolate  w_g  = g * w_c + (1 - g) * w_prev             or keep the last position
    shift        w~_i = sum_j w_g[j] * s[i - j]   (circular)   move by -1, 0 or +1 slot
    sharpen      w_i  = w~_i ** gamma / sum_j w~_j ** gamma    undo the shift's blurring

The write head erases then adds: ``M <- M * (1 - w e^T) + w a^T``; the read head reads
``r = w^T M``. The output at each step is a linear map of the controller output and the read
vector (logits of independent bits, for the binary tasks of `seqlab.tasks.memory`).

Initialisation follows common implementations (and Collier & Beel 2018, "Implementing Neural
Turing Machines"): the memory starts as a small constant (1e-6), so the first content lookups
are uniform; both weightings start on slot 0, so shifts have a place to start from; the first
read vector is learned. With ``memory_n = 0`` the model is the controller alone, a plain LSTM
over the whole sequence: the baseline (``memory-lstm``) with the same interface.

Speed: with a batch of 32 every operation of a step is tiny, so a step costs what ~70 operator
calls forward and as many backward cost in Python and the autograd engine, not arithmetic. The
output layer therefore runs once over the whole sequence, after the loop, and ``compile=True``
hands the step to ``torch.compile``, which fuses its element-wise work into a few C++ kernels
(0.52 -> 0.15 s for a batch of 32 sequences of 21 steps, forward and backward, on a loaded
2-core EPYC; the compile itself took 2.6 minutes there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.models.base import TorchModel

EPS = 1e-12  # keeps w ** gamma differentiable where a weight underflows to 0
MEMORY_INIT = 1e-6  # the constant every memory cell starts at


@dataclass
class NTMConfig:
    """Sizes of the controller and the memory."""

    inputs: int = 10  # features per step (8 bits and 2 control channels in the memory task)
    outputs: int = 9  # output bits per step (8 bits and the end marker of repeat copy)
    controller: int = 100  # LSTM controller units
    layers: int = 1  # controller LSTM layers
    memory_n: int = 128  # N: memory slots; 0: no memory (a plain LSTM, the baseline)
    memory_m: int = 20  # M: width of one slot
    shifts: int = 1  # allowed shifts -shifts..shifts (1: the paper's 3-way shift)
    compile: bool = False  # training steps through torch.compile: ~3x faster on one CPU thread
    # once compiled (the first batch takes 1-3 minutes); evaluation always runs eagerly

    def __post_init__(self) -> None:
        if min(self.inputs, self.outputs, self.controller, self.layers, self.memory_m) < 1:
            raise SeqlabError("model.inputs, outputs, controller, layers and memory_m must be "
                              f">= 1, got {self.inputs}, {self.outputs}, {self.controller}, "
                              f"{self.layers}, {self.memory_m}")
        if self.memory_n < 0 or self.shifts < 0:
            raise SeqlabError(f"model.memory_n and model.shifts must be >= 0, got "
                              f"{self.memory_n} and {self.shifts}")
        if self.memory_n and 2 * self.shifts + 1 > self.memory_n:
            raise SeqlabError(f"model.shifts={self.shifts} needs memory_n >= {2 * self.shifts + 1}"
                              f" slots, got {self.memory_n}")


# --- addressing (pure functions, tested one by one) --------------------------------------------
# Every head is addressed at once: K heads (here 1 read, 1 write) on a head axis, so each stage
# is a handful of batched operations whatever the number of heads.
def content_weights(memory: torch.Tensor, key: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """memory (B, N, M), key (B, K, M), beta (B, K, 1) -> (B, K, N): softmax of beta * cosine."""
    mem = memory / (memory.norm(dim=-1, keepdim=True) + 1e-8)  # (B, N, M) unit rows
    key = key / (key.norm(dim=-1, keepdim=True) + 1e-8)  # (B, K, M)
    return torch.softmax(beta * torch.bmm(key, mem.transpose(1, 2)), dim=-1)  # (B, K, N)


def circular_shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """w (B, K, N), s (B, K, 2S+1) over shifts -S..S -> (B, K, N): ``w~_i = sum_k s_k w_{i-k}``,
    indices modulo N, so the mass at slot j moves to slot j + k with probability s_k."""
    S = (s.shape[-1] - 1) // 2
    if S == 0:
        return w * s
    wrapped = torch.cat([w[..., -S:], w, w[..., :S]], -1)  # (B, K, N + 2S)
    windows = wrapped.unfold(-1, 2 * S + 1, 1)  # (B, K, N, 2S+1): [i, j] = w_{i - S + j}
    return (windows * s.flip(-1)[:, :, None, :]).sum(-1)  # j = S - k pairs w_{i-k} with s_k


def sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """w (B, K, N), gamma (B, K, 1) >= 1 -> (B, K, N), renormalised."""
    w = (w + EPS) ** gamma
    return w / w.sum(-1, keepdim=True)


def address(memory: torch.Tensor, w_prev: torch.Tensor, key: torch.Tensor, beta: torch.Tensor,
            g: torch.Tensor, s: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The four stages (module docstring): memory (B, N, M), w_prev (B, K, N) and the heads'
    key (B, K, M), beta, g, gamma (B, K, 1), s (B, K, 2S+1) -> weights (B, K, N)."""
    w_c = content_weights(memory, key, beta)
    w_g = g * w_c + (1 - g) * w_prev
    return sharpen(circular_shift(w_g, s), gamma)


class Heads(nn.Module):
    """The read and write heads' parameters, read off the controller output by one linear map:
    per head a key, beta, g, shift and gamma; for the write head erase and add vectors."""

    def __init__(self, hidden: int, M: int, shifts: int) -> None:
        super().__init__()
        self.M, self.n_shift = M, 2 * shifts + 1
        self.width = M + 3 + self.n_shift  # addressing outputs of one head
        self.proj = nn.Linear(hidden, 2 * self.width + 2 * M)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """h (B, H) -> key (B, 2, M), beta, g, gamma (B, 2, 1), s (B, 2, n), erase, add (B, M);
        head 0 reads, head 1 writes."""
        M, n = self.M, self.n_shift
        out = self.proj(h)  # (B, 2 width + 2M)
        p = out[:, : 2 * self.width].view(-1, 2, self.width)  # (B, 2, width)
        key, beta = p[..., :M], F.softplus(p[..., M : M + 1])
        g = torch.sigmoid(p[..., M + 1 : M + 2])
        s = torch.softmax(p[..., M + 2 : M + 2 + n], -1)
        gamma = 1 + F.softplus(p[..., M + 2 + n :])
        erase, add = torch.sigmoid(out[:, 2 * self.width : -M]), torch.tanh(out[:, -M:])
        return key, beta, g, s, gamma, erase, add


class NTMState(NamedTuple):
    h: torch.Tensor  # (layers, B, H) controller outputs
    c: torch.Tensor  # (layers, B, H) controller cells
    memory: torch.Tensor  # (B, N, M)
    weights: torch.Tensor  # (B, 2, N): the read head's and the write head's
    read: torch.Tensor  # (B, M) the last read vector


class NTM(TorchModel):
    """``forward(x (B, T, inputs)) -> logits (B, T, outputs)``; ``trace`` also returns the
    read and write weightings (B, T, N) for drawing."""

    family = "ntm"
    Config = NTMConfig
    memory0: torch.Tensor  # (N, M) buffer: the memory before the first step
    w0: torch.Tensor  # (N,) buffer: the weighting before the first step (slot 0)

    def __init__(self, cfg: NTMConfig, vocab: Any = None) -> None:
        super().__init__()  # `vocab` is unused: inputs and outputs are bit vectors
        self.config = self.cfg = cfg
        H, M = cfg.controller, cfg.memory_m
        if not cfg.memory_n:  # the baseline: one fused LSTM over the sequence, no memory
            self.lstm = nn.LSTM(cfg.inputs, H, cfg.layers, batch_first=True)
            self.out = nn.Linear(H, cfg.outputs)
            return
        self.cells = nn.ModuleList(nn.LSTMCell((cfg.inputs + M) if i == 0 else H, H)
                                   for i in range(cfg.layers))
        self.heads = Heads(H, M, cfg.shifts)
        self.read0 = nn.Parameter(torch.randn(M) * 0.01)  # learned first read vector
        self.register_buffer("memory0", torch.full((cfg.memory_n, M), MEMORY_INIT))
        self.register_buffer("w0", F.one_hot(torch.tensor(0), cfg.memory_n).float())  # slot 0
        self.out = nn.Linear(H + M, cfg.outputs)

    # --- the recurrence ------------------------------------------------------------------------
    def start(self, batch_size: int) -> NTMState:
        """The state before the first step: fresh memory, both heads on slot 0."""
        cfg, ref = self.cfg, self.read0
        # distinct contiguous tensors, laid out as every later step's: a compiled step then
        # serves the first step too, instead of compiling again for broadcast views
        h0, c0 = (ref.new_zeros(cfg.layers, batch_size, cfg.controller) for _ in range(2))
        w0 = self.w0.to(ref.dtype).expand(batch_size, 2, -1).contiguous()  # (B, 2, N)
        memory = self.memory0.to(ref.dtype).expand(batch_size, -1, -1).contiguous()  # (B, N, M)
        return NTMState(h0, c0, memory, w0, self.read0.expand(batch_size, -1).contiguous())

    def step(self, x: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState]:
        """One time step: x (B, inputs) -> logits (B, outputs) and the next state."""
        state = self._recur(x, state)
        return self.out(torch.cat([state.h[-1], state.read], -1)), state

    def _recur(self, x: torch.Tensor, state: NTMState) -> NTMState:
        """The state update of `step`, without the output layer."""
        inp, hs, cs = torch.cat([x, state.read], -1), [], []  # (B, inputs + M)
        for i, cell in enumerate(self.cells):
            h, c = cell(inp, (state.h[i], state.c[i]))  # (B, H) each
            hs.append(h)
            cs.append(c)
            inp = h
        memory = state.memory  # (B, N, M)
        key, beta, g, s, gamma, erase, add = self.heads(inp)
        w = address(memory, state.weights, key, beta, g, s, gamma)  # (B, 2, N)
        read = torch.bmm(w[:, :1], memory)[:, 0]  # (B, M), read before this step's write
        w_w = w[:, 1, :, None]  # (B, N, 1)
        memory = memory * (1 - w_w * erase[:, None, :]) + w_w * add[:, None, :]  # (B, N, M)
        return NTMState(torch.stack(hs), torch.stack(cs), memory, w, read)

    def trace(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, inputs) -> logits (B, T, outputs), read and write weightings (B, T, N)."""
        if not self.cfg.memory_n:
            raise SeqlabError("this model has no memory (model.memory_n=0): nothing to draw")
        recur = self._recur
        if self.cfg.compile and torch.is_grad_enabled():
            if "_compiled" not in self.__dict__:  # one compiled function per model, built lazily
                self.__dict__["_compiled"] = torch.compile(self._recur, dynamic=False)
            recur = self.__dict__["_compiled"]
        state, hidden, reads, writes = self.start(x.shape[0]), [], [], []
        # Addressing in bf16 (the trainer's autocast on some CPUs) loses the sharp weightings
        # that the memory depends on: the recurrence always runs in the weights' precision.
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.read0.dtype)
            for t in range(x.shape[1]):
                state = recur(x[:, t], state)
                hidden.append(torch.cat([state.h[-1], state.read], -1))  # (B, H + M)
                reads.append(state.weights[:, 0])
                writes.append(state.weights[:, 1])
            logits = self.out(torch.stack(hidden, 1))  # (B, T, outputs): one call for all steps
        return logits, torch.stack(reads, 1), torch.stack(writes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, inputs) -> logits (B, T, outputs); each output sees only inputs up to t."""
        if not self.cfg.memory_n:
            h, _ = self.lstm(x)  # (B, T, H)
            return self.out(h)
        return self.trace(x)[0]

    # --- what the generic trainer needs (the rest comes from TorchModel) ----------------------
    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], state: Any
                      ) -> tuple[torch.Tensor, None]:
        """Binary cross-entropy (nats) per output bit that counts (mask), averaged."""
        x, y, mask = batch  # (B, T, inputs), (B, T, outputs), (B, T, outputs)
        bce = F.binary_cross_entropy_with_logits(self(x).float(), y, reduction="none")
        return (bce * mask).sum() / mask.sum().clamp_min(1), None
