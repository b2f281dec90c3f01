"""Three tiny trained runs (an LSTM language model, a seq2seq reverser and a BiLSTM-CRF tagger),
made once per session with a few training steps each: enough for every endpoint to answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import seqlab

TRAIN = {"max_steps": 20, "eval_interval": 20, "progress": False, "batch_size": 8,
         "lr": 1e-2}
LM_TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 40


def reversal_tsv(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        s = [str(x) for x in rng.integers(0, 6, rng.integers(1, 6))]
        lines.append(f"{' '.join(s)}\t{' '.join(reversed(s))}\n")
    return "".join(lines)


def conll(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(n):
        rows = []
        for _ in range(int(rng.integers(2, 6))):
            w = str(rng.choice(["xx", "yy", "ab", "cd"]))
            rows.append(f"{w} {'B-X' if w in ('xx', 'yy') else 'O'}")
        sentences.append("\n".join(rows))
    return "\n\n".join(sentences) + "\n"


@pytest.fixture(scope="session")
def serve_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    (root / "lm.txt").write_text(LM_TEXT, encoding="utf-8")
    (root / "pairs.tsv").write_text(reversal_tsv(200), encoding="utf-8")
    (root / "tags.txt").write_text(conll(120), encoding="utf-8")
    seqlab.train("lstm", root / "lm.txt", out=root / "lm", train=TRAIN,
                 model={"hidden": 24, "emb_dim": 16, "layers": 2, "dropout": 0.0})
    seqlab.train("seq2seq", root / "pairs.tsv", out=root / "rev", train=TRAIN,
                 model={"hidden": 16, "emb_dim": 8, "enc_layers": 1, "dec_layers": 1})
    seqlab.train("bilstm-crf", root / "tags.txt", out=root / "tagger", train=TRAIN,
                 model={"word_dim": 8, "char_dim": 4, "char_hidden": 4,
                        "recurrent": {"hidden": 8, "layers": 1, "bidirectional": True}})
    return {"lm": root / "lm", "rev": root / "rev", "tagger": root / "tagger"}
