"""Sequence tagging: CoNLL column files and CoNLL-U in, one tag per token out.

    seqlab train --model bilstm-crf --data train.txt --out R      # or bilstm-softmax, cnn-crf
    seqlab eval R --data test.txt --json     # token accuracy, conlleval span precision/recall/F1
    echo "John lives in Paris" | seqlab tag R [--marginals] [--nbest K]

Data: a CoNLL file has one token per line, whitespace-separated columns, a blank line between
sentences and ``-DOCSTART-`` lines skipped; the word is ``data.word_column`` (1-based, default
1) and the tag ``data.tag_column`` (default: the last). A CoNLL-U file has ten tab-separated
columns; comments (``#``), multiword tokens (``1-2``) and empty nodes (``1.1``) are skipped, the
word is FORM (2) and the tag UPOS (4) unless the columns are set. Bad input is a one-line error
naming the file and line: a row with another number of columns than the file's first row, or a
gold tag that the scheme's constraints forbid (``I-PER`` after ``O`` in BIO).

The scheme (``data.scheme=auto``) is read from the training tags: BIO when every tag is ``O``
or ``B-``/``I-`` something, BIOES when ``E-``/``S-`` tags occur too, else none. The CRF then
forbids what the scheme forbids (`seqlab.nn.crf.bio_constraints`).

Spans are scored as conlleval (CoNLL-2000) scores them: a chunk starts at B, at S, at an I or E
whose type differs from the previous tag's or that follows O (conlleval's quirk: ``O I-NP`` is a
chunk), and a chunk is correct when both its ends and its type match the gold one. The S and E
rules are those of conlleval's Python port (what seqeval's default mode computes); tags with no
scheme are scored as ``conlleval -r`` does, each non-O token a one-token chunk.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch

from seqlab.data.splits import Cursor, SplitConfig, Splits
from seqlab.distributed import World, shard
from seqlab.errors import SeqlabError
from seqlab.scoring import ScoreRow
from seqlab.tasks.base import JsonVocabFile, Metrics

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 of the word and character vocabularies
MAX_WORD_CHARS = 30  # longer words keep their first 30 characters for the char features
Format = Literal["auto", "conll", "conllu"]
Scheme = Literal["auto", "BIO", "BIOES", "none"]
TagScheme = Literal["BIO", "BIOES", "none"]  # what `auto` becomes: read from the tags


@dataclass
class TaggingConfig(SplitConfig):
    """Where the tagged sentences are and which columns to read (character features are the
    model's: ``model.char_encoder=none`` turns them off)."""

    format: Format = "auto"  # auto: CoNLL-U for *.conllu or 10 tab columns with an id, else CoNLL
    word_column: int | None = None  # 1-based; None: 1 (CoNLL), 2 = FORM (CoNLL-U)
    tag_column: int | None = None  # 1-based; None: the last (CoNLL), 4 = UPOS (CoNLL-U)
    lowercase: bool = False  # look words up in lower case (characters keep their case)
    scheme: Scheme = "auto"  # tag scheme for the constraints; auto: read from the tags
    singleton_unk: float = 0.5  # training words seen once become <unk> with this probability,
    # so <unk> is trained for the unseen words of test data (Lample et al. 2016, section 4)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("word_column", "tag_column"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SeqlabError(f"data.{name} is 1-based and must be >= 1 or null, got {value}")
        if not 0 <= self.singleton_unk <= 1:
            raise SeqlabError(f"data.singleton_unk must be in [0, 1], got {self.singleton_unk}")


# --- reading --------------------------------------------------------------------------------
@dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    lines: list[int]  # the 1-based line of each token, for errors


def _conll(lines: Sequence[str], where: str, word: int | None, tag: int | None
           ) -> list[Sentence]:
    out, cur, width = [], Sentence([], [], []), 0
    for n, line in enumerate([*lines, ""], 1):
        cols = line.split()
        if not cols:
            if cur.words:
                out.append(cur)
            cur = Sentence([], [], [])
            continue
        if cols[0] == "-DOCSTART-":
            continue
        width = width or len(cols)
        if len(cols) != width:
            raise SeqlabError(f"{where}:{n}: expected {width} columns as in the file's first "
                              f"row, got {len(cols)}: {line.strip()[:60]!r}")
        w, t = (word or 1) - 1, (tag or width) - 1
        if max(w, t) >= width or w == t:
            raise SeqlabError(f"{where}:{n}: expected distinct word and tag columns within the "
                              f"row's {width} columns, got word {w + 1}, tag {t + 1}")
        cur.words.append(cols[w])
        cur.tags.append(cols[t])
        cur.lines.append(n)
    return out


_CONLLU_ID = re.compile(r"^\d+$")


def _conllu(lines: Sequence[str], where: str, word: int | None, tag: int | None
            ) -> list[Sentence]:
    out, cur = [], Sentence([], [], [])
    w, t = (word or 2) - 1, (tag or 4) - 1
    if max(w, t) >= 10:
        raise SeqlabError(f"{where}: CoNLL-U has 10 columns, got word column {w + 1}, tag "
                          f"column {t + 1}")
    for n, line in enumerate([*lines, ""], 1):
        if not line.strip():
            if cur.words:
                out.append(cur)
            cur = Sentence([], [], [])
            continue
        if line.startswith("#"):
            continue
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != 10:
            raise SeqlabError(f"{where}:{n}: expected 10 tab-separated CoNLL-U columns, got "
                              f"{len(cols)}: {line.strip()[:60]!r}")
        if not _CONLLU_ID.match(cols[0]):
            continue  # a multiword token (1-2) or an empty node (1.1)
        cur.words.append(cols[w])
        cur.tags.append(cols[t])
        cur.lines.append(n)
    return out


def detect_format(path: str, lines: Sequence[str]) -> Literal["conll", "conllu"]:
    if path.endswith(".conllu"):
        return "conllu"
    first = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), "")
    cols = first.rstrip("\r\n").split("\t")
    return "conllu" if len(cols) == 10 and cols[0].split("-")[0].isdigit() else "conll"


