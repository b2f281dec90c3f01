"""Corpora from many files and corpora larger than memory: directories and glob patterns as one
corpus of documents, the cache over every file, and memory that does not grow with the file."""

from __future__ import annotations

import itertools
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import seqlab.data.corpus as corpus_mod
import seqlab.data.vocab as vocab_mod
from seqlab.data.corpus import Corpus, DataConfig, builtin_text, prepare
from seqlab.data.vocab import EOS, UNK, Vocab, iter_units, iter_units_from_text
from seqlab.errors import SeqlabError

DOCS = {  # file -> text; documents are read in path order, component by component
    "b.txt": "beta two\nline three",  # no final newline: one is added
    "a.txt": "alpha one\n",
    "empty.txt": "",  # adds nothing
    "sub.txt": "delta\r\n",
    "sub/c.txt": "gamma",
    ".hidden.txt": "never read",
    ".git/config": "never read",
}
IN_ORDER = ["a.txt", "b.txt", "empty.txt", "sub/c.txt", "sub.txt"]


def make_docs(root: Path) -> Path:
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text.encode("utf-8"))
    return root


def joined(names: list[str]) -> str:
    """The documents as one text, each ending with an end-of-line."""
    return "".join(t if not t or t.endswith("\n") else t + "\n" for t in map(DOCS.get, names))


def assert_same_corpus(a: Corpus, b: Corpus) -> None:
    assert a.vocab.tokens == b.vocab.tokens
    for split in ("train", "valid", "test"):
        x, y = a.split(split), b.split(split)
        assert x.dtype == y.dtype and np.array_equal(x, y), split


@pytest.mark.parametrize("level", ["char", "byte", "word"])
@pytest.mark.parametrize(("pattern", "names"), [
    ("docs", IN_ORDER),  # a directory: every file below it, hidden ones skipped
    ("docs/*.txt", ["a.txt", "b.txt", "empty.txt", "sub.txt"]),
    ("docs/**/*.txt", IN_ORDER),
    ("docs/[ab].txt", ["a.txt", "b.txt"]),
])
def test_directory_and_glob_equal_the_joined_file(tmp_path, monkeypatch, level: str,
                                                   pattern: str, names: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # patterns are relative to the working directory
    make_docs(tmp_path / "docs")
    (tmp_path / "one.txt").write_bytes(joined(names).encode("utf-8"))
    kw = {"level": level, "valid_fraction": 0.2, "test_fraction": 0.1}
    many = prepare(DataConfig(path=pattern, **kw), tmp_path / "many")
    assert_same_corpus(many, prepare(DataConfig(path="one.txt", **kw), tmp_path / "one"))


def test_documents_end_with_the_levels_end_of_line(tmp_path) -> None:
    make_docs(tmp_path / "docs")
    char = prepare(DataConfig(path=str(tmp_path / "docs"), valid_fraction=0, test_fraction=0),
                   tmp_path / "c")
    assert char.vocab.decode(char.train) == (
        "alpha one\nbeta two\nline three\ngamma\ndelta\r\n")
    word = prepare(DataConfig(path=str(tmp_path / "docs"), level="word", valid_fraction=0,
                              test_fraction=0), tmp_path / "w")
    assert [word.vocab.tokens[i] for i in word.train] == [
        "alpha", "one", EOS, "beta", "two", EOS, "line", "three", EOS, "gamma", EOS, "delta", EOS]


def test_valid_and_test_may_be_patterns(tmp_path) -> None:
    make_docs(tmp_path / "docs")
    (tmp_path / "train.txt").write_text("alpha beta gamma delta\n" * 5)
    cfg = DataConfig(path=str(tmp_path / "train.txt"), valid=str(tmp_path / "docs" / "[ab].txt"),
                     test=str(tmp_path / "docs" / "sub"))
    c = prepare(cfg, tmp_path / "c")
    # o, n, w, i and r never occur in the training text
    assert c.vocab.decode(c.valid) == "alpha ??e\nbeta t??\nl??e th?ee\n".replace("?", "\ufffd")
    assert c.vocab.decode(c.test) == "gamma\n"


def _two_empty_files(d: Path) -> None:
    d.mkdir()
    (d / "a.txt").write_text("")
    (d / "b.txt").write_text("")


@pytest.mark.parametrize(("path", "make", "message"), [
    ("d/*.txt", lambda d: None, "d/*.txt: no files match this pattern"),
    ("d", Path.mkdir, "d: expected text files, got a directory without any"),
    ("d", _two_empty_files, "d: expected text, got 2 empty file(s)"),
])
def test_nothing_to_read_is_a_one_line_error(tmp_path, monkeypatch, path: str,
                                             make: Callable[[Path], None], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path / "d")
    with pytest.raises(SeqlabError) as e:
        prepare(DataConfig(path=path), tmp_path / "c")
    assert str(e.value) == message


def test_cache_covers_every_file(tmp_path, monkeypatch) -> None:
    docs = make_docs(tmp_path / "docs")
    cfg = DataConfig(path=str(docs), valid_fraction=0, test_fraction=0)
    a = prepare(cfg, tmp_path / "c")
    ids = tmp_path / "c" / "main.ids"
    stamp = ids.stat().st_mtime_ns

    def unread(*args: object) -> None:
        raise AssertionError("the cached ids should have been reused")

    with monkeypatch.context() as m:  # a fresh cache with a known vocabulary reads no text
        m.setattr(corpus_mod, "iter_units", unread)
        m.setattr(corpus_mod, "iter_documents", unread)
        b = prepare(cfg, tmp_path / "c", vocab=a.vocab)
    assert ids.stat().st_mtime_ns == stamp and np.array_equal(a.train, b.train)

    (docs / "sub" / "c.txt").write_text("gammaq")  # one file of five changes
    c = prepare(cfg, tmp_path / "c", vocab=a.vocab)
    assert a.vocab.decode(c.train).endswith("line three\ngamma\ufffd\ndelta\r\n")
    (docs / "z.txt").write_text("zeta")  # and a new file joins the corpus
    d = prepare(cfg, tmp_path / "c", vocab=a.vocab)
    assert a.vocab.decode(d.train).endswith("delta\r\n\ufffdeta\n")


def test_char_table_sends_unseen_code_points_to_unk() -> None:
    v = Vocab.build(iter_units_from_text("aé€\n", "char"), "char")
    text = "a\x00é€😀ÿ\n"  # below, between and above the known code points
    expected = [v.index.get(ch, v.unk_id) for ch in text]
    assert list(v.encode(text)) == expected
    assert v.decode(v.encode(text)) == "a\ufffdé€\ufffd\ufffd\n"


def test_word_chunks_match_pythons_line_reading(tmp_path, monkeypatch) -> None:
    """Block-wise word reading (lines split across blocks, "\\r\\n" cut in two, lines longer
    than a block) gives the words of Python's universal-newline text reading, <eos> per line."""
    rng = random.Random(0)
    pieces = ["ab", "c", " ", "  ", "\t", "\n", "\r", "\r\n", "é", "€", "\u2028", "\x0c"]
    for trial in range(200):
        monkeypatch.setattr(vocab_mod, "CHUNK_BYTES", rng.choice([1, 2, 3, 5, 8, 64]))
        p = tmp_path / f"{trial}.txt"
        p.write_bytes("".join(rng.choices(pieces, k=rng.randrange(0, 60))).encode("utf-8"))
        with p.open(encoding="utf-8", newline=None) as f:
            expected = [w for line in f for w in (*line.split(), EOS)]
        assert list(itertools.chain.from_iterable(iter_units(p, "word"))) == expected, trial


def _peak_bytes(cfg: DataConfig, cache_dir: Path) -> int:
    tracemalloc.start()  # numpy reports its buffers to tracemalloc too
    try:
        prepare(cfg, cache_dir)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _write_repeated(path: Path, block: bytes, size: int) -> Path:
    with path.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])
    return path


