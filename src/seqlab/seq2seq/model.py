"""Recurrent encoder-decoder with attention: the ``seq2seq`` family.

    source ids -> embedding -> encoder: stacked (bi)RNN/LSTM/GRU layers over packed sequences
    <bos> y1 .. yn -> embedding (+ previous attentional vector: input feeding)
                   -> decoder: stacked RNN/LSTM/GRU cells, one step at a time
                   -> attention over the encoder states -> h~ = tanh(W_c [context; h])
                   -> softmax over the target vocabulary: y1 .. yn <eos>

The decoder follows Luong, Pham & Manning (2015): the top decoder state queries the encoder
states after the recurrent step (as OpenNMT-py does for every score function), and with input
feeding the attentional vector h~ of step t-1 joins the input of step t. The score function is
Bahdanau's additive one (Bahdanau, Cho & Bengio 2015) or Luong's dot/general. Without attention
h~ is the top decoder state itself (Sutskever, Vinyals & Le 2014). Residual connections add each
layer's input to its output from the second layer up (Wu et al. 2016, GNMT). Encoder and decoder
are built on the shared `seqlab.nn.recurrent.RecurrentStack` (fused kernels over packed
sequences for the encoder, ``step`` for the decoder), with attention from `seqlab.nn.attention`.
A bidirectional encoder layer gives each direction half of ``hidden`` units, so every layer
outputs ``hidden``. The decoder starts from zeros or from a learned "bridge" of the encoder's
final state. `Seq2Seq` composes the two: either can be injected in place of the default (an
image or piano-roll encoder, say), as long as it keeps the contract in `Seq2Seq`'s docstring.

Training is teacher-forced (with a configurable ratio of gold inputs: scheduled sampling,
Bengio et al. 2015) with optional label smoothing (Szegedy et al. 2016). Padding never reaches a
result: the encoder runs on packed sequences (``enforce_sorted=False``), attention masks padded
positions to weight 0, and the loss ignores ``<pad>`` targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.models.base import TokenModel, TorchModel, without_onednn
from seqlab.nn.attention import Attention
from seqlab.nn.recurrent import RecurrentStack, StackConfig
from seqlab.protocol import split_lengths
from seqlab.run import Run
from seqlab.seq2seq.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Batch,
    PairBatcher,
    Pairs,
    PairVocab,
    length_sorted_batches,
)
from seqlab.seq2seq.search import DecodeConfig, Hypothesis, translate

_NEVER_OUT = torch.tensor([PAD_ID, BOS_ID])


@dataclass
class Seq2SeqConfig:
    """Shape and training behaviour of the encoder-decoder."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"  # encoder and decoder cell (rnn is Elman's)
    emb_dim: int = 64  # source and target embedding size
    hidden: int = 128  # units per layer; a bidirectional layer gives each direction half
    enc_layers: int = 1  # stacked encoder layers
    dec_layers: int = 1  # stacked decoder layers
    bidirectional: bool = True  # encoder reads the source both ways
    residual: bool = False  # GNMT residual connections from the second layer up
    attention: Literal["none", "bahdanau", "dot", "general"] = "general"  # dot/general: Luong
    input_feeding: bool = True  # Luong: feed the previous attentional vector to the decoder
    init: Literal["zero", "bridge"] = "bridge"  # decoder start: zeros or tanh(W * encoder final)
    dropout: float = 0.1  # on embeddings, between layers and before the output layer
    tie_embeddings: bool = False  # target embedding = output matrix (needs emb_dim == hidden)
    teacher_forcing: float = 1.0  # probability that the decoder is fed the gold previous token
    label_smoothing: float = 0.0  # share of the target probability spread over the vocabulary
    max_src_len: int = 256  # longest source accepted (training, eval, translate)
    max_tgt_len: int = 256  # longest target accepted in training and evaluation data
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # for eval and translate

    def __post_init__(self) -> None:
        sizes = (self.emb_dim, self.hidden, self.enc_layers, self.dec_layers, self.max_src_len,
                 self.max_tgt_len)
        if min(sizes) < 1:
            raise SeqlabError("model.emb_dim, hidden, enc_layers, dec_layers, max_src_len and "
                              f"max_tgt_len must be >= 1, got {sizes}")
        if self.bidirectional and self.hidden % 2:
            raise SeqlabError(f"model.bidirectional splits model.hidden between two directions; "
                              f"it must be even, got {self.hidden}")
        if self.tie_embeddings and self.emb_dim != self.hidden:
            raise SeqlabError("model.tie_embeddings needs model.emb_dim == model.hidden, got "
                              f"{self.emb_dim} and {self.hidden}")
        for name in ("dropout", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise SeqlabError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.teacher_forcing <= 1:
            raise SeqlabError(f"model.teacher_forcing must be in [0, 1], got "
                              f"{self.teacher_forcing}")


# --- decoder state --------------------------------------------------------------------------
@dataclass
class DecoderState:
    """Everything a decoder step needs; row i is one hypothesis."""

    rnn: tuple[torch.Tensor, ...]  # the decoder stack's state: (h,) or (h, c), each (L, N, H)
    feed: torch.Tensor  # (N, H) previous attentional vector (input feeding)
    memory: torch.Tensor  # (N, S, H) encoder states
    keys: torch.Tensor | None  # (N, S, ·) attention keys, projected once per source
    mask: torch.Tensor  # (N, S) True on real source positions

    def repeat(self, k: int) -> DecoderState:
        """Each row k times in a row (rows b*k .. b*k+k-1 copy row b): beams or samples."""
        rep = lambda x, dim=0: x.repeat_interleave(k, dim=dim)  # noqa: E731
        return DecoderState(tuple(rep(x, 1) for x in self.rnn), rep(self.feed), rep(self.memory),
                            None if self.keys is None else rep(self.keys), rep(self.mask))

    def select(self, rows: torch.Tensor) -> DecoderState:
        """Reorder the recurrent part. Beam search only moves rows within a source's block,
        whose memory, keys and mask rows are identical, so those need no copy."""
        return DecoderState(tuple(x[:, rows] for x in self.rnn), self.feed[rows], self.memory,
                            self.keys, self.mask)


# --- the default encoder and decoder, both on the shared RecurrentStack ------------------------
def _stack_config(c: Seq2SeqConfig, layers: int, bidirectional: bool) -> StackConfig:
    return StackConfig(cell=c.cell, hidden=c.hidden // 2 if bidirectional else c.hidden,
                       layers=layers, dropout=c.dropout, residual=c.residual,
                       bidirectional=bidirectional)


class Encoder(nn.Module):
    """Embedding -> `RecurrentStack` over the padded source (packed, ``enforce_sorted=False``)."""

    def __init__(self, c: Seq2SeqConfig, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, c.emb_dim, padding_idx=PAD_ID)
        self.rnn = RecurrentStack(c.emb_dim, _stack_config(c, c.enc_layers, c.bidirectional))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> states (B, S, H) (0 on padding) and the top layer's final h (B, H):
        [forward at the last token; backward at the first] when bidirectional."""
        out, state = self.rnn(self.drop(self.embed(src)), lengths=src_len)  # (B, S, H)
        dirs = self.rnn.cfg.directions
        final = state[0][-dirs:]  # (dirs, B, H / dirs)
        return out, final.transpose(0, 1).reshape(src.shape[0], -1)


class Decoder(nn.Module):
    """A `RecurrentStack` stepped one token at a time, with input feeding, attention and the
    output layer."""

    def __init__(self, c: Seq2SeqConfig, vocab_size: int) -> None:
        super().__init__()
        self.c = c
        H = c.hidden
        self.embed = nn.Embedding(vocab_size, c.emb_dim, padding_idx=PAD_ID)
        self.rnn = RecurrentStack(c.emb_dim + (H if c.input_feeding else 0),
                                  _stack_config(c, c.dec_layers, False))
        self.attention = None if c.attention == "none" else Attention(c.attention, H, H)
        self.combine = None if self.attention is None else nn.Linear(2 * H, H, bias=False)
        self.n_states = 2 if c.cell == "lstm" else 1
        self.bridge = (nn.Linear(H, self.n_states * c.dec_layers * H) if c.init == "bridge"
                       else None)
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(H, vocab_size)
        if c.tie_embeddings:
            self.out.weight = self.embed.weight

    def start(self, memory: torch.Tensor, final: torch.Tensor, mask: torch.Tensor
              ) -> DecoderState:
        """The state before <bos>: zeros, or Joey NMT's bridge tanh(W final) for every layer's
        h (and c)."""
        B, H, L = memory.shape[0], self.c.hidden, self.c.dec_layers
        if self.bridge is None:
            flat = memory.new_zeros(B, self.n_states * L * H)
        else:
            flat = torch.tanh(self.bridge(final))
        rnn = flat.view(B, self.n_states, L, H).permute(1, 2, 0, 3).unbind(0)  # n x (L, B, H)
        keys = None if self.attention is None else self.attention.project(memory)
        return DecoderState(tuple(rnn), memory.new_zeros(B, H), memory, keys, mask)

    def step(self, prev: torch.Tensor, state: DecoderState
             ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """prev (N,) ids -> attentional vector h~ (N, H), new state, attention (N, S)."""
        x = self.drop(self.embed(prev))  # (N, E)
        if self.c.input_feeding:
            x = torch.cat([x, state.feed], -1)
        h, rnn = self.rnn.step(x, state.rnn)  # (N, H)
        weights = None
        if self.attention is not None:
            assert self.combine is not None  # built exactly when attention is
            context, weights = self.attention(h, state.keys, state.memory, state.mask)
            h = torch.tanh(self.combine(torch.cat([context, h], -1)))  # (N, H)
        return h, DecoderState(rnn, h, state.memory, state.keys, state.mask), weights

    def run(self, tgt_in: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """All steps at once (B, T) -> h~ (B, T, H), for teacher forcing without input feeding:
        no step then depends on the previous output, so the fused kernel runs the whole stack
        and only attention is per step. Equals calling `step` T times."""
        assert not self.c.input_feeding
        h, _ = self.rnn(self.drop(self.embed(tgt_in)), state.rnn)  # (B, T, H)
        if self.attention is None:
            return h
        assert self.combine is not None  # built exactly when attention is
        ctx = [self.attention(q, state.keys, state.memory, state.mask)[0] for q in h.unbind(1)]
        return torch.tanh(self.combine(torch.cat([torch.stack(ctx, 1), h], -1)))  # (B, T, H)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(h))


class DecoderBlock(Protocol):
    """What `Seq2Seq` calls on its decoder, an ``nn.Module``; `Decoder` is the default."""

    def start(self, memory: torch.Tensor, final: torch.Tensor, mask: torch.Tensor
              ) -> DecoderState: ...

    def step(self, prev: torch.Tensor, state: DecoderState
             ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]: ...

    def run(self, tgt_in: torch.Tensor, state: DecoderState) -> torch.Tensor: ...

    def logits(self, h: torch.Tensor) -> torch.Tensor: ...


# --- the model ------------------------------------------------------------------------------
class Seq2Seq(TorchModel):
    """Encoder-decoder over a source and a target vocabulary (`PairVocab`).

    ``fit(pairs, valid=pairs, run=run)`` trains through the generic Trainer; ``log_prob(pairs)``
    gives log p(y_t | y_<t, x) for every target token, ``<eos>`` included; ``translate`` decodes;
    ``conditioned(source)`` is a language model over targets, so the shared sampler works on it.

    The encoder and the decoder are injected modules; when not given, the defaults above
    (`Encoder`, `Decoder`) are built from the config. The contracts, with H = ``config.hidden``:

    * ``encoder(src, src_len (B,)) -> (memory (B, S, H), final (B, H))``. ``src`` is whatever
      the batches carry: token ids (B, S) for the default, float features (B, S, F) for a
      piano roll, pixels for an image. Position s of ``memory`` is real where s < src_len;
      ``final`` summarises the source for the decoder's bridge (``init=bridge``).
    * the decoder has `Decoder`'s methods: ``start(memory, final, mask) -> DecoderState``,
      ``step(prev (N,), state) -> (h~ (N, H), state, attention (N, S) or None)``,
      ``logits(h~) -> (.., V)`` and, used without input feeding, ``run(tgt_in, state)``.

    Checkpoints hold the weights only: `from_checkpoint` rebuilds the default blocks, so a model
    with an injected block is rebuilt by its owner, who then calls ``load_checkpoint``.
    """

    family = "seq2seq"
    Config = Seq2SeqConfig
    vocab_type = PairVocab

    def __init__(self, config: Seq2SeqConfig, vocab: PairVocab, encoder: nn.Module | None = None,
                 decoder: DecoderBlock | None = None) -> None:
        super().__init__()
        self.config, self.vocab = config, vocab
        # Built in this order, so a default model draws its initial weights as it always did.
        self.encoder = encoder if encoder is not None else Encoder(config, len(vocab.src))
        self.decoder = decoder if decoder is not None else Decoder(config, len(vocab.tgt))

    # --- the two calls search.py drives ----------------------------------------------------
    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> DecoderState:
        """src (B, S) ids (or what an injected encoder reads), src_len (B,) -> the decoder's
        start state."""
        src, src_len = src.to(self.device), src_len.to(self.device)
        memory, final = self.encoder(src, src_len)  # (B, S, H), (B, H)
        # From the memory, not the source: an injected encoder's input need not be (B, S).
        mask = torch.arange(memory.shape[1], device=memory.device)[None, :] < src_len[:, None]
        return self.decoder.start(memory, final, mask)

    def decode_step(self, prev: torch.Tensor, state: DecoderState
                    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """prev (N,) -> log-probabilities (N, V) of the next token, state, attention (N, S).

        ``<pad>`` and ``<bos>`` are never targets; they get -inf so no search can emit them.
        The other entries are the model's log-probabilities, exactly as in teacher forcing.
        The search runs on the CPU: `prev` goes to the model's device, the results come back."""
        h, state, weights = self.decoder.step(prev.to(self.device), state)
        logp = self.decoder.logits(h).float().log_softmax(-1).cpu()  # (N, V)
        weights = None if weights is None else weights.cpu()
        return logp.index_fill(1, _NEVER_OUT, float("-inf")), state, weights

    def step(self, token: int, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One decoder step for a single hypothesis: (V,) log-probs of the next token."""
        with self._inference(), without_onednn():  # batch-1 steps: PERF-NOTES trap 2
            logp, state, _ = self.decode_step(torch.tensor([token]), state)
        return logp[0], state

    # --- training --------------------------------------------------------------------------
    def forward(self, batch: Batch, teacher_forcing: float = 1.0) -> torch.Tensor:
        """Logits (B, T, V) for ``batch.tgt_out``; with teacher_forcing < 1 each input is the
        gold token with that probability and the model's previous argmax otherwise."""
        state = self.encode(batch.src, batch.src_len)
        if teacher_forcing == 1 and not self.config.input_feeding:
            return self.decoder.logits(self.decoder.run(batch.tgt_in, state))  # (B, T, V)
        gold = batch.tgt_in.unbind(1)  # T x (B,): unbind once, not x[:, t] (PERF-NOTES trap 3)
        outs: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        for t, prev in enumerate(gold):
            if t > 0 and teacher_forcing < 1:
                own = logits[-1].argmax(-1)
                coin = torch.rand(prev.shape, device=prev.device)
                prev = torch.where(coin < teacher_forcing, prev, own)
            h, state, _ = self.decoder.step(prev, state)
            if teacher_forcing < 1:
                logits.append(self.decoder.logits(h))
            outs.append(h)
        if teacher_forcing < 1:
            return torch.stack(logits, 1)
        return self.decoder.logits(torch.stack(outs, 1))  # (B, T, V): one GEMM for all steps

    def training_loss(self, batch: Batch, state: Any) -> tuple[torch.Tensor, None]:
        logits = self(batch, self.config.teacher_forcing)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.tgt_out.flatten(),
                               ignore_index=PAD_ID, label_smoothing=self.config.label_smoothing)
        return loss, None

    def fit(self, X: Pairs, lengths: list[int] | None = None, *, valid: Pairs | None = None,
            run: Run | None = None, bucket: int = 100) -> Self:
        """Train on pairs; validation tracks bits/token, token accuracy and greedy exact match."""
        # Imported here: the metrics load sacrebleu, which decoding and scoring never need.
        from seqlab.seq2seq.metrics import validation_metrics
        from seqlab.trainer import Trainer

        if lengths is not None:
            raise SeqlabError("Seq2Seq.fit takes Pairs, which carry their own lengths")
        run = run or Run()
        batches = PairBatcher(X, run.train.batch_size, run.train.seed, bucket)
        score = None if valid is None or len(valid) == 0 else (
            lambda: validation_metrics(self, valid))
        Trainer(run).fit(self, batches, score)
        return self

    # --- scoring ---------------------------------------------------------------------------
    def score_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p of each target token (B, T) and whether argmax hit it (B, T);
        both are 0/False on padding."""
        from seqlab.distributed import to_device

        with self._inference():
            logp = self(to_device(batch, self.device)).float().log_softmax(-1).cpu()  # (B, T, V)
        mask = batch.tgt_out != PAD_ID
        lp = logp.gather(2, batch.tgt_out[..., None])[..., 0] * mask
        return lp, (logp.argmax(-1) == batch.tgt_out) & mask

    def log_prob(self, X: Pairs, lengths: list[int] | None = None, batch_size: int = 64
                 ) -> np.ndarray:
        """log p(y_t | y_<t, x) in nats for every target token of every pair, <eos> included,
        concatenated in pair order."""
        per_pair: list[np.ndarray] = [np.zeros(0)] * len(X)
        for idx in length_sorted_batches(X.tgt_lengths, batch_size):
            batch = X.batch(idx)
            lp, _ = self.score_batch(batch)
            for row, i in enumerate(idx):
                per_pair[i] = lp[row, : len(X.target(i)) + 1].double().numpy()
        return np.concatenate(per_pair) if per_pair else np.zeros(0)

    # --- decoding --------------------------------------------------------------------------
    def translate(self, sources: Sequence[np.ndarray], decode: DecodeConfig | None = None
                  ) -> list[list[Hypothesis]]:
        """Hypotheses for each source (id arrays), best first; see `seqlab.seq2seq.search`."""
        for i, s in enumerate(sources):
            if len(s) > self.config.max_src_len:
                raise SeqlabError(f"source {i + 1} has {len(s)} tokens, more than the maximum "
                                  f"model.max_src_len = {self.config.max_src_len}")
        with self._inference(), without_onednn():  # one-step RNN calls: PERF-NOTES trap 2
            return translate(self, sources, decode or self.config.decode)

    def conditioned(self, source: np.ndarray) -> Conditioned:
        return Conditioned(self, source)

    def generate(self, n: int, *, prompt: np.ndarray | None = None, seed: int | None = None,
                 **sampling: Any) -> np.ndarray:
        """Sample up to `n` target ids (stopping at <eos>) for the source ids `prompt`."""
        if prompt is None or len(prompt) == 0:
            raise SeqlabError("Seq2Seq.generate needs the source ids as prompt, got none")
        ids = self.conditioned(np.asarray(prompt)).generate(n, seed=seed, **sampling)
        ends = np.flatnonzero(ids == EOS_ID)
        return ids[: ends[0]] if len(ends) else ids


class Conditioned(TokenModel):
    """The decoder of a trained model conditioned on one source: a language model over the
    target vocabulary (``initial_state`` encodes the source, ``prime`` steps over ``<bos>``),
    so `seqlab.sampling` draws translations like any other continuation."""

    family: ClassVar[str] = "seq2seq"

    def __init__(self, model: Seq2Seq, source: np.ndarray) -> None:
        self.model, self.source = model, torch.as_tensor(np.asarray(source), dtype=torch.long)
        self.vocab, self.config, self.name = model.vocab.tgt, model.config, model.name

    def initial_state(self) -> DecoderState:
        with self.model._inference():
            return self.model.encode(self.source[None], torch.tensor([len(self.source)]))

    def step(self, token: int, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        return self.model.step(token, state)

    def prime(self, prompt: np.ndarray | list[int]) -> tuple[torch.Tensor, DecoderState]:
        logits, state = self.step(BOS_ID, self.initial_state())
        for tok in prompt:
            logits, state = self.step(int(tok), state)
        return logits, state

    def log_prob(self, X: np.ndarray, lengths: list[int] | None = None) -> np.ndarray:
        """log p(x_t | x_<t, source) for target ids; each sequence starts after <bos>. <eos> is
        scored only where it appears in `X`."""
        segs = split_lengths(np.asarray(X), lengths)
        src = self.source.numpy()
        pairs = Pairs(np.concatenate([src] * len(segs)).astype(np.int32),
                      np.arange(len(segs) + 1) * len(src),
                      np.concatenate(segs).astype(np.int32), np.cumsum([0, *map(len, segs)]))
        lp, bounds = self.model.log_prob(pairs), np.cumsum([0, *(len(s) + 1 for s in segs)])
        return np.concatenate([lp[a : a + len(s)] for a, s in zip(bounds, segs, strict=False)])

    def fit(self, *args: Any, **kwargs: Any) -> Self:
        raise SeqlabError("a conditioned decoder is trained through its Seq2Seq model")

    def save(self, path: str | Path) -> None:
        raise SeqlabError("save the Seq2Seq model; a conditioned decoder is a view of it")