def read_sentences(path: str, fmt: Format = "auto", word: int | None = None,
                   tag: int | None = None) -> list[Sentence]:
    """Tagged sentences of a CoNLL or CoNLL-U file; a bad row is an error naming its line."""
    p = Path(path)
    if not p.is_file():
        raise SeqlabError(f"{p}: file not found")
    lines = p.read_text(encoding="utf-8").splitlines()
    kind = detect_format(path, lines) if fmt == "auto" else fmt
    out = (_conllu if kind == "conllu" else _conll)(lines, path, word, tag)
    if not out:
        raise SeqlabError(f"{path}: expected tagged sentences, got none")
    return out


# --- tag schemes and gold constraints --------------------------------------------------------
def detect_scheme(tags: Iterable[str]) -> TagScheme:
    """BIO, BIOES, or none, from the tag names."""
    prefixes = set()
    for t in tags:
        if t != "O":
            m = re.match(r"^([BIES])-.+$", t)
            if m is None:
                return "none"
            prefixes.add(m[1])
    if not prefixes:
        return "none"
    return "BIOES" if prefixes & {"E", "S"} else "BIO"


def check_gold(sentences: Sequence[Sentence], scheme: TagScheme, where: str) -> None:
    """Every gold sequence is allowed under `scheme` (what the CRF can output), else an error
    naming the first bad token's line."""
    if scheme == "none":
        return
    from seqlab.nn.crf import bio_constraints

    valid = re.compile(r"^(O|[BI]-.+)$" if scheme == "BIO" else r"^(O|[BIES]-.+)$")
    for s in sentences:
        for t, n in zip(s.tags, s.lines, strict=True):
            if not valid.match(t):
                raise SeqlabError(f"{where}:{n}: tag {t!r} is not a {scheme} tag (the training "
                                  "tags follow that scheme)")
    names = sorted({t for s in sentences for t in s.tags})
    index = {t: i for i, t in enumerate(names)}
    start, trans, end = (a.tolist() for a in bio_constraints(names, scheme))
    for s in sentences:
        ids = [index[t] for t in s.tags]
        if not start[ids[0]]:
            raise SeqlabError(f"{where}:{s.lines[0]}: tag {s.tags[0]!r} may not begin a "
                              f"sentence under the {scheme} constraints")
        for i in range(1, len(ids)):
            if not trans[ids[i - 1]][ids[i]]:
                raise SeqlabError(f"{where}:{s.lines[i]}: tag {s.tags[i]!r} may not follow "
                                  f"{s.tags[i - 1]!r} under the {scheme} constraints")
        if not end[ids[-1]]:
            raise SeqlabError(f"{where}:{s.lines[-1]}: tag {s.tags[-1]!r} may not end a "
                              f"sentence under the {scheme} constraints")


