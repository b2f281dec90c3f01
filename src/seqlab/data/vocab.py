"""Vocabularies and tokenisers at four levels: char, byte, word and bpe.

``bpe`` is byte-level byte-pair encoding through Hugging Face ``tokenizers``: the 256 bytes plus
merges learned on the training text (GPT-2's scheme), so every text round-trips exactly and no
token is ever unknown. Its text is read as lines, each encoded on its own (`iter_units`): no
token spans a line break, and the ids do not depend on where the file was cut into chunks.

Special tokens, the same scheme at every level:

* ``<unk>`` (id 0, char and word level): stands for anything not seen in training. Every model
  gives it non-zero probability, so text with unseen symbols can always be scored; evaluation
  counts how many tokens fell back to it. Byte and bpe level need none: all 256 bytes are in the
  vocab.
* the end-of-line token: ``"\\n"`` at char level, ``<eos>`` at word level (one per line, as in
  the Penn Treebank LM data), byte 10 at byte level, the token of the single byte 10 at bpe
  level. It is an ordinary token: it is predicted,
  scored and counted like any other. It also serves as the virtual token that precedes the first
  token of every stream, so the first token is scored "as if after a newline".

A vocabulary is saved as JSON: ``{"level": ..., "tokens": [...]}``, ids being list positions; at
bpe level ``{"level": "bpe", "tokenizer": {...}}``, the tokenizer in ``tokenizers``' own JSON
format (``Tokenizer.from_str(json.dumps(obj["tokenizer"]))`` loads it), its ids being ours.
"""

from __future__ import annotations

import codecs
import itertools
import json
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seqlab.errors import SeqlabError, describe
from seqlab.io import write_json

Level = Literal["char", "byte", "word", "bpe"]
LEVELS: tuple[str, ...] = ("char", "byte", "word", "bpe")
UNK, EOS = "<unk>", "<eos>"
CHUNK_BYTES = 1 << 20  # files are read in 1 MiB pieces, so no corpus has to fit in memory
NEWLINE = 10  # "\n" as a code point and as a byte: what ends a document at char and byte level
LONG_LINE = 1 << 20  # bpe level: longer lines are encoded in pieces of this many characters
BPE_VOCAB = 2000  # the default size of a bpe vocabulary: 256 bytes and 1744 merges


