"""The Transformer language model: a small decoder-only GPT, after nanoGPT's ``model.py``.

Token embedding (plus learned positions, or rotary positions inside attention) -> ``layers``
pre-LayerNorm blocks (causal self-attention through `F.scaled_dot_product_attention`, then a
GELU MLP, each added to the residual stream) -> LayerNorm -> logits through the token embedding
itself (tied input and output embeddings). References: Vaswani et al. (2017); Radford et al.
(2019, GPT-2: pre-LayerNorm, scaled residual initialisation); Su et al. (2021, RoFormer: rotary
positions); Press & Wolf (2017, tied embeddings); Karpathy, nanoGPT.

**A finite context that slides.** The model sees at most ``block_size`` tokens, its window. Its
state between calls is a key-value cache of the window: the window's tokens and every layer's
keys and values; a step appends one entry to each. When the window is full it slides: the
oldest tokens are dropped so that the last ``keep`` remain, and their cache is *recomputed*
from the tokens as a fresh window whose positions start at 0 again. Dropping cache entries
alone would not be exact for either kind of position: a learned position is baked into every
cached key, and with rotary positions the keys of layers >= 2 were computed from tokens that
have left the window. A slide costs one forward pass over ``keep`` tokens every
``block_size - keep`` tokens (nanoGPT's ``generate`` recomputes the whole window every token).

This defines the model's distribution over a stream of any length: windows start at multiples
of S = block_size - keep, and input i (the virtual end-of-line before the stream is input 0)
is read in window max(0, (i - keep) // S), with between keep + 1 and block_size tokens of
context once the stream is longer than one window. `forward` (any length), `step` and `prime`
(the sampler) and `log_prob` (bits per token, ``seqlab eval`` and ``compare``) all follow it,
so a token's score is the same whichever path computes it. `log_prob` scores the windows as a
batch: the strided sliding-window evaluation, each token scored once, with at least ``keep``
tokens of context; the default keep = block_size // 2 costs twice a pass over non-overlapping
windows.

**Training** reads the language-model task's windows (``train.seq_len``) independently:
nothing is carried from one batch to the next (``carries_state = False``), and the first token
of a window sees only itself, as in nanoGPT. Set ``train.seq_len`` to ``block_size``: shorter
windows leave the last positions untrained (a note says so); longer ones slide as above.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.config import check_range
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.models.base import NeuralLM

KV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys and values, each (B, H, n, D)
Rope = tuple[torch.Tensor, torch.Tensor]  # cos and sin of the rotary angles, each (T, D / 2)


class Cache(NamedTuple):
    """The state between calls: the current window and every layer's keys and values."""

    tokens: torch.Tensor  # (B, n): the window's tokens, oldest first (to recompute on a slide)
    kv: tuple[KV, ...]  # per layer


