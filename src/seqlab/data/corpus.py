"""From text files to memory-mapped arrays of token ids.

A corpus is tokenised once into a flat binary file of ids (uint8, uint16 or uint32, the
smallest that fits the vocabulary) and then read through `np.memmap`, so the training loop
streams it from disk and a corpus larger than RAM works. Train, valid and test come either from
separate sources or from contiguous fractions of the main one: train first, then valid, then
test. The vocabulary is built from the training part only, so evaluation sees genuine unknowns.

At bpe level the fractions are fractions of characters, as at char level (the same valid text at
both levels), since the tokens are not known before the tokenizer is learned on the training part.
The main source is encoded in three pieces cut at those characters, so no token spans a split and
the tokenizer never saw a character of valid or test; the manifest records each piece's tokens.

A source is one file, a directory (every file below it, hidden ones skipped) or a glob pattern
(``data/*.txt``). Several files are one corpus: each is a document, taken in path order and
ending with an end-of-line (`iter_documents`). Every pass reads the files in 1 MiB chunks and
keeps only per-chunk arrays and the vocabulary's counts, so memory does not grow with the corpus:

    vocabulary   the training part (after a counting pass when valid/test are fractions of it)
    encoding     everything, written chunk by chunk to ``<split>.ids``; the split sizes are then
                 the memmap's length, and a cached encoding needs no pass at all
"""

from __future__ import annotations

import bisect
import glob
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqlab.data.splits import SplitConfig, Splits
from seqlab.data.vocab import BPE_VOCAB, Level, Vocab, iter_documents, iter_units
from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, read_json, write_json

BUILTIN = "builtin:pydoc"  # the default corpus: English text of Python's own documentation


@dataclass
class DataConfig(SplitConfig):
    """The language-model task's data: text files, tokenised by `level`."""

    # training text: a file, a directory or a glob pattern of files (one document each);
    # "builtin:pydoc" is Python's documentation, offline. `valid` and `test` take the same forms.
    path: str = BUILTIN
    # char (Unicode code points), byte (any file), word, or bpe (byte-level BPE learned on the
    # training part: subwords, nothing unknown)
    level: Level = "char"
    bpe_vocab: int = BPE_VOCAB  # bpe level: tokens to learn (256 bytes + merges)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bpe_vocab < 256:
            raise SeqlabError("data.bpe_vocab must be at least 256 (every byte is a token), "
                              f"got {self.bpe_vocab}")
        if self.level == "bpe" and self.max_vocab is not None:
            raise SeqlabError("data.max_vocab does not apply at bpe level; set the size with "
                              f"data.bpe_vocab (got max_vocab={self.max_vocab})")


@dataclass
class Corpus(Splits[np.ndarray]):
    """Tokenised splits. Each split is a 1-D array of ids (usually a read-only memmap)."""

    vocab: Vocab


@dataclass(frozen=True)
class Source:
    """Where one split's text comes from: a single file, or the documents of a directory or
    glob pattern (`resolve_source`)."""

    spec: str  # as configured
    files: tuple[Path, ...]
    documents: bool  # from a directory or pattern: each file ends with an end-of-line

    def units(self, level: Level) -> Iterator[np.ndarray | list[str]]:
        if self.documents:
            return iter_documents(self.files, level)
        return iter_units(self.files[0], level)  # byte for byte what the file holds

    def fingerprint(self) -> dict[str, Any]:
        """What the cached ids depend on: every file's path, size and modification time."""
        return {"documents": self.documents, "files": [_fingerprint(p) for p in self.files]}


