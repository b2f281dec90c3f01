"""Evaluation of a seq2seq model on pairs.

* ``exact_match``: the share of sources whose best output equals the reference token for
  token (sequence accuracy). A reference holding a token outside the target vocabulary can
  never match, since the model cannot write that token.
* ``token_accuracy``: the share of target tokens (``<eos>`` included) that the model ranks
  first when fed the gold prefix (teacher forcing), as Joey NMT reports it.
* ``bits_per_token``: teacher-forced cross-entropy of the target tokens, ``<eos>`` included.
* ``bleu`` and ``chrf``: corpus scores from sacrebleu (default settings: BLEU with its 13a
  tokeniser, chrF with character 6-grams) on the detokenised outputs.

The metrics score any `PairModel`, that is anything that scores a batch teacher-forced and
translates; they never import the model family (`seqlab.seq2seq.model.Seq2Seq` is one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import sacrebleu
import torch

from seqlab.scoring import ScoreRow
from seqlab.seq2seq.data import (
    UNK_ID,
    Batch,
    Pairs,
    PairVocab,
    decode,
    detokenize,
    length_sorted_batches,
)
from seqlab.seq2seq.search import DecodeConfig, Hypothesis


class PairModel(Protocol):
    """What the metrics need of a sequence-to-sequence model."""

    name: str
    config: Any  # its ``decode`` (a `DecodeConfig`) sets how outputs are produced
    vocab: PairVocab

    def score_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p of each target token (B, T) and whether argmax hit it (B, T)."""
        ...

    def translate(self, sources: Sequence[np.ndarray], decode: DecodeConfig | None = None
                  ) -> list[list[Hypothesis]]:
        """Hypotheses for each source, best first."""
        ...


def exact_match(hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]) -> float:
    """Share of hypotheses equal to their reference (ids; a <unk> reference never matches)."""
    if not refs:
        return float("nan")
    hits = sum(list(h) == list(r) and UNK_ID not in r for h, r in zip(hyps, refs, strict=True))
    return hits / len(refs)


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score) if refs else float("nan")


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    return float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score) if refs else float("nan")


def teacher_forced(model: PairModel, pairs: Pairs, batch_size: int = 64
                   ) -> tuple[float, int, int]:
    """(total nats, tokens ranked first, tokens) over every target token, <eos> included."""
    nats, correct, tokens = 0.0, 0, 0
    for idx in length_sorted_batches(pairs.tgt_lengths, batch_size):
        batch = pairs.batch(idx)
        lp, hit = model.score_batch(batch)
        nats -= float(lp.double().sum())
        correct += int((hit & (batch.tgt_out != UNK_ID)).sum())
        tokens += batch.num_tokens
    return nats, correct, tokens


def describe_decoding(cfg: DecodeConfig) -> str:
    if cfg.strategy == "beam":
        return f"beam {cfg.beam_size}, alpha {cfg.length_penalty}"
    return cfg.strategy


@dataclass
class Seq2SeqEvaluation(ScoreRow):
    model: str  # the model's name
    split: str  # the split or file scored
    pairs: int  # number of pairs
    tokens: int  # target tokens scored, <eos> included
    exact_match: float  # share of outputs equal to the reference
    token_accuracy: float  # teacher-forced share of target tokens ranked first
    bleu: float  # sacrebleu corpus BLEU, 0-100
    chrf: float  # sacrebleu corpus chrF, 0-100
    bits_per_token: float  # teacher-forced cross-entropy per target token
    unk_tokens: int  # source and target tokens outside the vocabularies
    decoding: str  # how outputs were produced
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: exact match {self.exact_match:.2%}, token "
                f"accuracy {self.token_accuracy:.2%}, BLEU {self.bleu:.2f}, chrF {self.chrf:.2f}, "
                f"{self.bits_per_token:.4f} bits/token, {self.pairs:,} pairs ({self.decoding})")


def outputs(model: PairModel, pairs: Pairs, decode_cfg: DecodeConfig) -> list[list[int]]:
    """The best output ids for every source of `pairs`."""
    hyps = model.translate([pairs.source(i) for i in range(len(pairs))], decode_cfg)
    return [h[0].tokens for h in hyps]


def evaluate(model: PairModel, pairs: Pairs, *, split: str = "test", name: str | None = None,
             decode_cfg: DecodeConfig | None = None) -> Seq2SeqEvaluation:
    """Teacher-forced scores plus decoded-output scores of `model` on `pairs`."""
    t0 = time.perf_counter()
    cfg = decode_cfg or model.config.decode
    nats, correct, tokens = teacher_forced(model, pairs, cfg.batch_size)
    refs = [pairs.target(i).tolist() for i in range(len(pairs))]
    hyps = outputs(model, pairs, cfg)
    level, vocab = model.vocab.levels[1], model.vocab.tgt
    hyp_text = [detokenize(decode(h, vocab), level) for h in hyps]
    ref_text = [detokenize(decode(r, vocab), level) for r in refs]
    unk = int(np.count_nonzero(pairs.src == UNK_ID) + np.count_nonzero(pairs.tgt == UNK_ID))
    return Seq2SeqEvaluation(
        model=name or model.name or "seq2seq", split=split, pairs=len(pairs), tokens=tokens,
        exact_match=exact_match(hyps, refs),
        token_accuracy=correct / tokens if tokens else math.nan,
        bleu=bleu(hyp_text, ref_text), chrf=chrf(hyp_text, ref_text),
        bits_per_token=nats / (tokens * math.log(2)) if tokens else math.nan, unk_tokens=unk,
        decoding=describe_decoding(cfg), seconds=time.perf_counter() - t0)


def validation_metrics(model: PairModel, pairs: Pairs) -> dict[str, float]:
    """What the Trainer logs at each evaluation: bits/token, token accuracy, greedy exact match."""
    cfg = DecodeConfig(strategy="greedy", max_len_a=model.config.decode.max_len_a,
                       max_len_b=model.config.decode.max_len_b,
                       batch_size=max(64, model.config.decode.batch_size))
    nats, correct, tokens = teacher_forced(model, pairs, cfg.batch_size)
    refs = [pairs.target(i).tolist() for i in range(len(pairs))]
    return {"bits_per_token": nats / (tokens * math.log(2)), "token_accuracy": correct / tokens,
            "exact_match": exact_match(outputs(model, pairs, cfg), refs)}
