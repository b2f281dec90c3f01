"""Small deterministic models and data for the seq2seq tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seqlab.seq2seq.data import Pairs, PairVocab, build_vocab
from seqlab.seq2seq.model import Seq2Seq, Seq2SeqConfig

DIGITS = [str(i) for i in range(8)]


def reversal_pairs(n: int, max_len: int = 6, symbols: int = 8, seed: int = 0
                   ) -> list[tuple[list[str], list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = [str(x) for x in rng.integers(0, symbols, rng.integers(1, max_len + 1))]
        out.append((s, s[::-1]))
    return out


def digit_vocab() -> PairVocab:
    v = build_vocab([DIGITS], "word")
    return PairVocab(v, v)


def tiny_model(seed: int = 0, **overrides: Any) -> Seq2Seq:
    """An untrained model with random weights (dropout off, so train and eval agree)."""
    cfg = {"hidden": 16, "emb_dim": 8, "enc_layers": 2, "dec_layers": 2, "residual": True,
           "dropout": 0.0, **overrides}
    torch.manual_seed(seed)
    model = Seq2Seq(Seq2SeqConfig(**cfg), digit_vocab())
    return model.eval()


def encoded(pairs: list[tuple[list[str], list[str]]]) -> Pairs:
    return Pairs.encode(pairs, digit_vocab())


def write_tsv(path: Path, pairs: list[tuple[list[str], list[str]]]) -> Path:
    path.write_text("".join(f"{' '.join(s)}\t{' '.join(t)}\n" for s, t in pairs),
                    encoding="utf-8")
    return path


# every attention kind with both gated cells, plus the Elman RNN once
VARIANTS = [{"attention": a, "cell": c} for a in ("none", "bahdanau", "dot", "general")
            for c in ("lstm", "gru")] + [{"attention": "general", "cell": "rnn"}]
# without input feeding, teacher forcing runs the whole decoder stack in one fused call
VARIANTS += [{"attention": a, "cell": "lstm", "input_feeding": False}
             for a in ("none", "bahdanau")]
VARIANT_IDS = [f"{v['attention']}-{v['cell']}" + ("-nofeed" if len(v) > 2 else "")
               for v in VARIANTS]


@pytest.fixture
def reversal_tsv(tmp_path: Path) -> Path:
    return write_tsv(tmp_path / "pairs.tsv", reversal_pairs(400, max_len=5, symbols=6, seed=1))
