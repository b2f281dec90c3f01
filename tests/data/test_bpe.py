"""The bpe level: a byte-level BPE learned on the training split only, lossless on any text,
stored as the tokenizer's own JSON in the run folder and reloaded from it; bits per character
beside bits per token at every level."""

from __future__ import annotations

import functools
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.cli import main
from seqlab.data import vocab as vocab_module
from seqlab.data.corpus import DataConfig, prepare
from seqlab.data.vocab import Vocab, iter_units, iter_units_from_text
from seqlab.errors import SeqlabError
from seqlab.scoring import evaluate

TRAIN_TEXT = ("The quick brown fox jumps over the lazy dog.\n"
              "Größe, café, naïve; 東京 and 😀 emoji.\n"
              "\tindented\r\n\n") * 40


@functools.cache
def bpe() -> Vocab:
    """A small bpe vocabulary (built once: Hypothesis examples share it)."""
    return Vocab.build(iter_units_from_text(TRAIN_TEXT, "bpe"), "bpe", max_size=320)


# Any text, with the hard cases drawn often: emoji (astral, with ZWJ and skin-tone modifiers),
# combining marks, every kind of line break, and code points unseen in training.
SPECIALS = ["😀", "👩\u200d👩\u200d👧", "👍🏽", "e\u0301", "\u0301", "\n", "\r\n", "\r", "\u2028",
            "\x00", "\t", " ", "東京", "\ufeff", "\U0010fffd"]
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
                          st.sampled_from(SPECIALS)), max_size=12).map("".join)


@settings(max_examples=100, deadline=None)
@given(TEXT)
def test_round_trip_is_lossless_on_any_text(text: str) -> None:
    v = bpe()
    ids = v.encode(text)
    assert v.decode(ids) == text
    assert v.tokenizer.decode([int(i) for i in ids]) == text  # the library's own decoder agrees
    d = v.decoder()  # one id at a time, as samples stream
    assert "".join(d.feed(int(i)) for i in ids) + d.flush() == text
    assert v.count_chars(ids) == len(text)
    assert v.unk_id is None


@settings(max_examples=30, deadline=None)
@given(TEXT, st.integers(1, 9), st.integers(1, 12))
def test_file_encoding_does_not_depend_on_chunks(text: str, chunk: int, long_line: int) -> None:
    """A file read in `chunk`-byte blocks encodes to the ids of the whole string, also when
    lines longer than `long_line` characters are cut in pieces."""
    v = bpe()
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(vocab_module, "CHUNK_BYTES", chunk)
        mp.setattr(vocab_module, "LONG_LINE", long_line)
        path = Path(tmp, "t.txt")
        path.write_bytes(text.encode("utf-8"))
        streamed = [v.encode_units(c) for c in iter_units(path, "bpe")]
        whole = v.encode(text)
    assert np.array_equal(np.concatenate([np.zeros(0, v.dtype), *streamed]), whole)


def test_vocabulary_json_is_the_tokenizers_own() -> None:
    from tokenizers import Tokenizer

    v = bpe()
    obj = json.loads(json.dumps(v.to_json()))
    assert set(obj) == {"level", "tokenizer"} and obj["level"] == "bpe"
    tok = Tokenizer.from_str(json.dumps(obj["tokenizer"]))
    assert tok.get_vocab() == v.index
    assert Vocab.from_json(obj) == v and v.tokens[v.eos_id] == "Ċ"  # byte 10's token


def test_tokenizer_learns_from_the_training_split_only(tmp_path: Path) -> None:
    """A word repeated only in the held-out tail is never merged; the split is cut at the same
    characters as at char level, so both levels score the same valid text."""
    path = tmp_path / "corpus.txt"
    # "zyxw" fills the last 300 of the 4620 characters: all of it in the held-out 10%
    path.write_text("abc abd abe\n" * 360 + "zyxw zyxw zyxw\n" * 20, encoding="utf-8")
    cfg = DataConfig(path=str(path), level="bpe", bpe_vocab=300, valid_fraction=0.05,
                     test_fraction=0.05)
    corpus = prepare(cfg, tmp_path / "bpe")
    v = corpus.vocab
    assert "Ġabd" in v.index or "abd" in v.index  # a training word is merged...
    assert not [t for t in v.tokens if "zy" in t or "yx" in t]  # ...a held-out one never
    chars = prepare(DataConfig(path=str(path), level="char"), tmp_path / "char")
    text, start = path.read_text(encoding="utf-8"), 0
    for split in ("train", "valid", "test"):
        n = len(chars.split(split))  # the char level's split, in characters
        assert v.decode(corpus.split(split)) == text[start : start + n]
        assert v.count_chars(corpus.split(split)) == n
        start += n
    # Cached ids and manifest: a second prepare reads the same splits without encoding again.
    again = prepare(cfg, tmp_path / "bpe", vocab=Vocab.from_json(v.to_json()))
    assert all(np.array_equal(again.split(s), corpus.split(s)) for s in ("train", "valid"))