@dataclass
class Vocab:
    """Maps tokens to ids and back. Build one with `Vocab.build` or `Vocab.load`."""

    level: Level
    tokens: list[str]
    # bpe level: the `tokenizers.Tokenizer` whose ids these are (`Vocab.from_tokenizer`)
    tokenizer: Any = field(default=None, repr=False, compare=False)
    index: dict[str, int] = field(init=False, repr=False)
    _table: np.ndarray | None = field(init=False, repr=False, compare=False, default=None)
    _chars: np.ndarray | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise SeqlabError(f"vocabulary level must be one of {LEVELS}, got {self.level!r}")
        if (self.tokenizer is None) != (self.level != "bpe"):
            raise SeqlabError("a vocabulary has a tokenizer at bpe level and only there")
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise SeqlabError("vocabulary has duplicate tokens")

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> Vocab:
        """A bpe vocabulary over a byte-level BPE `tokenizers.Tokenizer`: the same ids."""
        ids = tokenizer.get_vocab()
        tokens = sorted(ids, key=ids.__getitem__)
        dense = [ids[t] for t in tokens] == list(range(len(tokens)))
        if not dense or not set(_BYTE_CHARS) <= ids.keys():
            raise SeqlabError("a bpe tokenizer must hold ids 0..n-1 and all 256 byte tokens")
        return cls("bpe", tokens, tokenizer)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int | None:
        return self.index.get(UNK) if self.level in ("char", "word") else None

    @property
    def eos_id(self) -> int:
        """The end-of-line token; also the virtual token before the first token of a stream."""
        return {"char": self.index.get("\n", 0), "word": self.index.get(EOS, 0), "byte": 10,
                "bpe": self.index.get(_BYTE_CHARS[NEWLINE], 0)}[self.level]

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        n = len(self)
        return np.dtype(np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.uint32)

    # --- building -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        units: Iterable[np.ndarray | list[str]],
        level: Level,
        *,
        min_count: int = 1,
        max_size: int | None = None,
    ) -> Vocab:
        """Build a vocabulary from the unit stream of `iter_units` (training text only).

        At bpe level `max_size` is the vocabulary size to learn (`BPE_VOCAB` when None) and
        `min_count` the least count of a pair that is merged.
        """
        if level == "byte":
            return cls("byte", [f"<0x{b:02X}>" for b in range(256)])
        if level == "bpe":
            return cls.from_tokenizer(train_bpe(units, max_size or BPE_VOCAB, min_count))
        counts: Counter[str] = Counter()
        for chunk in units:
            if level == "char":
                cps, n = np.unique(chunk, return_counts=True)
                counts.update({chr(c): int(k) for c, k in zip(cps, n, strict=True)})
            else:
                counts.update(chunk)
        specials = [UNK, "\n"] if level == "char" else [UNK, EOS]
        for s in specials:
            counts.pop(s, None)
        # Most frequent first; ties broken alphabetically, so the vocabulary is deterministic.
        kept = sorted((t for t, n in counts.items() if n >= min_count),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(specials))]
        return cls(level, specials + (sorted(kept) if level == "char" else kept))

    # --- persistence ----------------------------------------------------------------------
    def to_json(self) -> dict:
        if self.level == "bpe":  # the tokenizer's own JSON; its vocabulary is ours
            return {"level": "bpe", "tokenizer": json.loads(self.tokenizer.to_str())}
        return {"level": self.level, "tokens": self.tokens}

    @classmethod
    def from_json(cls, obj: dict) -> Vocab:
        if isinstance(obj, dict) and obj.get("level") == "bpe" and set(obj) == {"level",
                                                                               "tokenizer"}:
            from tokenizers import Tokenizer

            try:
                tokenizer = Tokenizer.from_str(json.dumps(obj["tokenizer"]))
            except Exception as e:  # tokenizers raises its own Exception subclass
                raise SeqlabError(f"bpe vocabulary: unreadable tokenizer JSON ({e})") from None
            return cls.from_tokenizer(tokenizer)
        if not isinstance(obj, dict) or set(obj) != {"level", "tokens"}:
            raise SeqlabError("vocabulary JSON must have keys level and tokens (level and "
                              f"tokenizer at bpe level), got {obj!r:.80}")
        return cls(obj["level"], list(obj["tokens"]))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        from seqlab.io import read_json

        return cls.from_json(read_json(path))

    # --- encoding and decoding ------------------------------------------------------------
    def encode_units(self, chunk: np.ndarray | list[str]) -> np.ndarray:
        """Map one chunk from `iter_units` to ids; unknown units become ``<unk>``."""
        if self.level == "byte":
            return np.asarray(chunk, dtype=np.uint8)
        if self.level == "bpe":  # lines, each encoded on its own (in parallel, in Rust)
            encoded = self.tokenizer.encode_batch_fast(list(chunk), add_special_tokens=False)
            return np.fromiter(itertools.chain.from_iterable(e.ids for e in encoded), self.dtype)
        if self.level == "char":
            # A table lookup is O(n); np.unique(return_inverse) sorted, ~15x slower per MiB.
            return self._char_table().take(np.asarray(chunk), mode="clip")
        # map() with dict.get runs in C; a generator expression doubled the encoding time.
        ids = map(self.index.get, chunk, itertools.repeat(self.unk_id or 0))
        return np.fromiter(ids, self.dtype, len(chunk))

    def _char_table(self) -> np.ndarray:
        """Code point -> id for every code point up to the largest known one, then ``<unk>``:
        ``take(mode="clip")`` sends every larger code point to that last entry."""
        if self._table is None:
            chars = [t for t in self.tokens if len(t) == 1]
            size = max((ord(c) for c in chars), default=0) + 2
            table = np.full(size, self.unk_id or 0, dtype=self.dtype)
            for c in chars:
                table[ord(c)] = self.index[c]
            self._table = table
        return self._table

    def encode(self, text: str, *, strict: bool = False) -> np.ndarray:
        """Encode a string. With ``strict``, unknown symbols are an error that names them."""
        units = next(iter_units_from_text(text, self.level), None)
        if units is None:
            return np.zeros(0, dtype=self.dtype)
        ids = self.encode_units(units)
        if strict and self.unk_id is not None:
            symbols = [u if isinstance(u, str) else chr(u) for u in units]
            unknown = sorted({u for u, i in zip(symbols, ids, strict=True)
                              if i == self.unk_id and u != UNK})
            if unknown:
                raise SeqlabError(f"prompt has {len(unknown)} symbol(s) outside the vocabulary: "
                                  f"{describe(unknown)}")
        return ids

    def token_bytes(self, i: int) -> bytes:
        """The bytes that token `i` stands for (byte and bpe level)."""
        if self.level == "byte":
            return bytes([i])
        return bytes(_CHAR_BYTES[c] for c in self.tokens[i])

    def count_chars(self, ids: np.ndarray) -> int:
        """How many characters the text of `ids` has: the denominator of bits per character.

        A character is counted at the token where it starts, so the counts of consecutive pieces
        of a stream add up to the whole. Char level: one per token (an unknown one included).
        Byte and bpe level: the UTF-8 lead bytes. Word level: the text as words re-joined by
        single spaces, each word counting itself and the space or line break after it, an
        ``<eos>`` only when it ends an empty line, an unknown word the five of ``<unk>``.
        """
        if self.level == "char":
            return len(ids)
        table, total = self._char_counts(), 0
        prev_eos = True  # the virtual end-of-line before the stream
        for start in range(0, len(ids), CHUNK_BYTES * 16):  # bounded memory on a memmap
            piece = np.asarray(ids[start : start + CHUNK_BYTES * 16])
            total += int(table.take(piece).sum())
            if self.level == "word":
                eos = piece == self.eos_id
                total += int(np.count_nonzero(eos[1:] & eos[:-1])) + int(eos[0] and prev_eos)
                prev_eos = bool(eos[-1])
        return total

    def _char_counts(self) -> np.ndarray:
        """Characters each token contributes to `count_chars` (before word level's <eos>s)."""
        if self._chars is None:
            if self.level == "word":
                counts = [0 if t == EOS else len(t) + 1 for t in self.tokens]
            else:  # a character per UTF-8 lead byte: any byte but 10xxxxxx
                counts = [sum(b & 0xC0 != 0x80 for b in self.token_bytes(i))
                          for i in range(len(self))]
            self._chars = np.asarray(counts, dtype=np.int64)
        return self._chars

    def decoder(self) -> TextDecoder:
        return TextDecoder(self)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        d = self.decoder()
        return "".join(d.feed(int(i)) for i in ids) + d.flush()