def builtin_text() -> str:
    """Python's documentation topics (`pydoc_data.topics`), present on every CPython install."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k].strip() + "\n" for k in sorted(topics))


def resolve_source(path: str, cache_dir: Path) -> Source:
    """Turn a data path (a file, a directory, a glob pattern or the builtin corpus name) into
    its files; none of them missing, and not all of them empty."""
    if path == BUILTIN:
        out = cache_dir / "builtin-pydoc.txt"
        if not out.exists():
            with atomic_open(out) as f:
                f.write(builtin_text().encode("utf-8"))
        return Source(path, (out,), documents=False)
    p = Path(path)
    if p.is_file():
        if p.stat().st_size == 0:
            raise SeqlabError(f"{p}: expected text, got an empty file")
        return Source(path, (p,), documents=False)
    if p.is_dir():
        files = _files_below(p)
        if not files:
            raise SeqlabError(f"{p}: expected text files, got a directory without any")
    elif p.exists():
        raise SeqlabError(f"{p}: expected a text file, a directory or a pattern, got a special "
                          "file")
    elif any(c in path for c in "*?["):
        files = sorted((m for m in map(Path, glob.glob(path, recursive=True)) if m.is_file()),
                       key=lambda m: m.parts)
        if not files:
            raise SeqlabError(f"{path}: no files match this pattern")
    else:
        raise SeqlabError(f"{p}: file not found")
    if all(f.stat().st_size == 0 for f in files):
        raise SeqlabError(f"{path}: expected text, got {len(files)} empty file(s)")
    return Source(path, tuple(files), documents=True)


def _files_below(root: Path) -> list[Path]:
    """Every regular file below `root`, sorted by path; hidden files and folders skipped."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prunes the walk: no .git
        found += [Path(folder, n) for n in names if not n.startswith(".")]
    return sorted((f for f in found if f.is_file()), key=lambda f: f.parts)


def count_units(source: Source, level: Level) -> int:
    """Units of `source`: the characters at bpe level (where its splits are cut)."""
    return sum(_size(chunk, level) for chunk in source.units(level))


def _size(chunk: np.ndarray | list[str], level: Level) -> int:
    return sum(map(len, chunk)) if level == "bpe" else len(chunk)


def _head(units: Iterator[np.ndarray | list[str]], n: int, level: Level
          ) -> Iterator[np.ndarray | list[str]]:
    """The first `n` units of a stream; stops reading there."""
    if level == "bpe":
        pieces = _pieces(_lines(units), [n])
        yield from (lines for _, lines in itertools.takewhile(lambda p: p[0] == 0, pieces))
        return
    for chunk in units:
        if n <= 0:
            return
        yield chunk[:n]
        n -= len(chunk)


def _lines(units: Iterable[np.ndarray | list[str]]) -> Iterator[list[str]]:
    """Units at bpe level, the one level cut at characters: each chunk is a list of lines."""
    for chunk in units:
        assert isinstance(chunk, list), "character cuts are made at bpe level only"
        yield chunk


def _pieces(chunks: Iterable[list[str]], cuts: list[int]) -> Iterator[tuple[int, list[str]]]:
    """``(piece, lines)``: chunks of lines cut where the character count reaches each of the
    increasing `cuts` (a line may be cut in two); piece k lies between cuts k-1 and k."""
    pos, piece = 0, 0
    for lines in chunks:
        size = sum(map(len, lines))
        while piece < len(cuts) and pos + size >= cuts[piece]:
            head, lines = _cut(lines, cuts[piece] - pos)
            yield piece, head
            n = sum(map(len, head))
            pos, size, piece = pos + n, size - n, piece + 1
        yield piece, lines
        pos += size


def _cut(lines: list[str], n: int) -> tuple[list[str], list[str]]:
    """The first `n` characters of `lines` and the rest, both as lists of lines."""
    ends = list(itertools.accumulate(map(len, lines)))
    i = bisect.bisect_left(ends, n)  # the line in which character n falls
    if i == len(lines):
        return lines, []
    k = n - (ends[i] - len(lines[i]))  # 0 < k <= len(line i) unless n == 0
    head, tail = [*lines[:i], lines[i][:k]], [lines[i][k:], *lines[i + 1 :]]
    return [x for x in head if x], [x for x in tail if x]


def _training_units(cfg: DataConfig, main: Source) -> Iterator[np.ndarray | list[str]]:
    """The training part of `main`: all of it unless valid or test are fractions of it, when a
    counting pass comes first. A generator, so nothing is read if `Vocab.build` never asks (byte
    level's vocabulary is fixed)."""
    units = main.units(cfg.level)
    if _held_out(cfg):
        units = _head(units, cfg.split_sizes(count_units(main, cfg.level))[0], cfg.level)
    yield from units


def _held_out(cfg: DataConfig) -> bool:
    """Whether valid or test are fractions of the main source."""
    return bool((not cfg.valid and cfg.valid_fraction) or (not cfg.test and cfg.test_fraction))


def encode_source(source: Source, vocab: Vocab, out: Path, cuts: list[int] | None = None
                  ) -> np.ndarray:
    """Tokenise `source` into the binary id file `out`, chunk by chunk, and memory-map it."""
    return _encode_pieces(source, vocab, out, cuts)[0]


