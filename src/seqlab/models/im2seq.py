"""Image-to-sequence: a CNN encoder under the seq2seq attention decoder (the ``im2seq`` family).

    image (B, 1, H, W) -> 4 conv 3x3 + ReLU blocks, max-pooled by 2 after the first three
                       -> feature grid (B, C, H/8, W/8)
                       -> + learned row and column embeddings, tanh(W [.]) -> (B, S, D)
                          with S = H/8 * W/8, flattened column by column
    <bos> y1 .. yn     -> `seqlab.seq2seq.model.Decoder`: LSTM + attention over the S cells
                       -> y1 .. yn <eos>

This is Show, Attend and Tell (Xu et al. 2015) as Deng et al. (2017) apply it to LaTeX
(im2latex), with learned 2-D positions in place of their row encoder. The decoder, its
teacher-forced training and greedy and beam search are seq2seq's own (`Im2Seq` is a `Seq2Seq`
with an injected encoder); without attention (``attention=none``) the decoder sees only the
image's mean-pooled feature vector, through its start state (the ablation).

Padding never changes a result. Every image's width is a multiple of 8 (`seqlab.data.formulas`
pads it so), each conv block's output is zeroed beyond the image's own width at that
resolution (so zero padding in a batch equals the convolution's own zero padding), the grid is
flattened column by column so an image's real cells are a prefix, and attention and pooling
mask the rest.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.seq2seq.data import PairVocab
from seqlab.seq2seq.model import Decoder, DecoderState, Seq2Seq, Seq2SeqConfig
from seqlab.seq2seq.search import DecodeConfig

POOL = 8  # total downsampling of the encoder in each direction (three 2x2 max-pools)


@dataclass
class Im2SeqConfig:
    """Shape of the image encoder and of the decoder."""

    channels: int = 128  # channels of the last conv block; the blocks have c/8, c/4, c/2, c
    hidden: int = 256  # decoder units and size of each grid cell's vector
    emb_dim: int = 64  # target token embedding size
    cell: Literal["rnn", "lstm", "gru"] = "lstm"  # decoder cell
    dec_layers: int = 1  # stacked decoder layers
    attention: Literal["none", "bahdanau", "dot", "general"] = "general"  # none: the ablation
    input_feeding: bool = True  # Luong: feed the previous attentional vector to the decoder
    init: Literal["zero", "bridge"] = "bridge"  # decoder start: zeros or from the pooled image
    dropout: float = 0.1  # in the decoder (embeddings, before the output layer)
    teacher_forcing: float = 1.0  # probability that the decoder is fed the gold previous token
    label_smoothing: float = 0.0
    height: int = 32  # image height in pixels (every image is placed on such a canvas)
    max_width: int = 256  # widest image in pixels: the column embeddings cover this many
    max_tgt_len: int = 64  # longest formula in tokens; decoding stops after it (+ <eos>)
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # strategy, beam size, ...

    def __post_init__(self) -> None:
        if self.channels < 8 or self.channels % 8:
            raise SeqlabError(f"model.channels must be a multiple of 8, >= 8, got {self.channels}")
        if self.height < 16 or self.height % POOL or self.max_width < 16 or \
                self.max_width % POOL:
            raise SeqlabError(f"model.height and model.max_width must be multiples of {POOL}, "
                              f">= 16, got {self.height} and {self.max_width}")
        if self.init == "zero" and self.attention == "none":
            raise SeqlabError("model.attention=none needs model.init=bridge: otherwise the "
                              "decoder never sees the image")
        self.decoder_config()  # checks the decoder's keys

    def decoder_config(self) -> Seq2SeqConfig:
        """The seq2seq config of the decoder part (the encoder keys are not used)."""
        return Seq2SeqConfig(
            cell=self.cell, emb_dim=self.emb_dim, hidden=self.hidden, dec_layers=self.dec_layers,
            bidirectional=False, attention=self.attention, input_feeding=self.input_feeding,
            init=self.init, dropout=self.dropout, teacher_forcing=self.teacher_forcing,
            label_smoothing=self.label_smoothing, max_tgt_len=self.max_tgt_len,
            decode=self.decode)


class ImageEncoder(nn.Module):
    """Pixels -> a grid of cell vectors, its mask, and the mean-pooled image vector."""

    def __init__(self, c: Im2SeqConfig) -> None:
        super().__init__()
        widths = [1, c.channels // 8, c.channels // 4, c.channels // 2, c.channels]
        convs = [nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(widths)]
        self.convs = nn.ModuleList(convs)
        self.pool = nn.MaxPool2d(2)
        self.rows = nn.Embedding(c.height // POOL, c.hidden)
        self.cols = nn.Embedding(c.max_width // POOL, c.hidden)
        self.proj = nn.Linear(c.channels, c.hidden)
        self.max_width = c.max_width
        # torch's default init shrinks the signal ~2x per ReLU block (the last block's features
        # had std 0.02 on formula images) while the N(0, 1) position embeddings had std 1: the
        # grid said where a cell is and almost nothing of what it shows.
        # He init keeps the features' scale through the blocks; small positions add to them.
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.normal_(self.rows.weight, std=0.1)
        nn.init.normal_(self.cols.weight, std=0.1)

    def forward(self, images: torch.Tensor, widths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, 1, H, W) in [0, 1], widths (B,) in pixels -> memory (B, S, D), pooled
        (B, D), mask (B, S) True on the image's own cells."""
        if images.shape[-1] > self.max_width:
            raise SeqlabError(f"expected images at most model.max_width = {self.max_width} px "
                              f"wide, got {images.shape[-1]}")
        x, scale = images, 1
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            keep = torch.arange(x.shape[-1], device=x.device) * scale < widths[:, None]  # (B, W)
            x = x * keep[:, None, None, :]  # zero beyond each image: padding changes nothing
            if i < 3:
                x, scale = self.pool(x), scale * 2
        B, _, Hg, Wg = x.shape  # (B, C, H/8, W/8)
        cells = x.permute(0, 3, 2, 1)  # (B, W/8, H/8, C): column by column
        pos = self.cols.weight[:Wg, None, :] + self.rows.weight[None, :Hg, :]  # (W/8, H/8, D)
        memory = torch.tanh(self.proj(cells) + pos).reshape(B, Wg * Hg, -1)  # (B, S, D)
        mask = torch.arange(Wg * Hg, device=x.device) < (widths[:, None] // POOL) * Hg  # (B, S)
        pooled = (memory * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, D)
        return memory, pooled, mask


class Im2Seq(Seq2Seq):
    """`Seq2Seq` with `ImageEncoder`: batches carry ``src`` images (B, 1, H, W) and ``src_len``
    their widths in pixels. The vocabulary is a `PairVocab` whose source side holds only the
    special tokens (an image has no source tokens); its target side holds the formula tokens.
    """

    family = "im2seq"
    Config = Im2SeqConfig  # type: ignore[assignment]  # a Seq2SeqConfig is built from it
    width = "hidden"

    def __init__(self, config: Im2SeqConfig, vocab: PairVocab) -> None:
        dec = config.decoder_config()
        super().__init__(dec, vocab, encoder=ImageEncoder(config),
                         decoder=Decoder(dec, len(vocab.tgt)))
        self.config = config  # what checkpoints store; it has the keys Seq2Seq's loss reads

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        """images (B, 1, H, W), widths (B,) -> the decoder's start state over the grid."""
        src, src_len = src.to(self.device), src_len.to(self.device)
        memory, pooled, mask = self.encoder(src, src_len)  # (B, S, D), (B, D), (B, S)
        return self.decoder.start(memory, pooled, mask)
