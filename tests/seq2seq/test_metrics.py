"""Metrics: exact match (with the <unk> rule), sacrebleu's BLEU/chrF, the evaluation record."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from tests.seq2seq.conftest import encoded, reversal_pairs, tiny_model

from seqlab.seq2seq.data import UNK_ID
from seqlab.seq2seq.metrics import bleu, chrf, evaluate, exact_match, teacher_forced
from seqlab.seq2seq.search import DecodeConfig


def test_exact_match_counts_whole_sequences() -> None:
    refs = [[4, 5], [6], [4, UNK_ID], [7, 7]]
    hyps = [[4, 5], [6, 6], [4, UNK_ID], [7, 7]]
    # the third matches id for id, but its reference holds an unknown word: never a match
    assert exact_match(hyps, refs) == 0.5
    assert math.isnan(exact_match([], []))


def test_bleu_and_chrf_are_sacrebleus() -> None:
    hyps = ["the cat sat on the mat", "a dog barked loudly today"]
    refs = ["the cat sat on a mat", "the dog barked loudly today"]
    assert bleu(hyps, refs) == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert chrf(hyps, refs) == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert bleu(refs, refs) == pytest.approx(100.0) and chrf(refs, refs) == pytest.approx(100.0)
    assert 0 < bleu(hyps, refs) < 100


def test_evaluation_record_is_consistent() -> None:
    model = tiny_model(seed=2)
    pairs = encoded(reversal_pairs(12, max_len=5, seed=4))
    result = evaluate(model, pairs, split="toy", decode_cfg=DecodeConfig(beam_size=2))
    nats, correct, tokens = teacher_forced(model, pairs)
    assert result.tokens == tokens == pairs.tgt_lengths.sum() + len(pairs)
    assert result.bits_per_token == pytest.approx(nats / (tokens * math.log(2)))
    assert result.token_accuracy == correct / tokens
    assert nats == pytest.approx(-model.log_prob(pairs).sum(), rel=1e-6)
    d = result.as_dict()
    assert {"exact_match", "token_accuracy", "bleu", "chrf"} <= set(d) and d["pairs"] == 12
    assert d["decoding"] == "beam 2, alpha 0.6" and "exact match" in result.summary()