# --- vocabulary and batches -------------------------------------------------------------------
@dataclass
class TagVocab:
    """Words, characters and tags by id, and how to read files for this model."""

    words: list[str]  # <pad>, <unk>, then by frequency
    chars: list[str]  # <pad>, <unk>, then by frequency
    tags: list[str]  # sorted
    scheme: TagScheme = "none"  # BIO, BIOES or none: the CRF's constraints
    lowercase: bool = False
    reader: dict[str, Any] = field(default_factory=dict)  # format, word_column, tag_column

    def __post_init__(self) -> None:
        if self.scheme not in get_args(TagScheme):  # e.g. a hand-edited vocab.json
            raise SeqlabError(f"tag vocabulary: scheme must be one of "
                              f"{', '.join(get_args(TagScheme))}, got {self.scheme!r}")
        self.word_ids = {w: i for i, w in enumerate(self.words)}
        self.char_ids = {c: i for i, c in enumerate(self.chars)}
        self.tag_ids = {t: i for i, t in enumerate(self.tags)}

    def to_json(self) -> dict[str, Any]:
        return {"words": self.words, "chars": self.chars, "tags": self.tags,
                "scheme": self.scheme, "lowercase": self.lowercase, "reader": self.reader}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TagVocab:
        return cls(list(d["words"]), list(d["chars"]), list(d["tags"]), d.get("scheme", "none"),
                   bool(d.get("lowercase", False)), dict(d.get("reader", {})))

    def word_id(self, word: str) -> int:
        return self.word_ids.get(word.lower() if self.lowercase else word, 1)


def build_vocab(sentences: Sequence[Sentence], cfg: TaggingConfig) -> TagVocab:
    words = Counter(w.lower() if cfg.lowercase else w for s in sentences for w in s.words)
    kept = [w for w, c in words.most_common() if c >= cfg.min_count]
    if cfg.max_vocab is not None:
        kept = kept[: cfg.max_vocab - 2]
    chars = Counter(c for s in sentences for w in s.words for c in w[:MAX_WORD_CHARS])
    tags = sorted({t for s in sentences for t in s.tags})
    scheme = detect_scheme(tags) if cfg.scheme == "auto" else cfg.scheme
    reader = {"format": cfg.format, "word_column": cfg.word_column, "tag_column": cfg.tag_column}
    return TagVocab([PAD, UNK, *kept], [PAD, UNK, *(c for c, _ in chars.most_common())], tags,
                    scheme, cfg.lowercase, reader)


@dataclass
class TagBatch:
    """Padded sentences; padding has word and char id 0 and tag -100."""

    words: torch.Tensor  # (B, T)
    chars: torch.Tensor  # (B, T, L)
    lengths: torch.Tensor  # (B,)
    tags: torch.Tensor  # (B, T)


def encode(words: Sequence[Sequence[str]], vocab: TagVocab,
           tags: Sequence[Sequence[str]] | None = None) -> TagBatch:
    """A batch of sentences (none empty); tags unknown to the vocabulary become -100."""
    B, T = len(words), max(len(s) for s in words)
    L = max(min(len(w), MAX_WORD_CHARS) for s in words for w in s)
    w_ids = torch.zeros(B, T, dtype=torch.long)
    c_ids = torch.zeros(B, T, max(L, 1), dtype=torch.long)
    t_ids = torch.full((B, T), -100, dtype=torch.long)
    for b, sent in enumerate(words):
        w_ids[b, : len(sent)] = torch.tensor([vocab.word_id(w) for w in sent])
        for i, w in enumerate(sent):
            cs = [vocab.char_ids.get(c, 1) for c in w[:MAX_WORD_CHARS]]
            c_ids[b, i, : len(cs)] = torch.tensor(cs, dtype=torch.long)
        if tags is not None:
            t_ids[b, : len(sent)] = torch.tensor([vocab.tag_ids.get(t, -100) for t in tags[b]])
    lengths = torch.tensor([len(s) for s in words], dtype=torch.long)
    return TagBatch(w_ids, c_ids, lengths, t_ids)


