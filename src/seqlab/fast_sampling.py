"""Fast token-by-token generation: fused, preallocated cell steps for the recurrent LMs.

Generation advances every layer by one token at a time, so its cost is reading the weights
once per step (a matrix-vector product per layer) plus Python and dispatcher overhead per op.
`nn.LSTM` at sequence length 1 pays oneDNN's per-call set-up (PERF-NOTES trap 2), and the
protocol's ``step`` also rebuilds its state tuple and tensors every token. `RecurrentStepper`
instead:

* folds the embedding into layer 1: ``table = E @ W_ih^T + b_ih (+ b_hh)`` is precomputed, so
  a token's input projection is one row lookup (``index_select`` into a buffer);
* keeps [W_ih | W_hh] of every later layer concatenated, so each layer is one matrix product
  over a buffer that already holds [x_t | h_{t-1}] (the previous layer writes its output into
  it);
* at batch > 1, in float32 on a CPU whose torch has MKL, packs every matrix once for the
  stepper's batch size (`Product`): a plain ``addmm`` repacks the whole weight matrix on every
  call, which costs more than the product itself at the small batches of generation (1.5-2.3x
  at batch 8-32 for a 512-wide layer); batch 1 is a matrix-vector product, which MKL does
  not pack;
* updates the state in place with ``out=``/in-place ops on preallocated buffers, under
  ``torch.inference_mode``: no allocation per step except the sampled token.

It runs the same weights as the model (no copy of the checkpoint, a derived cache), in the
model's dtype, and equals ``model.forward`` up to floating-point summation order (the tests
compare logits in float64 and float32). It only computes logits: `seqlab.sampling` draws from
them with its own `pick`, so a seed gives the same tokens as the protocol path.

`ConvStepper` does the same for the conv stacks (WaveNet, TCN): each causal convolution's
queue is a ring of its past inputs indexed by time, read by index and written in place, and
each kernel tap is one product on preallocated buffers. Any other language model (the window
and Transformer families, n-grams) goes through `ModuleStepper` for batched steps
(``forward`` on one column under inference mode) or through the protocol's ``step`` for
batch 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.nn.conv import TCNStack, WaveNetStack

# A CPU step of up to `one_thread_rows` rows (a class attribute of each stepper) runs on one
# intra-op thread: its products are matrix-vector or few-row products, and splitting each of a
# step's dozen ops across threads costs more in OpenMP fork-join than the second core gains.
# Measured on a 2-vCPU AMD EPYC (benchmarks/sampling, 2026-12-06), chars/s per row, one thread
# against two: 2x512 LSTM 2,361 vs 1,415 at batch 1, 648 vs 570 at 8, but 273 vs 305 at 32;
# the conv stacks (64-128 channels) gain at every batch to 64 (WaveNet 888 vs 222 at 64).


def _one_thread(rows: int, limit: int, model: Any) -> bool:
    """Whether a stepper of `rows` rows steps on one thread: few enough rows, on the CPU."""
    return rows <= limit and model.head.weight.device.type == "cpu"


@contextmanager
def _step_threads(one: bool) -> Iterator[None]:
    """Run the block on one intra-op thread when `one`, then restore the caller's count."""
    threads = torch.get_num_threads()
    if not one or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class RecurrentStepper:
    """Batched, in-place one-token steps of a `seqlab.models.recurrent.RecurrentLM`.

    ``step(tokens (B,)) -> logits (B, V)``; the logits tensor is a buffer overwritten by the
    next step (clone it to keep it). ``state()`` / ``load_state()`` convert to and from the
    stack's state, so a stepper can continue from ``model.prime`` or hand its state back.
    """

    batch_dim = 1  # rows of the state: (layers, B, H)
    one_thread_rows = 8  # up to this many rows a step runs on one thread (see _step_threads)

    def __init__(self, model: Any, batch_size: int = 1, *, packed: bool = True) -> None:
        if not supports(model):
            raise SeqlabError(f"the fast stepper runs recurrent LMs without peepholes or "
                              f"time_skip, got {getattr(model, 'family', type(model).__name__)}")
        c = model.config
        self.kind, self.H, self.L, self.B = c.cell, c.hidden, c.layers, batch_size
        self.relu = c.nonlinearity == "relu"
        self.residual_from = c.residual_start if c.residual else None  # 1-based layer
        self.version = weights_version(model)
        self.packed = packed  # MKL's packed GEMM where it applies (`Product`)
        self.one_thread = _one_thread(batch_size, self.one_thread_rows, model)
        with torch.inference_mode():
            self._build_weights(model)
            self._build_buffers()

    # --- construction -------------------------------------------------------------------------
    def _build_weights(self, model: Any) -> None:
        """Derived weights: the layer-1 input table and the concatenated later layers. The LSTM's
        gate rows are reordered from torch's (i, f, g, o) to (i, f, o, g), so one sigmoid covers
        the three sigmoid gates; every matrix is kept as its transposed view (an addmm operand)."""
        ws = [layer.weights(0) for layer in model.stack.layers]  # CellWeights per layer
        gru = self.kind == "gru"
        perm = _lstm_order(self.H) if self.kind == "lstm" else None

        def rows(t: torch.Tensor) -> torch.Tensor:
            return (t if perm is None else t[perm]).detach().contiguous()

        def opt(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else rows(t)

        w0 = ws[0]
        # (V, G*H): the embedding times W_ih plus the biases that do not depend on h. The GRU
        # keeps b_hh apart (its reset gate scales W_hn h + b_hn).
        b0 = _add(w0.b_ih, None if gru else w0.b_hh)
        table = F.linear(model.embed.weight, w0.w_ih, b0).detach()
        self.table = (table if perm is None else table[:, perm]).contiguous()
        self.w_hh0 = rows(w0.w_hh)  # (G*H, H)
        self.b_hh0 = opt(w0.b_hh) if gru else None
        self.w_cat: list[torch.Tensor] = []  # layers 2..L: (G*H, I + H), [W_ih | W_hh]
        self.b_cat: list[torch.Tensor | None] = []
        self.w_ih: list[torch.Tensor] = []  # GRU layers 2..L keep the two products apart
        self.w_hh: list[torch.Tensor] = []
        self.b_ih: list[torch.Tensor | None] = []
        self.b_hh: list[torch.Tensor | None] = []
        for w in ws[1:]:
            if gru:
                self.w_ih.append(rows(w.w_ih))
                self.w_hh.append(rows(w.w_hh))
                self.b_ih.append(opt(w.b_ih))
                self.b_hh.append(opt(w.b_hh))
            else:
                self.w_cat.append(rows(torch.cat([w.w_ih, w.w_hh], 1)))
                self.b_cat.append(opt(_add(w.b_ih, w.b_hh)))
        self.head_w, self.head_b = model.head.weight.detach(), model.head.bias.detach()
        B, pk = self.B, self.packed
        self.hh0 = Product(self.w_hh0, self.b_hh0, B, pk)
        self.cat = [Product(w, b, B, pk) for w, b in zip(self.w_cat, self.b_cat, strict=True)]
        self.ih = [Product(w, b, B, pk) for w, b in zip(self.w_ih, self.b_ih, strict=True)]
        self.hh = [Product(w, b, B, pk) for w, b in zip(self.w_hh, self.b_hh, strict=True)]
        self.head = Product(self.head_w, self.head_b, B, pk)

    def _build_buffers(self) -> None:
        B, H, L = self.B, self.H, self.L
        G = {"rnn": 1, "lstm": 4, "gru": 3}[self.kind]
        like = self.table
        # xh[l] (B, I + H) is layer l's [input | h]: layer 1's input is the table row, so its
        # buffer is just h. Later layers read the previous layer's output from their left part.
        self.xh = [like.new_zeros(B, (0 if i == 0 else H) + H) for i in range(L)]
        self.h = [x[:, x.shape[1] - H:] for x in self.xh]  # (B, H) views
        # Layer 1 reads its h apart from its input (the table row), so its h can live in layer
        # 2's input slot: the cell writes there directly, no copy. Later layers read [x | h]
        # as one operand, so their h stays in their own buffer and is copied onward.
        self.direct = [i == 0 and L > 1 for i in range(L)]
        self.h = [self.xh[i + 1][:, :H] if self.direct[i] else self.h[i] for i in range(L)]
        self.c = [like.new_zeros(B, H) for _ in range(L)] if self.kind == "lstm" else []
        self.gates = like.new_empty(B, G * H)
        self.gh = like.new_empty(B, G * H)  # GRU: W_hh h + b_hh
        self.tmp = like.new_empty(B, H)
        self.logits = like.new_empty(B, self.head_w.shape[0])
        g, gh = self.gates, self.gh
        # Views of the buffers, made once: LSTM (i, f, o | g); GRU (r, z | n).
        self.g_sig, self.g_tanh = g[:, :3 * H], g[:, 3 * H:]
        self.g_i, self.g_f, self.g_o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H]
        self.g_rz, self.g_n, self.g_r, self.g_z = g[:, :2 * H], g[:, 2 * H:], g[:, :H], \
            g[:, H:2 * H]
        self.gh_rz, self.gh_n = gh[:, :2 * H], gh[:, 2 * H:]
        self.x_in = [x[:, :H] for x in self.xh]  # layer l's input part (l >= 1)

    def _residual(self, i: int) -> bool:
        """Whether layer i (0-based) adds its input to its output (GNMT residual)."""
        return self.residual_from is not None and i + 1 >= self.residual_from and i > 0

    # --- state --------------------------------------------------------------------------------
    def reset(self, rows: Sequence[int] | None = None) -> None:
        """Zero the state of `rows` (all when None): those sequences start afresh."""
        with torch.inference_mode():
            for t in (*self.h, *self.c):
                if rows is None:
                    t.zero_()
                else:
                    t[list(rows)] = 0

    def state(self) -> tuple[torch.Tensor, ...]:
        """The stack's state: (h,) or (h, c), each (layers, B, H), copied."""
        h = torch.stack([t.clone() for t in self.h])
        return (h, torch.stack(self.c)) if self.kind == "lstm" else (h,)

    def load_state(self, state: Sequence[torch.Tensor]) -> None:
        """Continue from a stack state ((h,) or (h, c), each (layers, B, H))."""
        with torch.inference_mode():
            for i in range(self.L):
                self.h[i].copy_(state[0][i])
                if self.kind == "lstm":
                    self.c[i].copy_(state[1][i])

    # --- stepping -----------------------------------------------------------------------------
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,) int64 -> logits (B, V), a buffer valid until the next step."""
        with torch.inference_mode(), _step_threads(self.one_thread):
            y = self._layer(0, tokens)
            for i in range(1, self.L):
                if not self.direct[i - 1]:  # a residual sum, or a copy after one
                    x = self.x_in[i]
                    if self._residual(i - 1):
                        torch.add(y, self.x_in[i - 1], out=x)  # GNMT: input + output onward
                    else:
                        x.copy_(y)
                y = self._layer(i, tokens)
            if self._residual(self.L - 1):
                y = torch.add(y, self.x_in[self.L - 1], out=self.tmp)
            return self.head.into(y, self.logits)

    def _layer(self, i: int, tokens: torch.Tensor) -> torch.Tensor:
        """Advance layer i in place; returns its new h (B, H)."""
        g = self.gates
        if i == 0:
            torch.index_select(self.table, 0, tokens, out=g)  # (B, G*H): x W_ih^T + biases
        if self.kind == "gru":
            return self._gru(i, g)
        if i == 0:
            self.hh0.add_to(self.h[0], g)
        else:
            self.cat[i - 1].into(self.xh[i], g)
        if self.kind == "lstm":
            return self._lstm(i)
        h = self.h[i]
        return torch.clamp(g, min=0, out=h) if self.relu else torch.tanh(g, out=h)

    def _lstm(self, i: int) -> torch.Tensor:
        c, h = self.c[i], self.h[i]
        self.g_sig.sigmoid_()  # i, f, o
        self.g_tanh.tanh_()  # g
        c.mul_(self.g_f).addcmul_(self.g_i, self.g_tanh)  # c' = f c + i g
        torch.tanh(c, out=self.tmp)
        return torch.mul(self.g_o, self.tmp, out=h)  # h' = o tanh(c')

    def _gru(self, i: int, gi: torch.Tensor) -> torch.Tensor:
        h, gh = self.h[i], self.gh
        if i > 0:
            self.ih[i - 1].into(self.x_in[i], gi)
        (self.hh0 if i == 0 else self.hh[i - 1]).into(h, gh)  # W_hh h + b_hh
        self.g_rz.add_(self.gh_rz).sigmoid_()  # r, z
        n = self.g_n.addcmul_(self.g_r, self.gh_n).tanh_()  # tanh(a_n + r (W h + b))
        # h' = (1 - z) n + z h = n + z (h - n)
        torch.sub(h, n, out=self.tmp)
        return torch.addcmul(n, self.g_z, self.tmp, out=h)


class Product:
    """``x @ W^T (+ b)`` for one weight matrix W (N, K) at a fixed batch size.

    ``torch.addmm`` hands MKL the plain matrix, and MKL packs all of it into its blocked layout
    on every call: at generation's batch sizes that costs more than the multiply (a 2048 x 1024
    matrix at batch 8-32: 1.5-2.3x slower than packed, `benchmarks/sampling`). Where torch has
    MKL's packed GEMM (float32 on CPU), `packed` is true and `batch` > 1 (one row is a
    matrix-vector product, which gains nothing), the matrix is packed once here, for `batch`
    rows; otherwise ``addmm`` runs on a transposed view made once. A call with another number
    of rows still gives the right product (MKL falls back to the plain matrix).
    """

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None, batch: int,
                 packed: bool = True) -> None:
        self.w, self.b, self.w_t, self.batch = w, b, w.t(), batch
        self.packed = _mkl_pack(w, batch) if packed and batch > 1 else None

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out (B, N) = x (B, K) W^T + b."""
        if self.packed is None:
            if self.b is None:
                return torch.mm(x, self.w_t, out=out)
            return torch.addmm(self.b, x, self.w_t, out=out)
        return out.copy_(torch.ops.mkl._mkl_linear(x, self.packed, self.w, self.b, self.batch))

    def add_to(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out (B, N) += x (B, K) W^T (the bias is not added)."""
        if self.packed is None:
            return out.addmm_(x, self.w_t)
        return out.add_(torch.ops.mkl._mkl_linear(x, self.packed, self.w, None, self.batch))


def _mkl_pack(w: torch.Tensor, batch: int) -> torch.Tensor | None:
    """MKL's packed copy of `w` for `batch` rows, or None where it does not apply (not float32
    on CPU, or a torch without MKL)."""
    if w.dtype != torch.float32 or w.device.type != "cpu" or not torch.backends.mkl.is_available():
        return None
    try:
        return torch.ops.mkl._mkl_reorder_linear_weight(w, batch)
    except (AttributeError, RuntimeError):  # an older or different build: plain addmm
        return None


def _lstm_order(H: int) -> torch.Tensor:
    """Row order taking torch's LSTM gates (i, f, g, o) to (i, f, o, g)."""
    return torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                      torch.arange(2 * H, 3 * H)])