def test_char_preparation_memory_does_not_grow_with_the_file(tmp_path) -> None:
    block = builtin_text().encode("utf-8")  # ~100 symbols, some of them multi-byte
    big = _write_repeated(tmp_path / "big.txt", block, 64 << 20)
    small = _write_repeated(tmp_path / "small.txt", block, 8 << 20)
    cfg = {"level": "char", "valid_fraction": 0.05, "test_fraction": 0.05}
    peak_small = _peak_bytes(DataConfig(path=str(small), **cfg), tmp_path / "cs")
    peak_big = _peak_bytes(DataConfig(path=str(big), **cfg), tmp_path / "cb")
    assert peak_big < (64 << 20) // 4  # 1 MiB chunks: ~14 MiB whatever the file's size
    assert peak_big < 1.1 * peak_small


def test_word_preparation_memory_does_not_grow_with_the_file(tmp_path, monkeypatch) -> None:
    # Word lists cost ~20 bytes of Python objects per byte of text, so a 1 MiB chunk peaks at
    # ~25 MiB; small chunks let a small file show the same bound in a second.
    monkeypatch.setattr(vocab_mod, "CHUNK_BYTES", 4096)
    rng = random.Random(0)
    words = [f"w{i}" for i in range(50)] + [UNK]
    lines = [" ".join(rng.choices(words, k=rng.randrange(0, 20))) + "\n" for _ in range(2000)]
    block = "".join(lines).encode("utf-8")
    big = _write_repeated(tmp_path / "big.txt", block, 1 << 20)
    small = _write_repeated(tmp_path / "small.txt", block, 1 << 18)
    peak_small = _peak_bytes(DataConfig(path=str(small), level="word"), tmp_path / "cs")
    peak_big = _peak_bytes(DataConfig(path=str(big), level="word"), tmp_path / "cb")
    assert peak_big < (1 << 20) // 4
    assert peak_big < 1.1 * peak_small