class TagBatcher(Cursor):
    """Shuffled batches of whole sentences; the position is (epoch, index)."""

    def __init__(self, sentences: list[Sentence], vocab: TagVocab, batch_size: int,
                 seed: int, singleton_unk: float = 0.0) -> None:
        if len(sentences) < batch_size:
            raise SeqlabError(f"expected at least train.batch_size = {batch_size} training "
                              f"sentences, got {len(sentences)}")
        self.sentences, self.vocab = sentences, vocab
        self.batch_size, self.seed, self.singleton_unk = batch_size, seed, singleton_unk
        counts = Counter(vocab.word_id(w) for s in sentences for w in s.words)
        self.singletons = torch.tensor(sorted(i for i, c in counts.items() if c == 1 and i > 1),
                                       dtype=torch.long)

    def next(self) -> tuple[TagBatch, bool]:
        start = self.take(self.batch_size, len(self.sentences))
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.sentences))
        chosen = [self.sentences[i] for i in order[start : start + self.batch_size]]
        batch = encode([s.words for s in chosen], self.vocab, [s.tags for s in chosen])
        if self.singleton_unk and len(self.singletons):
            # drawn from the position alone, so a resumed run replaces the same words
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + start)
            drop = torch.rand(batch.words.shape, generator=gen) < self.singleton_unk  # (B, T)
            batch.words[drop & torch.isin(batch.words, self.singletons)] = 1  # <unk>
        return batch, True

    def tokens_per_batch(self) -> int:
        return self.batch_size  # sentences: their lengths vary