class ConvStepper:
    """Batched, in-place one-token steps of a `seqlab.models.conv.ConvLM` (WaveNet or TCN): the
    queue scheme of Paine et al. (2016) on preallocated buffers, with no ``torch.cat`` per step.

    Each causal convolution (kernel k, dilation d) keeps the last ``ctx = (k - 1) d`` inputs it
    has seen in a ring (ctx, B, C_in) indexed by time modulo ctx: the input of time s lives in
    slot ``s % ctx``, so a step reads its taps x_{t - m d} (m = 1 .. k-1) by index, and then
    overwrites the oldest slot with x_t. The convolution is k products, one per tap, summed in
    place (``W[:, :, j]`` as a `Product`). The WaveNet's input 1x1 convolution is folded into the
    embedding (a table row per token, as `RecurrentStepper` does for layer 1), its skip
    projections run as one product over every layer's gated output side by side, and the last
    layer's residual projection, which nothing reads, is skipped. Weight-normalised (TCN)
    convolutions use their effective weights g v / ||v||. Same ``step`` / ``state`` /
    ``load_state`` / ``reset`` interface as `RecurrentStepper`; the state is the model's own
    (the buffers of ``ConvLM.forward``), so a stepper continues from ``model.prime``.
    """

    batch_dim = 0  # rows of the state: every buffer is (B, C_in, ctx)
    one_thread_rows = 64  # up to this many rows a step runs on one thread (see _step_threads)

    def __init__(self, model: Any, batch_size: int = 1, *, packed: bool = True) -> None:
        if not conv_supported(model):
            raise SeqlabError(f"the conv stepper runs WaveNet and TCN models, got "
                              f"{getattr(model, 'family', type(model).__name__)}")
        self.kind, self.B, self.t = model.config.kind, batch_size, 0
        self.version = weights_version(model)
        B, pk = batch_size, packed
        self.one_thread = _one_thread(batch_size, self.one_thread_rows, model)
        with torch.inference_mode():
            stack = model.stack
            self.convs = [_QueueConv(c, B, pk) for c in stack.convs()]  # the model's order
            self.head = Product(model.head.weight.detach(), model.head.bias.detach(), B, pk)
            like = model.head.weight
            self.logits = like.new_empty(B, model.head.weight.shape[0])
            if self.kind == "wavenet":
                self._build_wavenet(model, B, pk)
            else:
                self._build_tcn(model, B, pk)

    def _build_wavenet(self, model: Any, B: int, pk: bool) -> None:
        stack, C = model.stack, model.config.channels
        inp = stack.inp.weight.detach()[:, :, 0]  # (C, E)
        self.table = F.linear(model.embed.weight, inp, stack.inp.bias).detach()  # (V, C)
        L = len(stack.layers)
        self.res = [Product(layer.res.weight.detach()[:, :, 0], layer.res.bias.detach(), B, pk)
                    for layer in stack.layers[:-1]]
        # every layer's skip 1x1 side by side: (S, L*C), and the sum of their biases
        skip_w = torch.cat([layer.skip.weight.detach()[:, :, 0] for layer in stack.layers], 1)
        skip_b = torch.stack([layer.skip.bias.detach() for layer in stack.layers]).sum(0)
        self.skip = Product(skip_w.contiguous(), skip_b, B, pk)
        post = stack.out[1]  # relu -> 1x1 -> relu
        self.post = Product(post.weight.detach()[:, :, 0].contiguous(), post.bias.detach(), B,
                            pk)
        like = self.table
        self.x = [like.new_zeros(B, C), like.new_zeros(B, C)]  # the residual stream, ping-pong
        self.h = like.new_empty(B, 2 * C)  # (filter | gate)
        self.z = like.new_empty(B, L * C)  # every layer's gated output, side by side
        self.s = like.new_empty(B, skip_w.shape[0])
        self.s2 = like.new_empty(B, skip_w.shape[0])
        self.C, self.L = C, L

    def _build_tcn(self, model: Any, B: int, pk: bool) -> None:
        self.embed_w = model.embed.weight.detach()
        like, C = self.embed_w, model.config.channels
        self.down = [None if b.down is None else
                     Product(b.down.weight.detach()[:, :, 0].contiguous(), b.down.bias.detach(),
                             B, pk) for b in model.stack.blocks]
        self.x0 = like.new_empty(B, self.embed_w.shape[1])
        self.h1, self.h2 = like.new_empty(B, C), like.new_empty(B, C)
        self.r = like.new_empty(B, C)
        self.x = [like.new_zeros(B, C), like.new_zeros(B, C)]

    # --- state --------------------------------------------------------------------------------
    def reset(self, rows: Sequence[int] | None = None) -> None:
        with torch.inference_mode():
            for c in self.convs:
                if rows is None:
                    c.ring.zero_()
                else:
                    c.ring[:, list(rows)] = 0

    def state(self) -> tuple[torch.Tensor, ...]:
        """The model's state: every convolution's buffer (B, C_in, ctx), oldest input first."""
        return tuple(c.ring.roll(-(self.t % c.ctx), 0).permute(1, 2, 0).contiguous()
                     for c in self.convs)

    def load_state(self, state: Sequence[torch.Tensor]) -> None:
        with torch.inference_mode():
            self.t = 0
            for c, buf in zip(self.convs, state, strict=True):
                c.ring.copy_(buf.permute(2, 0, 1))

    # --- stepping -----------------------------------------------------------------------------
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,) int64 -> logits (B, V), a buffer valid until the next step."""
        with torch.inference_mode(), _step_threads(self.one_thread):
            y = self._wavenet(tokens) if self.kind == "wavenet" else self._tcn(tokens)
            self.t += 1
            return self.head.into(y, self.logits)

    def _wavenet(self, tokens: torch.Tensor) -> torch.Tensor:
        C, x = self.C, self.x[0]
        torch.index_select(self.table, 0, tokens, out=x)  # (B, C): inp(embed(token))
        for i, conv in enumerate(self.convs):
            conv.step(x, self.h, self.t)  # (B, 2C)
            self.h[:, :C].tanh_()
            self.h[:, C:].sigmoid_()
            z = torch.mul(self.h[:, :C], self.h[:, C:], out=self.z[:, i * C:(i + 1) * C])
            if i + 1 < self.L:  # x + res(z) onward (the last layer's is never read)
                nxt = self.x[(i + 1) % 2]
                self.res[i].into(z, nxt).add_(x)
                x = nxt
        self.skip.into(self.z, self.s).relu_()  # (B, S): the sum of every layer's skip
        return self.post.into(self.s, self.s2).relu_()

    def _tcn(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.index_select(self.embed_w, 0, tokens, out=self.x0)  # (B, E)
        for i, down in enumerate(self.down):
            self.convs[2 * i].step(x, self.h1, self.t).relu_()
            self.convs[2 * i + 1].step(self.h1, self.h2, self.t).relu_()
            res = x if down is None else down.into(x, self.r)
            x = torch.add(self.h2, res, out=self.x[i % 2]).relu_()
        return x


class _QueueConv:
    """One causal convolution of `ConvStepper`: its ring of past inputs and one `Product` per
    tap (tap j multiplies the input of time t - (k - 1 - j) d)."""

    def __init__(self, conv: Any, batch: int, packed: bool) -> None:
        w = conv.conv.weight.detach()  # (C_out, C_in, k); weight norm: the effective weight
        b = conv.conv.bias.detach()
        self.k, self.d, self.ctx = w.shape[2], conv.dilation, conv.context
        self.taps = [Product(w[:, :, j].contiguous(), b if j == self.k - 1 else None, batch,
                             packed) for j in range(self.k)]
        self.ring = w.new_zeros(self.ctx, batch, w.shape[1])  # (ctx, B, C_in)

    def step(self, x: torch.Tensor, out: torch.Tensor, t: int) -> torch.Tensor:
        """out (B, C_out) = the convolution at time t of x (B, C_in) and the queued inputs."""
        self.taps[-1].into(x, out)  # the current input, with the bias
        for j in range(self.k - 1):
            self.taps[j].add_to(self.ring[(t - (self.k - 1 - j) * self.d) % self.ctx], out)
        self.ring[t % self.ctx].copy_(x)  # x_t replaces x_{t - ctx}, read above as tap 0
        return out


class ModuleStepper:
    """Batched steps of any `NeuralLM` through ``forward`` on one column (conv queues,
    windows, Transformers...), under inference mode: the generic path `RecurrentStepper`
    is measured against, with the same ``step`` / ``reset`` interface."""

    def __init__(self, model: Any, batch_size: int = 1) -> None:
        self.model, self.B = model, batch_size
        self.version = weights_version(model)
        self._state = model.initial_state(batch_size)

    def reset(self, rows: Sequence[int] | None = None) -> None:
        if rows is None:
            self._state = self.model.initial_state(self.B)
            return
        fresh = self.model.initial_state(self.B)
        with torch.inference_mode():
            for t, f in zip(_tensors(self._state), _tensors(fresh), strict=True):
                t[list(rows)] = f[list(rows)]

    def state(self) -> Any:
        return self._state

    def load_state(self, state: Any) -> None:
        self._state = state

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits, self._state = self.model(tokens[:, None], self._state)  # (B, 1, V)
        return logits[:, 0]


def _tensors(state: Any) -> list[torch.Tensor]:
    if state is None:
        return []
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in _tensors(s)]


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return None if b is None else b.detach()
    return a.detach() if b is None else (a + b).detach()


def supports(model: Any) -> bool:
    """Whether `RecurrentStepper` runs this model (a recurrent LM, one direction, no
    peepholes or time skips, which only the reference cells implement)."""
    c = getattr(model, "config", None)
    return (getattr(model, "family", None) == "recurrent" and c is not None
            and not (c.peepholes or c.time_skip or c.bidirectional)
            and not (c.residual and c.residual_start == 1))


def conv_supported(model: Any) -> bool:
    """Whether `ConvStepper` runs this model: embedding -> WaveNet or TCN stack -> linear head
    (the conv LMs and the raw-audio WaveNet)."""
    return (isinstance(getattr(model, "stack", None), WaveNetStack | TCNStack)
            and isinstance(getattr(model, "embed", None), nn.Embedding)
            and isinstance(getattr(model, "head", None), nn.Linear))


def fused(model: Any) -> bool:
    """Whether `stepper` gives this model a fused stepper (recurrent or convolutional)."""
    return supports(model) or conv_supported(model)


def weights_version(model: Any) -> tuple[Any, ...]:
    """Changes whenever a parameter is replaced or updated in place (a training step), so a
    cached stepper built from older weights is rebuilt."""
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())


def stepper(model: Any, batch_size: int = 1) -> RecurrentStepper | ConvStepper | ModuleStepper:
    """The fastest stepper for `model`: fused cells for recurrent LMs, queued products for the
    conv stacks, else `forward`."""
    was = model.training
    model.eval()  # dropout off: the derived weights are those of inference
    try:
        if supports(model):
            return RecurrentStepper(model, batch_size)
        if conv_supported(model):
            return ConvStepper(model, batch_size)
        return ModuleStepper(model, batch_size)
    finally:
        model.train(was)


def sample_batch(model: Any, prompts: Sequence[Sequence[int]], length: int, *,
                 temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """`length` tokens for each prompt, all sequences stepped together: (B, length) ids.

    Each step draws every row at once (``torch.multinomial`` on (B, V) probabilities with one
    generator), so the stream differs from B separate batch-1 samples with the same seed; the
    same seed and prompts always give the same array. Temperature 0 is greedy.
    """
    B = len(prompts)
    if B == 0 or length < 0:
        raise SeqlabError(f"sample_batch expects >= 1 prompt and length >= 0, got {B}, {length}")
    gen = torch.Generator().manual_seed(seed)
    st = stepper(model, B)
    eos = model.vocab.eos_id
    device = next(model.parameters()).device
    logits = _prime_rows(st, [[eos, *map(int, p)] for p in prompts], device)
    out = np.empty((B, length), dtype=np.int64)
    for t in range(length):
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = (logits.float() / temperature).softmax(-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=gen)[:, 0]
        out[:, t] = nxt.cpu().numpy()
        if t + 1 < length:
            logits = st.step(nxt.to(logits.device))
    return out


def _prime_rows(st: RecurrentStepper | ConvStepper | ModuleStepper, seqs: list[list[int]],
                device: torch.device) -> torch.Tensor:
    """Feed prompts of different lengths: shorter rows wait (their state is saved and put
    back) until the longest is read; returns the logits after each row's last token."""
    T = max(len(s) for s in seqs)
    last: torch.Tensor | None = None
    for t in range(T):
        # Left-pad by starting short rows late: rows with fewer tokens left are reset until
        # their own first token, so every row ends its prompt at the last step.
        toks = torch.tensor([s[t - (T - len(s))] if t >= T - len(s) else s[0] for s in seqs],
                            device=device)
        late = [r for r, s in enumerate(seqs) if t == T - len(s) and t > 0]
        if late:
            st.reset(late)
        last = st.step(toks)
    assert last is not None
    return last.clone()