@dataclass
class TransformerConfig:
    """Shape of the decoder-only Transformer."""

    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads per block; dim must divide by it
    dim: int = 128  # width of the residual stream (and of the embeddings)
    block_size: int = 128  # context length: tokens one window holds (train.seq_len should match)
    keep: int | None = None  # tokens kept (recomputed) when a full window slides; None: half
    dropout: float = 0.0  # on embeddings, attention and residual branches; short runs underfit,
    # so none by default (nanoGPT's baby GPT uses 0.2 for 5000 steps on 1 MB of text)
    positions: Literal["rotary", "learned"] = "rotary"  # rotary: relative, inside attention
    bias: bool = False  # biases in linear layers and LayerNorms (nanoGPT: False is as good)

    def __post_init__(self) -> None:
        for key in ("layers", "heads", "dim", "block_size"):
            check_range(f"model.{key}", getattr(self, key), ">= 1")
        check_range("model.keep", self.keep, f"in [0, {self.block_size - 1}]", null=True)
        check_range("model.dropout", self.dropout, "in [0, 1)")
        if self.dim % self.heads:
            raise SeqlabError(f"model.dim must be a multiple of model.heads ({self.heads}), got "
                              f"{self.dim}")
        if self.positions == "rotary" and (self.dim // self.heads) % 2:
            raise SeqlabError("rotary positions rotate pairs of channels, so model.dim / "
                              f"model.heads must be even, got {self.dim} / {self.heads}; "
                              "valid: another width, or model.positions=learned")

    @property
    def window_keep(self) -> int:
        return self.block_size // 2 if self.keep is None else self.keep


# --- blocks ---------------------------------------------------------------------------------------
def rotary_tables(length: int, head_dim: int, base: float = 10000.0) -> Rope:
    """cos and sin of position x frequency, each (length, head_dim / 2) (Su et al. 2021)."""
    inv_freq = base ** -(torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq  # (L, D/2)
    return angles.cos().float(), angles.sin().float()


def rotate(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate channel pairs (i, i + D/2) of x (B, H, T, D) by their position's angles."""
    cos, sin = (r.to(x.dtype) for r in rope)  # under autocast x may be bf16
    x1, x2 = x.chunk(2, -1)  # (B, H, T, D/2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class CausalSelfAttention(nn.Module):
    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.heads, self.dropout = c.heads, c.dropout
        self.qkv = nn.Linear(c.dim, 3 * c.dim, bias=c.bias)
        self.proj = nn.Linear(c.dim, c.dim, bias=c.bias)
        self.resid_drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, past: KV | None, rope: Rope | None
                ) -> tuple[torch.Tensor, KV]:
        """x (B, T, C) at window positions n..n+T-1 after the n cached ones -> (B, T, C)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:  # (B, H, T, D) each
            q, k = rotate(q, rope), rotate(k, rope)
        n = 0
        if past is not None:
            n = past[0].shape[2]
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # (B, H, n + T, D)
        # Query t sees keys 0..n+t. Without a cache that is is_causal; with one, the mask is
        # shifted by n (is_causal aligns top-left), and a single query sees every key.
        mask = None if n == 0 or T == 1 else torch.ones(T, n + T, dtype=torch.bool,
                                                        device=x.device).tril(n)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=n == 0 and T > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, H, T, D) -> (B, T, C)
        return self.resid_drop(self.proj(y)), (k, v)


class MLP(nn.Module):
    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(c.dim, 4 * c.dim, bias=c.bias)
        self.proj = nn.Linear(4 * c.dim, c.dim, bias=c.bias)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(c.dim, bias=c.bias)
        self.attn = CausalSelfAttention(c)
        self.ln2 = nn.LayerNorm(c.dim, bias=c.bias)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, past: KV | None, rope: Rope | None
                ) -> tuple[torch.Tensor, KV]:
        a, kv = self.attn(self.ln1(x), past, rope)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


# --- the language model -------------------------------------------------------------------------
class TransformerLM(NeuralLM):
    family = "transformer"
    Config = TransformerConfig
    width = "dim"  # the key `compare --params` sizes
    carries_state = False  # training windows are independent; the cache serves scoring, sampling

    def __init__(self, config: TransformerConfig, vocab: Vocab) -> None:
        super().__init__(config, vocab)
        c = config
        self.name = "transformer"
        self.embed = nn.Embedding(len(vocab), c.dim)  # also the output layer (tied)
        self.pos = nn.Embedding(c.block_size, c.dim) if c.positions == "learned" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim, bias=c.bias)
        cos, sin = rotary_tables(c.block_size, c.dim // c.heads)
        self.rope_cos: torch.Tensor  # derived from the config: not saved in checkpoints
        self.rope_sin: torch.Tensor
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(_init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual branches scaled by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.layers))

    @classmethod
    def width_step(cls, config: TransformerConfig, overrides: dict[str, Any]) -> int:
        """A rotary head turns channel pairs: rotary widths are even. The head count is not
        part of the step (`resize` picks one that divides the width), unless the spec sets
        ``heads`` itself: then widths are multiples of it."""
        pair = 2 if config.positions == "rotary" else 1
        return pair * (config.heads if "heads" in overrides else 1)

    @classmethod
    def resize(cls, overrides: dict[str, Any], width: int, config: TransformerConfig
               ) -> dict[str, Any]:
        """The head count for ``dim = width`` (unless the spec sets it): the divisor of the
        width, leaving an even head width for rotary positions, nearest to the configured
        heads by ratio, ties to more heads. The parameter count does not depend on it."""
        if "heads" in overrides:
            return overrides
        pair = 2 if config.positions == "rotary" else 1
        fits = [h for h in range(1, width + 1) if width % h == 0 and (width // h) % pair == 0]
        if not fits:  # an odd rotary width; `width_step` (2) never asks for one
            raise SeqlabError(f"model.dim={width}: rotary heads need an even width")
        heads = min(fits, key=lambda h: (abs(math.log(h / config.heads)), -h))
        return {**overrides, "heads": heads}

    def forward(self, idx: torch.Tensor, state: Cache | None = None
                ) -> tuple[torch.Tensor, Cache | None]:
        """idx (B, T) -> logits (B, T, V) and the cache after the last token. T may exceed
        the free room of the window: the window slides (see the module docstring)."""
        W, K = self.config.block_size, self.config.window_keep
        pieces, t = [], 0
        while t < idx.shape[1]:
            if state is not None and state.tokens.shape[1] == W:  # full: slide, recompute
                state = self._encode(state.tokens[:, W - K:], None)[1] if K else None
            room = W - (0 if state is None else state.tokens.shape[1])
            h, state = self._encode(idx[:, t : t + room], state)  # (B, <= room, C)
            pieces.append(h)
            t += room
        if not pieces:  # an empty input: no logits, the state unchanged
            return idx.new_zeros((*idx.shape, len(self.vocab)), dtype=self.embed.weight.dtype
                                 ), state
        return F.linear(self.norm(torch.cat(pieces, 1)), self.embed.weight), state  # (B, T, V)

    def _encode(self, idx: torch.Tensor, cache: Cache | None) -> tuple[torch.Tensor, Cache]:
        """Tokens idx (B, T) that fit in the window after `cache` -> final hidden (B, T, C)."""
        n, T = (0 if cache is None else cache.tokens.shape[1]), idx.shape[1]
        x = self.embed(idx)  # (B, T, C)
        rope: Rope | None = None
        if self.pos is not None:
            x = x + self.pos(torch.arange(n, n + T, device=idx.device))
        else:
            rope = (self.rope_cos[n : n + T], self.rope_sin[n : n + T])
        x = self.drop(x)
        kv = []
        for i, block in enumerate(self.blocks):
            x, layer_kv = block(x, None if cache is None else cache.kv[i], rope)
            kv.append(layer_kv)
        tokens = idx if cache is None else torch.cat([cache.tokens, idx], 1)  # (B, n + T)
        return x, Cache(tokens, tuple(kv))

    # --- training --------------------------------------------------------------------------
    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor], state: Any
                      ) -> tuple[torch.Tensor, None]:
        x, y = batch  # (B, T) each
        logits, _ = self(x)  # a fresh window: nothing comes from, or goes to, other batches
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()), None

    def configure_optimizer(self, cfg: Any) -> torch.optim.Optimizer:
        # The one place the trainer shows the model its settings: say so when training windows
        # are shorter than the context that scoring and sampling fill.
        T, W = getattr(cfg, "seq_len", None), self.config.block_size
        if T is not None and T < W:
            print(f"note: train.seq_len={T} is shorter than model.block_size={W}: positions "
                  f"{T}..{W - 1} of the window are never trained, but scoring and sampling use "
                  f"them; set train.seq_len={W} or model.block_size={T}", file=sys.stderr)
        return super().configure_optimizer(cfg)

    # --- scoring ---------------------------------------------------------------------------
    def _stream_log_prob(self, ids: np.ndarray) -> np.ndarray:
        """The strided windows of the module docstring as batches of rows: row k holds inputs
        kS..kS+W-1 and scores the tokens that window k predicts (all of row 0; from column
        `keep` on in the others). Padding after the stream's end is causal, so never read."""
        W, K, N = self.config.block_size, self.config.window_keep, len(ids)
        ids = np.asarray(ids, dtype=np.int64)
        inputs = np.concatenate([[self.vocab.eos_id], ids[:-1]])  # input i predicts ids[i]
        starts = np.array([0, *range(W - K, max(N - K, 0), W - K)])  # windows that score any
        out = np.empty(N, dtype=np.float64)
        rows = max(1, self.eval_chunk // W)
        with self._inference():
            for b in range(0, len(starts), rows):
                pos = starts[b : b + rows, None] + np.arange(W)  # (R, W) stream positions
                inside = pos < N
                x = np.where(inside, inputs[np.minimum(pos, N - 1)], self.vocab.eos_id)
                y = torch.from_numpy(ids[np.minimum(pos, N - 1)]).to(self.device)
                logits, _ = self(torch.from_numpy(x).to(self.device))  # (R, W, V)
                lp = logits.float().log_softmax(-1).gather(-1, y[..., None])[..., 0]
                first = np.where(starts[b : b + rows] == 0, 0, K)[:, None]  # (R, 1)
                scored = inside & (np.arange(W) >= first)
                out[pos[scored]] = lp.double().cpu().numpy()[scored]
        return out


def _init_weights(m: nn.Module) -> None:
    """nanoGPT's initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(m, nn.Linear | nn.Embedding):
        nn.init.normal_(m.weight, 0.0, 0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)