# --- conlleval --------------------------------------------------------------------------------
def _split(tag: str, raw: bool) -> tuple[str, str]:
    """(prefix, type) as conlleval splits a tag; with `raw`, every non-O tag is a B."""
    if raw:
        return ("O", "") if tag == "O" else ("B", tag)
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def _ends(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    """conlleval's endOfChunk: does the chunk open at the previous token end there?"""
    return (prev in ("E", "S") or (prev in ("B", "I") and tag in ("B", "S", "O"))
            or (prev not in ("O", ".") and prev_type != kind))


def _starts(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this token?"""
    return (tag in ("B", "S") or (prev in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != kind))


def chunks(tags: Sequence[str], raw: bool = False) -> set[tuple[int, int, str]]:
    """The chunks of one sentence as (first, last, type), token indices inclusive."""
    out, begin = set(), None
    prev, prev_type = "O", ""
    for i, t in enumerate([*tags, "O"]):  # the sentence boundary closes any chunk
        tag, kind = _split(t, raw)
        if begin is not None and _ends(prev, tag, prev_type, kind):
            out.add((begin, i - 1, prev_type))
            begin = None
        if _starts(prev, tag, prev_type, kind):
            begin = i
        prev, prev_type = tag, kind
    return out


@dataclass
class SpanCounts:
    correct: int = 0  # chunks found with both ends and the type right
    gold: int = 0
    predicted: int = 0

    def add(self, gold: Sequence[str], pred: Sequence[str], raw: bool = False) -> None:
        g, p = chunks(gold, raw), chunks(pred, raw)
        self.correct += len(g & p)
        self.gold += len(g)
        self.predicted += len(p)

    def prf(self) -> tuple[float, float, float]:
        """Precision, recall and F1 as fractions; 0 where conlleval prints 0."""
        p = self.correct / self.predicted if self.predicted else 0.0
        r = self.correct / self.gold if self.gold else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@dataclass
class TaggingEvaluation(ScoreRow):
    model: str
    split: str
    sentences: int
    tokens: int
    token_accuracy: float  # share of tokens with the right tag
    span_precision: float  # conlleval: correct chunks / predicted chunks
    span_recall: float  # correct chunks / gold chunks
    span_f1: float
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: span F1 {self.span_f1:.2%} "
                f"(P {self.span_precision:.2%}, R {self.span_recall:.2%}), "
                f"token accuracy {self.token_accuracy:.2%}, "
                f"{self.sentences:,} sentences")


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str
          ) -> tuple[float, SpanCounts]:
    """Token accuracy and conlleval span counts of predicted against gold tag sequences."""
    counts, hits, total = SpanCounts(), 0, 0
    for g, p in zip(gold, pred, strict=True):
        counts.add(g, p, raw=scheme == "none")
        hits += sum(a == b for a, b in zip(g, p, strict=True))
        total += len(g)
    return hits / max(total, 1), counts


def tag_sentences(model: Any, words: Sequence[Sequence[str]]) -> list[list[str]]:
    """The model's tags for each sentence (an empty sentence gets none)."""
    out: list[list[str]] = [[] for _ in words]
    real = [i for i, s in enumerate(words) if s]
    for s in range(0, len(real), 256):
        idx = real[s : s + 256]
        paths = model.decode(encode([words[i] for i in idx], model.vocab))
        for i, path in zip(idx, paths, strict=True):
            out[i] = [model.vocab.tags[k] for k in path]
    return out


# --- the task ---------------------------------------------------------------------------------
_WORD = {"hidden": 100, "layers": 1, "bidirectional": True}
TagData = Splits[list[Sentence]]


class Tagging(JsonVocabFile, vocab=TagVocab):
    """Sequence tagging from CoNLL and CoNLL-U files (the `Task` protocol)."""

    name: ClassVar[str] = "tagging"
    DataConfig: ClassVar[type] = TaggingConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "bilstm-crf": ("tagger", {"output": "crf", "recurrent": _WORD}),
        "bilstm-softmax": ("tagger", {"output": "softmax", "recurrent": _WORD}),
        "cnn-crf": ("tagger", {"output": "crf", "char_encoder": "cnn", "char_hidden": 30,
                               "recurrent": _WORD}),
    }
    metric: ClassVar[str] = "span_f1"
    metrics: ClassVar[tuple[str, ...]] = ("span_f1", "token_accuracy")
    mode: ClassVar[str] = "max"

    def prepare(self, cfg: TaggingConfig, workdir: Path, vocab: TagVocab | None = None,
                model: Any = None) -> TagData:
        if not cfg.path:
            raise SeqlabError("data.path: expected a CoNLL or CoNLL-U file (--data), got none")
        read = lambda p: read_sentences(p, cfg.format, cfg.word_column, cfg.tag_column)  # noqa: E731
        main = read(cfg.path)
        n_train, n_valid, _ = cfg.split_sizes(len(main))
        if n_train < 1:
            raise SeqlabError(f"{cfg.path}: expected training sentences after the held-out "
                              "splits, got none")
        vocab = vocab or build_vocab(main[:n_train], cfg)
        check_gold(main, vocab.scheme, cfg.path)
        held = main[n_train:]
        valid, test = held[:n_valid], held[n_valid:]
        if cfg.valid:
            valid = read(cfg.valid)
            check_gold(valid, vocab.scheme, cfg.valid)
        if cfg.test:
            test = read(cfg.test)
            check_gold(test, vocab.scheme, cfg.test)
        return Splits(vocab, main[:n_train], valid, test)

    def describe_data(self, data: TagData) -> str:
        v = data.vocab
        tokens = sum(len(s.words) for s in data.train)
        return (f"{len(data.train):,} sentences ({tokens:,} tokens), {len(v.words):,} words, "
                f"{len(v.chars)} chars, {len(v.tags)} tags ({v.scheme})")

    def batches(self, data: TagData, cfg: TaggingConfig, train: Any, world: World) -> Any:
        return shard(TagBatcher(data.train, data.vocab, train.batch_size, train.seed,
                                cfg.singleton_unk), world)

    def estimator_inputs(self, data: TagData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the tagging task trains torch models only")

    def validate(self, model: Any, data: TagData) -> Callable[[], Metrics] | None:
        if not data.valid:
            return None

        def metrics() -> Metrics:
            e = self.evaluate(model, data.valid, split_name="valid", name="")
            return {"span_f1": e.span_f1, "token_accuracy": e.token_accuracy}

        return metrics

    def evaluate(self, model: Any, split: list[Sentence], *, split_name: str, name: str
                 ) -> TaggingEvaluation:
        t0 = time.perf_counter()
        pred = tag_sentences(model, [s.words for s in split])
        acc, counts = score([s.tags for s in split], pred, model.vocab.scheme)
        p, r, f = counts.prf()
        return TaggingEvaluation(
            model=name, split=split_name, sentences=len(split),
            tokens=sum(len(s.words) for s in split), token_accuracy=acc, span_precision=p,
            span_recall=r, span_f1=f, seconds=time.perf_counter() - t0)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> list[Sentence]:
        r = model.vocab.reader
        sentences = read_sentences(path, r.get("format", "auto"), r.get("word_column"),
                                   r.get("tag_column"))
        check_gold(sentences, model.vocab.scheme, path)
        return sentences

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """Tags of each whitespace-tokenised line: space-separated; with ``marginals=True``
        each as ``tag:p``; with ``nbest=K`` K lines ``log-probability<TAB>tags``."""
        marginals, nbest = bool(options.get("marginals")), int(options.get("nbest") or 1)
        unknown = sorted(set(options) - {"marginals", "nbest"})
        if unknown:
            raise SeqlabError(f"unknown tagging option {unknown[0]}; valid: marginals, nbest")
        if nbest < 1:
            raise SeqlabError(f"--nbest must be >= 1, got {nbest}")
        words = [line.split() for line in inputs]
        if nbest > 1:
            return [_nbest_lines(model, w, nbest) for w in words]
        tags = tag_sentences(model, words)
        if not marginals:
            return [" ".join(t) for t in tags]
        return [_with_marginals(model, w, t) for w, t in zip(words, tags, strict=True)]

    def add_commands(self, sub: Any) -> dict[str, Callable[..., int]]:
        t = sub.add_parser("tag", help="tag sentences (one per line, whitespace-tokenised)")
        t.add_argument("run", help="tagging run folder or checkpoint file")
        t.add_argument("--input", help="one sentence per line (default: standard input)")
        t.add_argument("--marginals", action="store_true",
                       help="write each tag as tag:p, its marginal probability")
        t.add_argument("--nbest", type=int, default=1, metavar="K",
                       help="write the K most probable tag sequences with log-probabilities")
        t.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
        return {"tag": cmd_tag}


def _with_marginals(model: Any, words: list[str], tags: list[str]) -> str:
    if not words:
        return ""
    mu = model.marginals(encode([words], model.vocab))[0]  # (T, K)
    ids = [model.vocab.tag_ids[t] for t in tags]
    return " ".join(f"{t}:{float(mu[i, k]):.4f}" for i, (t, k) in enumerate(zip(tags, ids,
                                                                                strict=True)))


def _nbest_lines(model: Any, words: list[str], k: int) -> str:
    if not words:
        return ""
    best = model.nbest(encode([words], model.vocab), k)[0]
    return "\n".join(f"{lp:.4f}\t" + " ".join(model.vocab.tags[i] for i in path)
                     for path, lp in best)


def cmd_tag(args: Any) -> int:
    """``seqlab tag RUN``: tags for each input line, on standard output."""
    from seqlab.experiment import load_run, task_of

    model, config = load_run(args.run, args.device)
    task = task_of(model, config)
    if not isinstance(task, Tagging):
        raise SeqlabError(f"{args.run}: expected a tagging run, got one of the {task.name} task")
    if args.input and not Path(args.input).is_file():
        raise SeqlabError(f"{args.input}: file not found")
    text = Path(args.input).read_text(encoding="utf-8") if args.input else sys.stdin.read()
    for out in task.predict(model, text.splitlines(), marginals=args.marginals,
                            nbest=args.nbest):
        print(out)
    return 0