def test_prepared_splits_do_not_depend_on_chunks(tmp_path: Path) -> None:
    """Read in 64-byte blocks, the corpus (splits cut inside chunks and lines) encodes to the
    same ids as read whole: the streamed path of a large corpus."""
    rng = np.random.default_rng(1)
    words = ["über", "the", "cat", "東京", "😀", "sat"]
    path = tmp_path / "c.txt"
    path.write_text("".join(" ".join(rng.choice(words, size=rng.integers(1, 30))) + "\n"
                            for _ in range(200)), encoding="utf-8")
    cfg = DataConfig(path=str(path), level="bpe", bpe_vocab=280)
    whole = prepare(cfg, tmp_path / "whole")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vocab_module, "CHUNK_BYTES", 64)
        chunked = prepare(cfg, tmp_path / "chunked")
    assert chunked.vocab == whole.vocab
    for split in ("train", "valid", "test"):
        assert np.array_equal(chunked.split(split), whole.split(split))


class Uniform:
    """A language model that gives every token probability 1/V: a hand-checkable score."""

    name = "uniform"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def log_prob(self, ids: np.ndarray) -> np.ndarray:
        return np.full(len(ids), -math.log(len(self.vocab)))


@pytest.mark.parametrize("level", ["char", "byte", "word", "bpe"])
def test_bits_per_char_is_total_bits_over_characters(level: str) -> None:
    text = "the cat  sat\n\non the mat, naïvely 😀\n"  # two spaces: word level keeps one
    v = (bpe() if level == "bpe" else
         Vocab.build(iter_units_from_text(text, level), level))
    ids = v.encode(text)
    e = evaluate(Uniform(v), ids)
    total_bits = len(ids) * math.log2(len(v))
    chars = len(text) - (level == "word")  # word level counts the text re-joined by one space
    assert e.chars == chars == v.count_chars(ids)
    assert e.bits_per_char == pytest.approx(total_bits / chars)
    assert e.bits_per_token == pytest.approx(math.log2(len(v)))
    if level == "char":
        assert e.bits_per_char == pytest.approx(e.bits_per_token)


def test_word_level_characters_by_hand() -> None:
    v = Vocab.build(iter_units_from_text("a bb\n", "word"), "word")
    # "a bb\n\nzz\n": a+space, bb+line break, the empty line's <eos>, <unk> (5) + line break
    assert v.count_chars(v.encode("a bb\n\nzz\n")) == 2 + 3 + 1 + 6
    pieces = v.encode("a bb\n\na\n")
    assert v.count_chars(pieces[:3]) + v.count_chars(pieces[3:]) == len("a bb\n\na\n")


def test_bad_bpe_settings_are_one_line_errors() -> None:
    with pytest.raises(SeqlabError, match="at least 256"):
        DataConfig(level="bpe", bpe_vocab=100)
    with pytest.raises(SeqlabError, match=r"data\.bpe_vocab"):
        DataConfig(level="bpe", max_vocab=500)


def test_bpe_run_folder_reloads_and_scores_identically(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "ζeta", "😀"]
    text = "".join(" ".join(rng.choice(words, size=8)) + "\n" for _ in range(300))
    data = tmp_path / "text.txt"
    data.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--model", "lstm", "--data", str(data), "--level", "bpe", "--out",
                 str(out), "--max-steps", "4", "data.bpe_vocab=300", "model.hidden=16",
                 "model.emb_dim=8", "train.batch_size=2", "train.seq_len=16",
                 "train.eval_interval=2", "train.progress=false"]) == 0
    stored = json.loads((out / "vocab.json").read_text())
    assert stored["level"] == "bpe" and stored["tokenizer"]["model"]["type"] == "BPE"
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in final if r.get("kind") == "final" and r["split"] == "test"]
    capsys.readouterr()

    assert main(["eval", str(out), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["nats"] == pytest.approx(final[-1]["nats"], rel=1e-6)
    assert scored["tokens"] == final[-1]["tokens"] and scored["chars"] == final[-1]["chars"]
    assert scored["bits_per_char"] == pytest.approx(final[-1]["bits_per_char"], rel=1e-6)
    assert scored["bits_per_char"] < scored["bits_per_token"]  # a bpe token holds > 1 char

    assert main(["sample", str(out), "--prompt", "alpha ", "--length", "12", "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("alpha ")
