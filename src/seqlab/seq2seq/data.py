"""Paired data for sequence-to-sequence models: files -> token ids -> length-bucketed batches.

Input formats (one example per line, UTF-8):

* TSV: ``source<TAB>target``; exactly one tab per line.
* SCAN (Lake & Baroni 2018): ``IN: jump twice OUT: I_JUMP I_JUMP``.
* Parallel files: line i of the source file pairs with line i of the target file.

Blank lines are skipped in TSV and SCAN files (there is no pair on them); anything else that is
not a pair (no tab, an empty side, a side longer than the model's maximum) is an error naming the
file and line. Fields are stripped of surrounding whitespace. Tokens are words (split on
whitespace) or characters (spaces included), chosen per side.

Special tokens, the same on both sides and at both levels::

    id 0  <pad>  fills batches to a rectangle; masked out of the encoder, attention and loss
    id 1  <unk>  any token not in the training vocabulary
    id 2  <bos>  the first decoder input; never predicted
    id 3  <eos>  ends every target; predicted and scored like any other token

A source is encoded without BOS or EOS; a target ``y1 .. yn`` becomes the decoder input
``<bos> y1 .. yn`` and the prediction target ``y1 .. yn <eos>``. Literal ``<pad>``, ``<bos>``
and ``<eos>`` strings in the data are ordinary text and map to ``<unk>``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch

from seqlab.data.splits import Cursor, SplitConfig, Splits
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.io import read_json, write_json

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
Level = Literal["char", "word"]
Format = Literal["auto", "tsv", "scan"]


# --- tokens and vocabularies ---------------------------------------------------------------
def tokenize(text: str, level: Level) -> list[str]:
    return text.split() if level == "word" else list(text)


def detokenize(tokens: Sequence[str], level: Level) -> str:
    return " ".join(tokens) if level == "word" else "".join(tokens)


def build_vocab(sequences: Iterable[Sequence[str]], level: Level, *, min_count: int = 1,
                max_size: int | None = None) -> Vocab:
    """Specials first, then tokens by falling frequency (ties alphabetical): deterministic."""
    counts: Counter[str] = Counter()
    for seq in sequences:
        counts.update(seq)
    kept = sorted((t for t, n in counts.items() if n >= min_count and t not in SPECIALS),
                  key=lambda t: (-counts[t], t))
    if max_size is not None:
        kept = kept[: max(0, max_size - len(SPECIALS))]
    return Vocab(level, [*SPECIALS, *kept])


def encode(tokens: Sequence[str], vocab: Vocab) -> np.ndarray:
    """Token strings -> ids; unknown tokens and literal special strings become ``<unk>``."""
    ids = [vocab.index.get(t, UNK_ID) for t in tokens]
    return np.array([i if i >= len(SPECIALS) else UNK_ID for i in ids], dtype=np.int64)


def decode(ids: Iterable[int], vocab: Vocab) -> list[str]:
    """Ids -> token strings, stopping at ``<eos>`` and dropping ``<pad>``/``<bos>``."""
    out = []
    for i in map(int, ids):
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(vocab.tokens[i])
    return out


def _check_scheme(vocab: Vocab, side: str) -> None:
    if tuple(vocab.tokens[: len(SPECIALS)]) != SPECIALS:
        raise SeqlabError(f"{side} vocabulary: expected the special tokens {', '.join(SPECIALS)} "
                          f"first, got {vocab.tokens[:4]}")


@dataclass
class PairVocab:
    """The source and target vocabularies (the same object when shared)."""

    src: Vocab
    tgt: Vocab

    def __post_init__(self) -> None:
        _check_scheme(self.src, "source")
        _check_scheme(self.tgt, "target")

    @property
    def shared(self) -> bool:
        return self.src.to_json() == self.tgt.to_json()

    @property
    def levels(self) -> tuple[Level, Level]:
        """Source and target token levels (a seq2seq vocabulary is never byte level)."""
        return cast(Level, self.src.level), cast(Level, self.tgt.level)

    def to_json(self) -> dict:
        return {"source": self.src.to_json(), "target": self.tgt.to_json()}

    @classmethod
    def from_json(cls, obj: dict) -> PairVocab:
        if not isinstance(obj, dict) or set(obj) != {"source", "target"}:
            raise SeqlabError(f"expected a seq2seq vocabulary with source and target, got "
                              f"{str(obj)[:80]}")
        return cls(Vocab.from_json(obj["source"]), Vocab.from_json(obj["target"]))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> PairVocab:
        return cls.from_json(read_json(path))


# --- reading files -------------------------------------------------------------------------
def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break) for every line of a UTF-8 file."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"{path}: file not found" if not path.exists()
                          else f"{path}: expected a text file, got a directory")
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise SeqlabError(f"{path}:{n}: expected UTF-8 text, got invalid bytes") from None


def _sniff(path: str | Path) -> Format:
    for _, line in read_lines(path):
        if line.strip():
            return "scan" if line.startswith("IN: ") else "tsv"
    raise SeqlabError(f"{path}: expected source/target pairs, got an empty file")


def _split_line(line: str, fmt: str, where: str) -> tuple[str, str]:
    if fmt == "scan":
        if not line.startswith("IN: ") or " OUT: " not in line:
            raise SeqlabError(f"{where}: expected 'IN: <command> OUT: <actions>', got "
                              f"{line[:60]!r}")
        src, _, tgt = line[4:].partition(" OUT: ")
        return src, tgt
    tabs = line.count("\t")
    if tabs != 1:
        got = "a line without a tab" if tabs == 0 else f"{tabs} tabs"
        raise SeqlabError(f"{where}: expected source<TAB>target, got {got}")
    src, tgt = line.split("\t")
    return src, tgt


def read_pairs(path: str | Path, target: str | Path | None = None, fmt: Format = "auto"
               ) -> list[tuple[str, str, str]]:
    """``(where, source, target)`` texts from a TSV/SCAN file or two parallel files."""
    if target is not None:
        src_lines, tgt_lines = list(read_lines(path)), list(read_lines(target))
        if len(src_lines) != len(tgt_lines):
            raise SeqlabError(f"{target}: expected {len(src_lines)} lines, as in {path}, "
                              f"got {len(tgt_lines)}")
        return [(f"{path}:{n}", s.strip(), t.strip())
                for (n, s), (_, t) in zip(src_lines, tgt_lines, strict=True)]
    fmt = _sniff(path) if fmt == "auto" else fmt
    out = []
    for n, line in read_lines(path):
        if line.strip():
            src, tgt = _split_line(line, fmt, f"{path}:{n}")
            out.append((f"{path}:{n}", src.strip(), tgt.strip()))
    if not out:
        raise SeqlabError(f"{path}: expected source/target pairs, got none")
    return out


def check_source(tokens: Sequence[str], max_len: int, where: str) -> None:
    if not tokens:
        raise SeqlabError(f"{where}: expected a non-empty source, got an empty one")
    if len(tokens) > max_len:
        raise SeqlabError(f"{where}: source has {len(tokens)} tokens, more than the maximum "
                          f"model.max_src_len = {max_len}")


def tokenize_pairs(raw: list[tuple[str, str, str]], levels: tuple[Level, Level],
                   max_lens: tuple[int, int]) -> list[tuple[list[str], list[str]]]:
    """Tokenise both sides and check them: non-empty and within the maximum lengths."""
    out = []
    for where, src, tgt in raw:
        s, t = tokenize(src, levels[0]), tokenize(tgt, levels[1])
        check_source(s, max_lens[0], where)
        if not t:
            raise SeqlabError(f"{where}: expected a non-empty target, got an empty one")
        if len(t) > max_lens[1]:
            raise SeqlabError(f"{where}: target has {len(t)} tokens, more than the maximum "
                              f"model.max_tgt_len = {max_lens[1]}")
        out.append((s, t))
    return out


# --- pairs and batches ---------------------------------------------------------------------
@dataclass
class Batch:
    """A padded batch. Rows are examples; padding is ``<pad>`` (id 0) everywhere."""

    src: torch.Tensor  # (B, S) source ids
    src_len: torch.Tensor  # (B,) source lengths (>= 1)
    tgt_in: torch.Tensor  # (B, T) <bos> y1 .. yn, the decoder inputs
    tgt_out: torch.Tensor  # (B, T) y1 .. yn <eos>, the prediction targets

    def __len__(self) -> int:
        return self.src.shape[0]

    @property
    def src_mask(self) -> torch.Tensor:
        """(B, S) True on real source tokens, False on padding."""
        return torch.arange(self.src.shape[1])[None, :] < self.src_len[:, None]

    @property
    def num_tokens(self) -> int:
        """Target tokens scored (``<eos>`` included)."""
        return int((self.tgt_out != PAD_ID).sum())


def pad(seqs: Sequence[np.ndarray], prefix: int | None = None, suffix: int | None = None
        ) -> torch.Tensor:
    """Right-pad id sequences (optionally wrapped by a prefix/suffix id) into (B, max len)."""
    extra = (prefix is not None) + (suffix is not None)
    out = torch.full((len(seqs), max(len(s) for s in seqs) + extra), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        row = [*([prefix] if prefix is not None else []), *s.tolist(),
               *([suffix] if suffix is not None else [])]
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


@dataclass
class Pairs:
    """Encoded pairs, stored flat (concatenated ids plus offsets), so millions of pairs fit."""

    src: np.ndarray  # (total source tokens,) int32
    src_off: np.ndarray  # (N + 1,) start of each source in `src`
    tgt: np.ndarray  # (total target tokens,) int32
    tgt_off: np.ndarray  # (N + 1,)

    @classmethod
    def encode(cls, pairs: Sequence[tuple[Sequence[str], Sequence[str]]], vocab: PairVocab
               ) -> Pairs:
        srcs = [encode(s, vocab.src) for s, _ in pairs]
        tgts = [encode(t, vocab.tgt) for _, t in pairs]

        def flat(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            off = np.cumsum([0, *map(len, seqs)])
            return (np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)), off

        return cls(*flat(srcs), *flat(tgts))

    def __len__(self) -> int:
        return len(self.src_off) - 1

    def source(self, i: int) -> np.ndarray:
        return self.src[self.src_off[i] : self.src_off[i + 1]]

    def target(self, i: int) -> np.ndarray:
        return self.tgt[self.tgt_off[i] : self.tgt_off[i + 1]]

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_off)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_off)

    def batch(self, idx: Sequence[int] | np.ndarray) -> Batch:
        srcs = [self.source(i) for i in idx]
        tgts = [self.target(i) for i in idx]
        return Batch(src=pad(srcs), src_len=torch.tensor([len(s) for s in srcs]),
                     tgt_in=pad(tgts, prefix=BOS_ID), tgt_out=pad(tgts, suffix=EOS_ID))


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index batches of similar length for evaluation (order restored by the caller)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class PairBatcher(Cursor):
    """Shuffled, length-bucketed training batches, deterministic from (seed, epoch).

    Each epoch permutes the pairs, cuts the permutation into pools of ``bucket`` batches, sorts
    each pool by length so a batch holds pairs of similar length (little padding), cuts the
    pools into batches and shuffles the batch order. The position is two integers, so
    ``--resume`` continues exactly. A `seqlab.tasks.base.BatchSource`.
    """

    def __init__(self, pairs: Pairs, batch_size: int, seed: int = 0, bucket: int = 100) -> None:
        if len(pairs) == 0:
            raise SeqlabError("the training split has no pairs")
        self.pairs, self.B, self.seed, self.bucket = pairs, batch_size, seed, max(1, bucket)
        self._cache: tuple[int, list[np.ndarray]] | None = None
        self._last_tokens = 0

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(len(self.pairs))
            key = self.pairs.src_lengths * 10_000 + self.pairs.tgt_lengths
            pool = self.B * self.bucket
            batches = []
            for p in range(0, len(perm), pool):
                chunk = perm[p : p + pool]
                chunk = chunk[np.argsort(key[chunk], kind="stable")]
                batches += [chunk[i : i + self.B] for i in range(0, len(chunk), self.B)]
            order = rng.permutation(len(batches))
            self._cache = (epoch, [batches[i] for i in order])
        return self._cache[1]

    def next(self) -> tuple[Batch, bool]:
        """The next batch, and whether it starts a new epoch."""
        if self.index >= len(self.epoch_batches(self.epoch)):
            self.epoch, self.index = self.epoch + 1, 0
        batch = self.pairs.batch(self.epoch_batches(self.epoch)[self.index])
        fresh = self.index == 0
        self.index += 1
        self._last_tokens = batch.num_tokens
        return batch, fresh

    @property
    def batch_size(self) -> int:
        return self.B

    def tokens_per_batch(self) -> int:
        """Target tokens in the batch just read (for tokens/s)."""
        return self._last_tokens



# --- splits --------------------------------------------------------------------------------
@dataclass
class DataConfig(SplitConfig):
    """The seq2seq task's data: pairs, tokenised per side (the ``data`` section).

    ``path`` holds the training pairs: a TSV or SCAN file, or the source side of parallel files;
    held-out fractions are drawn at random (``split_seed``) rather than from the end.
    """

    target: str | None = None  # parallel files: the target side of `path`
    valid_target: str | None = None  # parallel files: target side of `valid`
    test_target: str | None = None  # parallel files: target side of `test`
    format: Format = "auto"  # auto: SCAN when the first line starts with "IN: ", else TSV
    level: Level = "word"  # source tokens: words (whitespace-split) or characters
    tgt_level: Level | None = None  # target tokens; None: the same as `level`
    shared_vocab: bool = False  # one vocabulary for both sides (needs the same level)
    split_seed: int = 0  # seeds the random held-out split
    bucket: int = 100  # batches per length-sorted pool (1: no bucketing)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bucket < 1:
            raise SeqlabError(f"data.bucket must be >= 1, got {self.bucket}")
        if self.shared_vocab and self.tgt_level not in (None, self.level):
            raise SeqlabError(f"data.shared_vocab needs one level for both sides, got "
                              f"{self.level} and {self.tgt_level}")

    @property
    def levels(self) -> tuple[Level, Level]:
        return self.level, self.tgt_level or self.level


@dataclass
class PairData(Splits["Pairs"]):
    """Encoded splits and their vocabularies."""

    vocab: PairVocab


def _random_split(n: int, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    perm = np.random.default_rng(cfg.split_seed).permutation(n)
    _, n_valid, n_test = cfg.split_sizes(n)
    valid, test = perm[:n_valid], perm[n_valid : n_valid + n_test]
    return np.sort(perm[n_valid + n_test :]), np.sort(valid), np.sort(test)


def prepare(cfg: DataConfig, max_lens: tuple[int, int], vocab: PairVocab | None = None
            ) -> PairData:
    """Read, check, split and encode the configured pairs. With `vocab`, it is not rebuilt."""
    if not cfg.path:
        raise SeqlabError("data.path: expected a file of pairs (TSV, SCAN or parallel), got "
                          "none; pass --data")
    read = lambda p, t: tokenize_pairs(read_pairs(p, t, cfg.format), cfg.levels, max_lens)  # noqa: E731
    main = read(cfg.path, cfg.target)
    tr, va, te = _random_split(len(main), cfg)
    splits = {"train": [main[i] for i in tr],
              "valid": read(cfg.valid, cfg.valid_target) if cfg.valid else [main[i] for i in va],
              "test": read(cfg.test, cfg.test_target) if cfg.test else [main[i] for i in te]}
    if not splits["train"]:
        raise SeqlabError(f"{cfg.path}: expected training pairs after the held-out splits, got 0")
    if vocab is None:
        vocab = _build_pair_vocab(splits["train"], cfg)
    return PairData(vocab, *(Pairs.encode(splits[s], vocab) for s in ("train", "valid", "test")))


def _build_pair_vocab(pairs: list[tuple[list[str], list[str]]], cfg: DataConfig) -> PairVocab:
    build = functools.partial(build_vocab, min_count=cfg.min_count, max_size=cfg.max_vocab)
    if cfg.shared_vocab:
        shared = build([s for s, _ in pairs] + [t for _, t in pairs], cfg.level)
        return PairVocab(shared, shared)
    src_level, tgt_level = cfg.levels
    return PairVocab(build((s for s, _ in pairs), src_level),
                     build((t for _, t in pairs), tgt_level))


def load_eval_pairs(path: str, target: str | None, vocab: PairVocab, max_lens: tuple[int, int],
                    fmt: Format = "auto") -> Pairs:
    """Any file of pairs, encoded with a trained model's vocabularies (unknowns -> <unk>)."""
    raw = read_pairs(path, target, fmt)
    return Pairs.encode(tokenize_pairs(raw, vocab.levels, max_lens), vocab)