def _encode_pieces(source: Source, vocab: Vocab, out: Path, cuts: list[int] | None = None
                   ) -> tuple[np.ndarray, list[int]]:
    """`encode_source`, and the tokens of each piece between the character `cuts` (bpe
    level: each piece is encoded on its own)."""
    chunks: Iterable[tuple[int, np.ndarray | list[str]]] = (
        _pieces(_lines(source.units(vocab.level)), cuts) if cuts is not None
        else ((0, chunk) for chunk in source.units(vocab.level)))
    tokens = [0] * (len(cuts or []) + 1)
    with atomic_open(out) as f:
        for piece, chunk in chunks:
            ids = vocab.encode_units(chunk).astype(vocab.dtype, copy=False)
            f.write(ids.tobytes())
            tokens[piece] += len(ids)
    return open_ids(out, vocab.dtype), tokens


def open_ids(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _fingerprint(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _encoded(sources: dict[str, Source], vocab: Vocab, cache_dir: Path, cfg: DataConfig
             ) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    """Each source's ids, memory-mapped from ``cache_dir/<name>.ids``, and the train, valid and
    test sizes of the main one, in tokens; encoded again unless the manifest records the same
    vocabulary and the same files, unchanged."""
    manifest_path = cache_dir / "tokens.json"
    manifest: dict[str, Any] = {
        "vocab": vocab.to_json(), "sources": {name: src.fingerprint() for name, src in
                                              sources.items()}}
    stored = read_json(manifest_path) if manifest_path.exists() else {}
    fresh = {k: stored.get(k) for k in manifest} == manifest
    arrays = {}
    for name, src in sources.items():
        f = cache_dir / f"{name}.ids"
        if fresh and f.exists():
            arrays[name] = open_ids(f, vocab.dtype)
        elif name == "main" and vocab.level == "bpe":  # cut at characters, each piece alone
            sizes = cfg.split_sizes(count_units(src, "bpe")) if _held_out(cfg) else (0, 0, 0)
            cuts = list(itertools.accumulate(sizes[:2]))
            arrays[name], stored["pieces"] = _encode_pieces(src, vocab, f, cuts)
        else:
            arrays[name] = encode_source(src, vocab, f)
    n = len(arrays["main"])
    if vocab.level == "bpe":
        manifest["pieces"] = stored["pieces"] if _held_out(cfg) else [n, 0, 0]
    write_json(manifest_path, manifest)
    sizes = manifest["pieces"] if vocab.level == "bpe" else cfg.split_sizes(n)
    return arrays, (int(sizes[0]), int(sizes[1]), n - int(sizes[0]) - int(sizes[1]))


def prepare(cfg: DataConfig, cache_dir: str | Path, vocab: Vocab | None = None) -> Corpus:
    """Tokenise the configured sources into `cache_dir` (reused when they are unchanged).

    With `vocab` given (resuming, or evaluating a trained model) the vocabulary is not rebuilt.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    named = (("main", cfg.path), ("valid", cfg.valid), ("test", cfg.test))
    sources = {name: resolve_source(p, cache_dir) for name, p in named if p}
    if vocab is None:
        vocab = Vocab.build(_training_units(cfg, sources["main"]), cfg.level,
                            min_count=cfg.min_count,
                            max_size=cfg.bpe_vocab if cfg.level == "bpe" else cfg.max_vocab)
    elif vocab.level != cfg.level:
        raise SeqlabError(f"data.level is {cfg.level!r} but the vocabulary is {vocab.level!r}")
    arrays, (n_train, n_valid, _) = _encoded(sources, vocab, cache_dir, cfg)

    ids = arrays["main"]  # slices of a memmap are views: nothing below reads the ids
    if n_train < 2:
        raise SeqlabError(f"{cfg.path}: expected at least 2 training tokens, got {n_train}")
    return Corpus(
        vocab=vocab,
        train=ids[:n_train],
        valid=arrays.get("valid", ids[n_train : n_train + n_valid]),
        test=arrays.get("test", ids[n_train + n_valid :]),
    )


def encode_for_eval(path: str, vocab: Vocab, cache_dir: str | Path) -> np.ndarray:
    """Tokenise a whole source with an existing vocabulary (unknowns become ``<unk>``)."""
    cache_dir = Path(cache_dir)
    src = resolve_source(path, cache_dir)
    return encode_source(src, vocab, cache_dir / f"eval-{os.getpid()}.ids")
