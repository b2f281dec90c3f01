"""Corpus preparation: memmapped ids, splits, vocabulary from training text only."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.data.corpus import BUILTIN, DataConfig, builtin_text, prepare
from seqlab.errors import SeqlabError


def test_fraction_split_is_contiguous_and_memmapped(tmp_path) -> None:
    p = tmp_path / "t.txt"
    text = "".join(chr(ord("a") + i % 26) for i in range(1000)) + "XYZ"
    p.write_text(text, encoding="utf-8")
    c = prepare(DataConfig(path=str(p), valid_fraction=0.1, test_fraction=0.1), tmp_path / "c")
    assert (len(c.train), len(c.valid), len(c.test)) == (803, 100, 100)  # int(1003 * 0.1) = 100
    assert isinstance(c.train, np.memmap)
    whole = c.vocab.decode(np.concatenate([c.train, c.valid, c.test]))
    assert whole.endswith("\ufffd" * 3)
    # X, Y, Z appear only in the test part, so they are not in the vocabulary
    assert "X" not in c.vocab.index and np.count_nonzero(c.test == c.vocab.unk_id) == 3


def test_separate_files(tmp_path) -> None:
    for name, text in [("tr", "abcabc" * 10), ("va", "cab"), ("te", "bca!")]:
        (tmp_path / f"{name}.txt").write_text(text)
    cfg = DataConfig(path=str(tmp_path / "tr.txt"), valid=str(tmp_path / "va.txt"),
                     test=str(tmp_path / "te.txt"))
    c = prepare(cfg, tmp_path / "c")
    assert len(c.train) == 60 and c.vocab.decode(c.valid) == "cab"
    assert c.vocab.decode(c.test) == "bca\ufffd"


def test_cache_is_reused_and_refreshed(tmp_path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("hello world " * 20)
    cfg = DataConfig(path=str(p))
    a = prepare(cfg, tmp_path / "c")
    mtime = (tmp_path / "c" / "main.ids").stat().st_mtime_ns
    prepare(cfg, tmp_path / "c", vocab=a.vocab)
    assert (tmp_path / "c" / "main.ids").stat().st_mtime_ns == mtime
    p.write_text("other words " * 20)
    b = prepare(cfg, tmp_path / "c", vocab=a.vocab)
    assert a.vocab.decode(b.train).startswith("o\ufffdher")  # re-encoded: 't' is unknown


def test_builtin_corpus_is_python_docs(tmp_path) -> None:
    text = builtin_text()
    assert len(text) > 300_000 and "lambda" in text
    c = prepare(DataConfig(path=BUILTIN), tmp_path / "c")
    assert len(c.train) + len(c.valid) + len(c.test) == len(text)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file not found"), (b"", "empty file"), (b"ab\xffcd", "data.level=byte")],
)
def test_bad_files(tmp_path, content: bytes | None, message: str) -> None:
    p = tmp_path / "x.txt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(SeqlabError, match=message):
        prepare(DataConfig(path=str(p)), tmp_path / "c")


def test_bad_fractions() -> None:
    with pytest.raises(SeqlabError, match="valid_fraction"):
        DataConfig(valid_fraction=0.6, test_fraction=0.5)