class TextDecoder:
    """Turns a stream of ids back into text, one id at a time (for streaming samples)."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self._bytes = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_line_start = True

    def feed(self, i: int) -> str:
        v = self.vocab
        if v.level in ("byte", "bpe"):
            return self._bytes.decode(v.token_bytes(i))
        tok = v.tokens[i]
        if v.level == "char":
            return "\ufffd" if tok == UNK else tok
        if tok == EOS:
            self._at_line_start = True
            return "\n"
        out = tok if self._at_line_start else " " + tok
        self._at_line_start = False
        return out

    def flush(self) -> str:
        return self._bytes.decode(b"", final=True) if self.vocab.level in ("byte", "bpe") else ""


# --- reading files as unit streams ----------------------------------------------------------
def iter_units(path: str | Path, level: Level) -> Iterator[np.ndarray | list[str]]:
    """Yield a file as chunks of units: code points (char), bytes (byte), words (word) or lines
    of text, each with its ``"\\n"`` (bpe).

    The file is read in 1 MiB pieces, so files larger than memory stream through.
    """
    path = Path(path)
    if level == "word":
        yield from _iter_words(path)
        return
    if level == "bpe":
        yield from _iter_lines(path)
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            if level == "byte":
                yield np.frombuffer(block, dtype=np.uint8)
            else:
                yield _code_points(_decode(decoder, block, path, offset))
            offset += len(block)
        if level == "char":
            _decode(decoder, b"", path, offset, final=True)


def iter_documents(paths: Iterable[Path], level: Level) -> Iterator[np.ndarray | list[str]]:
    """Several files as one unit stream, each file a document that ends with an end-of-line.

    At word level every line already ends with ``<eos>``; at char and byte level a ``"\\n"`` is
    added after a document that does not end with one. An empty file adds nothing.
    """
    for path in paths:
        if level == "bpe":
            yield from _iter_lines(path, document=True)
            continue
        last = None
        for chunk in iter_units(path, level):
            if len(chunk):
                last = chunk[-1]
            yield chunk
        if level != "word" and last is not None and last != NEWLINE:
            yield np.array([NEWLINE], dtype=np.uint32 if level == "char" else np.uint8)


def iter_units_from_text(text: str, level: Level) -> Iterator[np.ndarray | list[str]]:
    """Like `iter_units`, for a string held in memory."""
    if not text:
        return
    if level == "byte":
        yield np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    elif level == "bpe":
        lines, rest = _split_text_lines(text)
        yield lines + ([rest] if rest else [])
    elif level == "char":
        yield _code_points(text)
    else:
        yield [w for line in text.splitlines() for w in (*line.split(), EOS)]


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _decode(decoder: codecs.IncrementalDecoder, block: bytes, path: Path, offset: int,
            final: bool = False, level: Level = "char") -> str:
    try:
        return decoder.decode(block, final=final)
    except UnicodeDecodeError as e:
        raise SeqlabError(
            f"{path}: expected UTF-8 text at {level} level, got invalid byte "
            f"0x{block[e.start]:02x} at offset {offset + e.start}; use data.level=byte for binary "
            "or non-UTF-8 files"
            if e.start < len(block)
            else f"{path}: expected UTF-8 text at {level} level, got a truncated character at the "
            f"end; use data.level=byte for binary or non-UTF-8 files"
        ) from None


def _iter_words(path: Path) -> Iterator[list[str]]:
    """Words with ``<eos>`` after every line, in chunks of about CHUNK_BYTES of text.

    Lines end at "\\n", "\\r\\n" or "\\r", as Python's text files read them. Reading in
    blocks rather than lines bounds the memory even for a file without newlines.
    """
    rest = yield from _split_blocks(path, "word", _split_lines)
    words, _ = _split_lines(rest, True)
    if words:
        yield words


def _iter_lines(path: Path, *, document: bool = False) -> Iterator[list[str]]:
    """Lines with their ``"\\n"``, in chunks of about CHUNK_BYTES of text (bpe level). As a
    document (`document`), a last line without a line break gets one."""
    rest = yield from _split_blocks(path, "bpe", _split_text_lines)
    if rest:
        yield _cut_line(rest + "\n", LONG_LINE) if document else [rest]


def _split_blocks(path: Path, level: Level, split: Callable[[str], tuple[list[str], str]]
                  ) -> Generator[list[str], None, str]:
    """The pieces that `split` finds in the text of `path`, read block by block; each block's
    unfinished rest (`split`'s second value) is carried into the next. Returns the rest at the
    end of the file, for the caller to finish."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    carry, offset = "", 0  # carry: the unfinished line at the end of the previous block
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            pieces, carry = split(carry + _decode(decoder, block, path, offset, level=level))
            offset += len(block)
            if pieces:
                yield pieces
    return carry + _decode(decoder, b"", path, offset, True, level)


def _split_text_lines(text: str) -> tuple[list[str], str]:
    """The finished lines of `text`, each ending with ``"\\n"``, and the unfinished rest. Only
    ``"\\n"`` ends a line ("\\r\\n" keeps its "\\r"), so the lines do not depend on where a
    text was cut in blocks. A line longer than LONG_LINE characters is cut in pieces of that
    length, counted from its start, so that even a file without line breaks streams; the rest
    keeps at most LONG_LINE characters of its line."""
    *finished, rest = text.split("\n")
    n = LONG_LINE
    lines = [p for line in finished for p in _cut_line(line + "\n", n)]
    if len(rest) > n:
        *full, rest = _cut_line(rest, n)
        lines += full
    return lines, rest


def _cut_line(line: str, n: int) -> list[str]:
    return [line[i : i + n] for i in range(0, len(line), n)]


def _split_lines(text: str, final: bool = False) -> tuple[list[str], str]:
    """The words of the finished lines of `text`, ``<eos>`` after each, and the unfinished
    rest (all of it finished when `final`)."""
    held = ""
    if not final and text.endswith("\r"):  # perhaps the first half of "\r\n"
        text, held = text[:-1], "\r"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if final and text and not text.endswith("\n"):
        text += "\n"
    end = text.rfind("\n") + 1
    # One split of the whole block: "<eos>" is a word of its own, as a literal "<eos>" would be.
    words, rest = text[:end].replace("\n", f" {EOS} ").split(), text[end:]
    if len(rest) > CHUNK_BYTES:  # one very long line: keep only its last, perhaps cut, word
        parts = rest.split()
        cut = not rest[-1].isspace()
        words += parts[:-1] if cut else parts
        rest = parts[-1] if cut else " "  # " ": still inside the line, its <eos> to come
    return words, rest + held


# --- byte-level BPE ----------------------------------------------------------------------------
def _byte_chars() -> list[str]:
    """GPT-2's printable stand-in for each byte, as ``tokenizers``' ByteLevel writes bytes in
    token strings: printable Latin-1 bytes stand for themselves, the others for 256 + n."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


_BYTE_CHARS = _byte_chars()  # byte -> its character in token strings
_CHAR_BYTES = {c: b for b, c in enumerate(_BYTE_CHARS)}


def train_bpe(units: Iterable[np.ndarray | list[str]], vocab_size: int, min_count: int = 1
              ) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` learned from chunks of lines (`iter_units` at
    bpe level): all 256 bytes, then merges up to `vocab_size` tokens, each of a pair seen at
    least `min_count` times. No special tokens: nothing is unknown, and the end-of-line token
    is byte 10's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # GPT-2's pre-tokenizer: words with their leading space, digits, punctuation runs, spaces
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_count, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator((list(chunk) for chunk in units), trainer)
    return tokenizer
