"""Tokenisers and vocabularies at char, byte and word level."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.data.vocab import EOS, UNK, Vocab, iter_units, iter_units_from_text
from seqlab.errors import SeqlabError


def build(text: str, level: str, **kw: object) -> Vocab:
    return Vocab.build(iter_units_from_text(text, level), level, **kw)


def test_char_roundtrip_and_specials() -> None:
    v = build("héllo wörld\n", "char")
    assert v.tokens[:2] == [UNK, "\n"]
    assert v.unk_id == 0 and v.eos_id == 1
    assert v.decode(v.encode("hé wörld\n")) == "hé wörld\n"
    ids = v.encode("hollow?")  # "?" was never seen
    assert ids[-1] == v.unk_id and np.count_nonzero(ids == v.unk_id) == 1
    assert v.dtype == np.uint8


def test_char_vocab_is_deterministic_and_sorted() -> None:
    assert build("cba", "char").tokens == build("abc", "char").tokens == [UNK, "\n", "a", "b", "c"]


def test_byte_level_takes_any_bytes(tmp_path) -> None:
    p = tmp_path / "bin.dat"
    data = bytes(range(256)) + b"\xff\xfe"
    p.write_bytes(data)
    v = Vocab.build(iter_units(p, "byte"), "byte")
    assert len(v) == 256 and v.unk_id is None and v.eos_id == 10
    ids = np.concatenate([v.encode_units(c) for c in iter_units(p, "byte")])
    assert bytes(ids.astype(np.uint8)) == data
    assert v.decode(v.encode("naïve")) == "naïve"  # multi-byte characters reassemble


def test_word_level_min_count_max_size_and_eos() -> None:
    text = "a a a b b c\nb a\n"
    v = build(text, "word", min_count=2)
    assert v.tokens == [UNK, EOS, "a", "b"]  # most frequent first; c dropped (count 1)
    ids = v.encode("a c\n")
    assert list(ids) == [2, 0, 1]
    assert v.decode(ids) == "a <unk>\n"
    assert build(text, "word", max_size=3).tokens == [UNK, EOS, "a"]
    # a literal <unk> in the text is the unknown token itself (as in the PTB files)
    assert build("<unk> x\n", "word").encode("<unk>\n")[0] == 0


def test_json_roundtrip(tmp_path) -> None:
    v = build("some text\n", "char")
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").tokens == v.tokens


def test_dtype_grows_with_vocabulary() -> None:
    assert Vocab("word", [UNK, EOS, *map(str, range(300))]).dtype == np.uint16
    assert Vocab("word", [UNK, EOS, *map(str, range(70_000))]).dtype == np.uint32


def test_invalid_utf8_at_char_level_suggests_byte_level(tmp_path) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello \xff\xfe world")
    with pytest.raises(SeqlabError, match=r"offset 6.*data.level=byte"):
        list(iter_units(p, "char"))


def test_chunked_reading_keeps_multibyte_characters(tmp_path, monkeypatch) -> None:
    import seqlab.data.vocab as vocab_mod

    monkeypatch.setattr(vocab_mod, "CHUNK_BYTES", 3)  # split inside 2- and 3-byte characters
    p = tmp_path / "t.txt"
    text = "ééé €€ ok\n" * 3
    p.write_text(text, encoding="utf-8")
    cps = np.concatenate(list(iter_units(p, "char")))
    assert "".join(map(chr, cps)) == text


def test_strict_encode_names_unknown_symbols() -> None:
    v = build("abc", "char")
    with pytest.raises(SeqlabError, match=r"'z'"):
        v.encode("abz", strict=True)
