"""The task module on real and larger data: SCAN files from shared/data, and a slow training run
where attention must beat the plain encoder-decoder on reversal."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import SHARED_DATA
from tests.seq2seq.conftest import reversal_pairs, write_tsv

from seqlab import experiment
from seqlab.experiment import resolve
from seqlab.seq2seq.data import DataConfig, prepare

SCAN = SHARED_DATA / "scan"


@pytest.mark.data
def test_scan_splits_read_as_documented() -> None:
    simple = prepare(DataConfig(path=str(SCAN / "simple_split" / "tasks_train_simple.txt"),
                                test=str(SCAN / "simple_split" / "tasks_test_simple.txt"),
                                valid_fraction=0.0), (256, 256))
    assert (len(simple.train), len(simple.test)) == (16_728, 4_182)  # PROVENANCE.md counts
    assert sorted(simple.vocab.src.tokens[4:]) == sorted(
        ["jump", "walk", "run", "look", "turn", "left", "right", "around", "opposite", "and",
         "after", "twice", "thrice"])
    assert sorted(simple.vocab.tgt.tokens[4:]) == sorted(
        ["I_JUMP", "I_WALK", "I_RUN", "I_LOOK", "I_TURN_LEFT", "I_TURN_RIGHT"])
    assert simple.test.tgt_lengths.max() == 48
    length = prepare(DataConfig(path=str(SCAN / "length_split" / "tasks_train_length.txt"),
                                test=str(SCAN / "length_split" / "tasks_test_length.txt"),
                                valid_fraction=0.0), (256, 256))
    assert length.train.tgt_lengths.max() == 22 and length.test.tgt_lengths.min() > 22


@pytest.mark.slow
def test_attention_beats_no_attention_on_reversal(tmp_path: Path) -> None:
    """Target: >= 95% exact match with attention on reversal of 1-15 symbols out of 20 within
    1,500 steps, and clearly better than the same model without attention."""
    train = write_tsv(tmp_path / "train.tsv", reversal_pairs(20_000, 15, 20, seed=1))
    test = write_tsv(tmp_path / "test.tsv", reversal_pairs(300, 15, 20, seed=2))
    scores = {}
    for attention in ("general", "none"):
        exp = resolve({
            "model": {"name": "seq2seq", "attention": attention, "hidden": 96, "emb_dim": 32,
                      "input_feeding": attention != "none",
                      "decode": {"strategy": "greedy"}},
            "data": {"path": str(train), "test": str(test), "valid_fraction": 0.02},
            "train": {"max_steps": 1500, "batch_size": 64, "lr": 3e-3, "eval_interval": 500,
                      "progress": False, "threads": 1}})
        _, _, result = experiment.train(exp, tmp_path / attention)
        scores[attention] = next(s.exact_match for s in result if s.split == "test")
    assert scores["general"] >= 0.95, scores
    assert scores["general"] > scores["none"] + 0.2, scores
