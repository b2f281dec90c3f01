"""From text files to memory-mapped arrays of token ids.

A corpus is tokenised once into a flat binary file of ids (uint8, uint16 or uint32, the
smallest that fits the vocabulary) and then read through `np.memmap`, so the training loop
streams it from disk and a corpus larger than RAM works. Train, valid and test come either from
separate files or from contiguous fractions of one file: train first, then valid, then test.
The vocabulary is built from the training part only, so evaluation sees genuine unknowns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqlab.data.splits import SplitConfig, Splits
from seqlab.data.vocab import Level, Vocab, iter_units
from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, read_json, write_json

BUILTIN = "builtin:pydoc"  # the default corpus: English text of Python's own documentation


@dataclass
class DataConfig(SplitConfig):
    """The language-model task's data: text files, tokenised by `level`."""

    path: str = BUILTIN  # training text; "builtin:pydoc" is Python's documentation, offline
    level: Level = "char"  # char (Unicode code points), byte (any file) or word


@dataclass
class Corpus(Splits[np.ndarray]):
    """Tokenised splits. Each split is a 1-D array of ids (usually a read-only memmap)."""

    vocab: Vocab


def builtin_text() -> str:
    """Python's documentation topics (`pydoc_data.topics`), present on every CPython install."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k].strip() + "\n" for k in sorted(topics))


def resolve_path(path: str, cache_dir: Path) -> Path:
    """Turn a data path (or the builtin corpus name) into an existing, non-empty file."""
    if path == BUILTIN:
        out = cache_dir / "builtin-pydoc.txt"
        if not out.exists():
            with atomic_open(out) as f:
                f.write(builtin_text().encode("utf-8"))
        return out
    p = Path(path)
    if not p.exists():
        raise SeqlabError(f"{p}: file not found")
    if not p.is_file():
        raise SeqlabError(f"{p}: expected a text file, got a directory or special file")
    if p.stat().st_size == 0:
        raise SeqlabError(f"{p}: expected text, got an empty file")
    return p


def count_units(path: Path, level: Level) -> int:
    return sum(len(chunk) for chunk in iter_units(path, level))


def _head(path: Path, level: Level, n: int) -> Iterator[np.ndarray | list[str]]:
    """The first `n` units of a file (the training part, when one file is split)."""
    for chunk in iter_units(path, level):
        if n <= 0:
            return
        yield chunk[:n]
        n -= len(chunk)


def encode_file(path: Path, vocab: Vocab, out: Path) -> np.ndarray:
    """Tokenise `path` into the binary id file `out` and return it memory-mapped."""
    with atomic_open(out) as f:
        for chunk in iter_units(path, vocab.level):
            f.write(vocab.encode_units(chunk).astype(vocab.dtype, copy=False).tobytes())
    return open_ids(out, vocab.dtype)


def open_ids(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _fingerprint(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def prepare(cfg: DataConfig, cache_dir: str | Path, vocab: Vocab | None = None) -> Corpus:
    """Tokenise the configured files into `cache_dir` (reused when the sources are unchanged).

    With `vocab` given (resuming, or evaluating a trained model) the vocabulary is not rebuilt.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    main = resolve_path(cfg.path, cache_dir)
    named = (("valid", cfg.valid), ("test", cfg.test))
    extra = {s: resolve_path(p, cache_dir) for s, p in named if p}
    n_train, n_valid, _ = cfg.split_sizes(count_units(main, cfg.level))
    if n_train < 2:
        raise SeqlabError(f"{main}: expected at least 2 training tokens, got {n_train}")

    if vocab is None:
        vocab = Vocab.build(
            _head(main, cfg.level, n_train), cfg.level, min_count=cfg.min_count,
            max_size=cfg.max_vocab,
        )
    elif vocab.level != cfg.level:
        raise SeqlabError(f"data.level is {cfg.level!r} but the vocabulary is {vocab.level!r}")

    manifest_path = cache_dir / "tokens.json"
    manifest = {
        "vocab": vocab.to_json(),
        "sources": {"main": _fingerprint(main), **{s: _fingerprint(p) for s, p in extra.items()}},
    }
    files = {"main": cache_dir / "main.ids", **{s: cache_dir / f"{s}.ids" for s in extra}}
    fresh = manifest_path.exists() and read_json(manifest_path) == manifest
    arrays = {
        s: (open_ids(f, vocab.dtype) if fresh and f.exists() else encode_file(src, vocab, f))
        for (s, f), src in zip(files.items(), [main, *extra.values()], strict=True)
    }
    write_json(manifest_path, manifest)

    ids = arrays["main"]
    return Corpus(
        vocab=vocab,
        train=ids[:n_train],
        valid=arrays.get("valid", ids[n_train : n_train + n_valid]),
        test=arrays.get("test", ids[n_train + n_valid :]),
    )


def encode_for_eval(path: str, vocab: Vocab, cache_dir: str | Path) -> np.ndarray:
    """Tokenise a whole file with an existing vocabulary (unknowns become ``<unk>``)."""
    cache_dir = Path(cache_dir)
    src = resolve_path(path, cache_dir)
    return encode_file(src, vocab, cache_dir / f"eval-{os.getpid()}.ids")
