"""Image-to-sequence: read a LaTeX formula off its image (im2latex, Deng et al. 2017).

Data (``data.path``):

* ``generate``: formulas drawn by the seeded grammar of `seqlab.data.formulas` and rendered with
  matplotlib's mathtext; ``data.n_train`` and ``data.n_valid`` from ``data.seed``, ``data.n_test``
  from another seed (and never a training or validation formula). Rendered images are cached as
  .npz (no pickle) in the run's ``data/`` folder, or in ``data.cache_dir`` when set.
* a folder holding images and ``formulas.tsv`` (``data.index``) of ``file<TAB>formula`` lines,
  the formula's tokens split by spaces; ``data.valid``/``data.test`` are other such folders,
  else fractions of it. Images are made grey, ink-high, cropped and shrunk to ``model.height``.

    seqlab train --model im2latex --data generate --out runs/tex data.n_train=20000
    seqlab eval runs/tex --json                 # exact_match, bleu, image_match, ...
    seqlab predict runs/tex --input images.txt  # one image path a line -> one formula a line
    seqlab transcribe runs/tex a.png b.png --attention-plot att/   # + a PNG per image

Metrics: ``exact_match`` (the output equals the gold tokens), corpus ``bleu`` (sacrebleu on the
space-joined tokens), ``image_match`` (the output renders to the same pixels as the gold
formula, whitespace cropped; an output that does not render is a miss), and teacher-forced
``token_accuracy`` and ``bits_per_token``. Image match selects the best checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch

from seqlab.data import formulas
from seqlab.data.splits import SplitConfig, Splits
from seqlab.data.vocab import Vocab
from seqlab.distributed import World, shard
from seqlab.errors import SeqlabError
from seqlab.scoring import ScoreRow
from seqlab.seq2seq.data import (
    BOS_ID,
    EOS_ID,
    SPECIALS,
    UNK_ID,
    Batch,
    PairBatcher,
    Pairs,
    PairVocab,
    build_vocab,
    decode,
    encode,
    pad,
)
from seqlab.seq2seq.metrics import bleu, exact_match, teacher_forced
from seqlab.seq2seq.search import DecodeConfig, Hypothesis
from seqlab.seq2seq.search import decode as search
from seqlab.tasks.base import JsonVocabFile, Metrics

GENERATED = "generate"


@dataclass
class ImageDataConfig(SplitConfig):
    """Formula images: generated, or a folder of images and a TSV."""

    path: str = GENERATED  # "generate", or a folder with `index` and the images it names
    index: str = "formulas.tsv"  # user data: file<TAB>formula lines, in each folder
    n_train: int = 20000  # generated: training formulas
    n_valid: int = 500  # generated: validation formulas (same seed as training)
    n_test: int = 1000  # generated: test formulas, from another seed
    seed: int = 0  # generated: the grammar's seed
    max_depth: int = 2  # generated: nesting of fractions, roots, sums and brackets
    max_tokens: int = 40  # generated: longest formula in tokens
    cache_dir: str | None = None  # generated: where rendered images are cached (None: data/)
    bucket: int = 100  # batches per width-sorted pool (1: no bucketing)

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.n_train, self.bucket) < 1 or min(self.n_valid, self.n_test) < 0:
            raise SeqlabError(f"data.n_train and data.bucket must be >= 1 and n_valid, n_test "
                              f">= 0, got {self.n_train}, {self.bucket}, {self.n_valid}, "
                              f"{self.n_test}")
        formulas.GrammarConfig(self.max_depth, self.max_tokens)  # checks them


# --- data -------------------------------------------------------------------------------------
@dataclass
class ImageSet:
    """Formula images (each (H, W_i) uint8, ink high) and their token ids. It has the members
    `PairBatcher` and the seq2seq metrics read (`__len__`, the lengths, `target`, `batch`), the
    image widths standing in for source lengths."""

    images: list[np.ndarray]
    formulas: list[list[str]]
    ids: list[np.ndarray]  # target ids (no <bos>/<eos>)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def src_lengths(self) -> np.ndarray:
        return np.array([im.shape[1] for im in self.images], dtype=np.int64)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.ids], dtype=np.int64)

    def target(self, i: int) -> np.ndarray:
        return self.ids[i]

    def batch(self, idx: Sequence[int] | np.ndarray) -> Batch:
        images, widths = pad_images([self.images[i] for i in idx])
        tgts = [self.ids[i] for i in idx]
        return Batch(src=images, src_len=widths, tgt_in=pad(tgts, prefix=BOS_ID),
                     tgt_out=pad(tgts, suffix=EOS_ID))


def pad_images(images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Canvases (H, W_i) -> (B, 1, H, max W) floats in [0, 1], zero (blank) padded, and the
    widths (B,)."""
    out = torch.zeros(len(images), 1, images[0].shape[0], max(im.shape[1] for im in images))
    for i, im in enumerate(images):
        out[i, 0, :, : im.shape[1]] = torch.from_numpy(im.astype(np.float32) / 255.0)
    return out, torch.tensor([im.shape[1] for im in images])


ImageData = Splits[ImageSet]


def _encode(images: list[np.ndarray], forms: list[list[str]], vocab: PairVocab, where: str,
            max_len: int) -> ImageSet:
    for n, f in enumerate(forms, 1):
        if len(f) > max_len:
            raise SeqlabError(f"{where}: formula {n} has {len(f)} tokens, more than "
                              f"model.max_tgt_len = {max_len}")
    return ImageSet(images, forms, [encode(f, vocab.tgt) for f in forms])


def _cached(cfg: ImageDataConfig, grammar: formulas.GrammarConfig, workdir: Path, part: str,
            make: Callable[[], tuple[list[list[str]], list[np.ndarray]]]
            ) -> tuple[list[np.ndarray], list[list[str]]]:
    """Rendered formulas of one generated part, from the cache or drawn, rendered and saved."""
    key = hashlib.sha256(repr((part, cfg.seed, cfg.n_train, cfg.n_valid, cfg.n_test, grammar,
                               formulas.FONT_SIZE, formulas.RENDER_DPI)).encode()).hexdigest()
    path = Path(cfg.cache_dir or workdir) / f"formulas-{part}-{key[:16]}.npz"
    if path.exists():
        return formulas.load_images(path)
    forms, inks = make()
    images = [formulas.place(ink, grammar.height) for ink in inks]
    formulas.save_images(path, images, forms)
    return images, forms


def _generated(cfg: ImageDataConfig, grammar: formulas.GrammarConfig, workdir: Path
               ) -> tuple[tuple[list[np.ndarray], list[list[str]]], ...]:
    n = cfg.n_train + cfg.n_valid
    main = _cached(cfg, grammar, workdir, "train",
                   lambda: formulas.generate_rendered(n, cfg.seed, grammar))
    seen = frozenset(" ".join(f) for f in main[1])
    # The test seed is derived from the seed, never equal to it: another stream of formulas.
    test_seed = int(np.random.SeedSequence([cfg.seed, 1]).generate_state(1)[0])
    test = _cached(cfg, grammar, workdir, "test",
                   lambda: formulas.generate_rendered(cfg.n_test, test_seed, grammar,
                                                   exclude=seen))
    ims, forms = main
    return ((ims[: cfg.n_train], forms[: cfg.n_train]), (ims[cfg.n_train :], forms[cfg.n_train :]),
            test)


def _folders(cfg: ImageDataConfig, model: Any) -> tuple[tuple[list[np.ndarray],
                                                                list[list[str]]], ...]:
    read = lambda p: formulas.read_folder(p, cfg.index, model.height, model.max_width)  # noqa: E731
    ims, forms = read(cfg.path)
    n_train, n_valid, _ = cfg.split_sizes(len(ims))
    if n_train < 1:
        raise SeqlabError(f"{cfg.path}: expected training images after the held-out splits, "
                          "got none")
    held = (ims[n_train:], forms[n_train:])
    valid = read(cfg.valid) if cfg.valid else (held[0][:n_valid], held[1][:n_valid])
    test = read(cfg.test) if cfg.test else (held[0][n_valid:], held[1][n_valid:])
    return (ims[:n_train], forms[:n_train]), valid, test


def prepare(cfg: ImageDataConfig, workdir: Path, vocab: PairVocab | None, model: Any
            ) -> ImageData:
    from seqlab.models.im2seq import Im2SeqConfig

    model = model or Im2SeqConfig()
    if cfg.path == GENERATED:
        grammar = formulas.GrammarConfig(cfg.max_depth, cfg.max_tokens, model.height,
                                         model.max_width)
        parts = _generated(cfg, grammar, workdir)
    else:
        parts = _folders(cfg, model)
    if vocab is None:
        tgt = build_vocab(parts[0][1], "word", min_count=cfg.min_count, max_size=cfg.max_vocab)
        vocab = PairVocab(Vocab("word", list(SPECIALS)), tgt)  # an image has no source tokens
    where = (cfg.path, cfg.valid or cfg.path, cfg.test or cfg.path)
    sets = [_encode(*p, vocab, w, model.max_tgt_len) for p, w in zip(parts, where, strict=True)]
    return Splits(vocab, *sets)


# --- decoding ---------------------------------------------------------------------------------
def transcribe(model: Any, images: Sequence[np.ndarray], cfg: DecodeConfig
               ) -> list[list[Hypothesis]]:
    """Hypotheses for each image, best first, by seq2seq's search (greedy, beam or sampling),
    in width-sorted batches; outputs stop after ``model.max_tgt_len`` tokens. Each
    hypothesis's attention is (tokens + 1, cells) over the image's own grid cells."""
    from seqlab.models.base import without_onednn

    widths = np.array([im.shape[1] for im in images], dtype=np.int64)
    out: list[list[Hypothesis]] = [[] for _ in images]
    order = np.argsort(widths, kind="stable")
    dtype = next(model.parameters()).dtype  # float64 models in tests
    with model._inference(), without_onednn():
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            batch, w = pad_images([images[i] for i in idx])
            state = model.encode(batch.to(dtype), w)
            limit = torch.full((len(idx),), model.config.max_tgt_len + 1)
            hyps_of = search(model, state, limit, cfg, idx.tolist())
            for row, (i, hyps) in enumerate(zip(idx, hyps_of, strict=True)):
                cells = int(state.mask[row].sum())
                for h in hyps:
                    h.attention = None if h.attention is None else h.attention[:, :cells]
                out[i] = hyps
    return out


def _greedy(model: Any) -> DecodeConfig:
    return DecodeConfig(strategy="greedy", batch_size=max(64, model.config.decode.batch_size))


def image_match(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Share of outputs that render to the gold formula's pixels (`formulas.image_match`)."""
    if not refs:
        return float("nan")
    hits = sum(formulas.image_match(" ".join(h), " ".join(r))
               for h, r in zip(hyps, refs, strict=True))
    return hits / len(refs)


@dataclass
class Image2SeqEvaluation(ScoreRow):
    model: str
    split: str
    images: int
    tokens: int  # target tokens scored teacher-forced, <eos> included
    exact_match: float  # share of outputs equal to the gold tokens
    bleu: float  # sacrebleu corpus BLEU on space-joined tokens, 0-100
    image_match: float  # share of outputs rendering to the gold formula's pixels
    token_accuracy: float  # teacher-forced share of target tokens ranked first
    bits_per_token: float  # teacher-forced cross-entropy per target token
    unk_tokens: int  # gold tokens outside the vocabulary (such a formula can never match)
    decoding: str
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: image match {self.image_match:.2%}, exact match "
                f"{self.exact_match:.2%}, BLEU {self.bleu:.2f}, token accuracy "
                f"{self.token_accuracy:.2%}, {self.bits_per_token:.4f} bits/token, "
                f"{self.images:,} images ({self.decoding})")


def _outputs(model: Any, data: ImageSet, cfg: DecodeConfig) -> list[list[int]]:
    return [h[0].tokens for h in transcribe(model, data.images, cfg)]


def _scores(model: Any, data: ImageSet, cfg: DecodeConfig) -> dict[str, Any]:
    nats, correct, tokens = teacher_forced(model, cast(Pairs, data), cfg.batch_size)
    hyps = _outputs(model, data, cfg)
    words = [decode(h, model.vocab.tgt) for h in hyps]
    return {"exact_match": exact_match(hyps, [r.tolist() for r in data.ids]),
            "image_match": image_match(words, data.formulas),
            "bleu": bleu([" ".join(w) for w in words], [" ".join(f) for f in data.formulas]),
            "token_accuracy": correct / tokens if tokens else math.nan,
            "bits_per_token": nats / (tokens * math.log(2)) if tokens else math.nan,
            "tokens": tokens}


def evaluate(model: Any, data: ImageSet, split: str, name: str) -> Image2SeqEvaluation:
    from seqlab.seq2seq.metrics import describe_decoding

    t0, cfg = time.perf_counter(), model.config.decode
    s = _scores(model, data, cfg)
    unk = sum(int(np.count_nonzero(r == UNK_ID)) for r in data.ids)
    return Image2SeqEvaluation(model=name, split=split, images=len(data), unk_tokens=unk,
                               decoding=describe_decoding(cfg),
                               seconds=time.perf_counter() - t0, **s)


def read_images(model: Any, paths: Sequence[str]) -> list[np.ndarray]:
    return [formulas.read_image(p, model.config.height, model.config.max_width) for p in paths]


# --- attention maps ---------------------------------------------------------------------------
def attention_png(image: np.ndarray, weights: np.ndarray, tokens: Sequence[str],
                  path: str | Path) -> None:
    """One panel per output token (and <eos>): the image with that step's attention over its
    grid cells drawn on top, written atomically to `path`."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqlab.io import atomic_write
    from seqlab.models.im2seq import POOL

    H, W = image.shape
    rows_g = H // POOL
    labels = [*tokens, "<eos>"][: len(weights)]
    cols = 4
    n_rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(cols * max(2.0, W / 60), n_rows * 1.1),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, w, label in zip(axes.flat, weights, labels, strict=False):
        grid = w.reshape(-1, rows_g).T  # cells are stored column by column -> (H/8, W/8)
        heat = np.kron(grid, np.ones((POOL, POOL)))  # (H, W') back to pixels
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.imshow(heat, cmap="inferno", alpha=0.55, extent=(-0.5, heat.shape[1] - 0.5,
                                                            H - 0.5, -0.5))
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_title(label, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


# --- the task ---------------------------------------------------------------------------------
class Image2Seq(JsonVocabFile, vocab=PairVocab):
    """Formula images to LaTeX tokens (the `Task` protocol)."""

    name: ClassVar[str] = "image2seq"
    DataConfig: ClassVar[type] = ImageDataConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "im2latex": ("im2seq", {}),
        "im2latex-noattn": ("im2seq", {"attention": "none"}),
    }
    metric: ClassVar[str] = "image_match"
    metrics: ClassVar[tuple[str, ...]] = ("image_match", "exact_match", "token_accuracy",
                                          "bits_per_token")
    mode: ClassVar[str] = "max"

    def prepare(self, cfg: ImageDataConfig, workdir: Path, vocab: PairVocab | None = None,
                model: Any = None) -> ImageData:
        return prepare(cfg, workdir, vocab, model)

    def describe_data(self, data: ImageData) -> str:
        return (f"{len(data.train):,} formula images (vocabulary {len(data.vocab.tgt)}, "
                f"{int(data.train.tgt_lengths.mean()) if len(data.train) else 0} tokens on "
                "average)")

    def batches(self, data: ImageData, cfg: ImageDataConfig, train: Any, world: World) -> Any:
        # An ImageSet has every member PairBatcher reads; widths bucket like source lengths.
        return shard(PairBatcher(cast(Pairs, data.train), train.batch_size, train.seed,
                                 cfg.bucket), world)

    def estimator_inputs(self, data: ImageData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the image2seq task trains torch models only")

    def validate(self, model: Any, data: ImageData) -> Callable[[], Metrics] | None:
        if len(data.valid) == 0:
            return None

        def metrics() -> Metrics:
            s = _scores(model, data.valid, _greedy(model))
            return {k: s[k] for k in self.metrics}

        return metrics

    def evaluate(self, model: Any, split: ImageSet, *, split_name: str, name: str
                 ) -> Image2SeqEvaluation:
        return evaluate(model, split, split_name, name)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> ImageSet:
        """A folder of images with its ``formulas.tsv``."""
        ims, forms = formulas.read_folder(path, ImageDataConfig.index, model.config.height,
                                          model.config.max_width)
        return _encode(ims, forms, model.vocab, path, model.config.max_tgt_len)

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """The best formula for each image file named by an input line."""
        from seqlab.config import from_dict, to_dict

        cfg = from_dict(DecodeConfig, {**to_dict(model.config.decode), **options},
                        prefix="decode.")
        paths = [line.strip() for line in inputs if line.strip()]
        hyps = transcribe(model, read_images(model, paths), cfg)
        return [" ".join(decode(h[0].tokens, model.vocab.tgt)) for h in hyps]

    def add_commands(self, sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
        t = sub.add_parser("transcribe", help="read formulas off images with an image2seq run")
        t.add_argument("run", help="image2seq run folder or checkpoint file")
        t.add_argument("images", nargs="+", help="image files (PNG, ...)")
        t.add_argument("--greedy", action="store_true", help="argmax decoding, not beam")
        t.add_argument("--beam-size", type=int, help="beam width (decode.beam_size)")
        t.add_argument("--attention-plot", metavar="DIR",
                       help="write DIR/<image stem>.attention.png for each image")
        return {"transcribe": cmd_transcribe}


def cmd_transcribe(args: argparse.Namespace) -> int:
    from seqlab.config import from_dict, to_dict
    from seqlab.experiment import load_run

    model, _ = load_run(args.run)
    if model.family != "im2seq":
        raise SeqlabError(f"{args.run}: expected an image2seq run, got a {model.family} model")
    options = {k: v for k, v in {"beam_size": args.beam_size,
                                 "strategy": "greedy" if args.greedy else None}.items()
               if v is not None}
    cfg = from_dict(DecodeConfig, {**to_dict(model.config.decode), **options}, prefix="decode.")
    images = read_images(model, args.images)  # every file is checked before any output
    for path, image, hyps in zip(args.images, images, transcribe(model, images, cfg),
                                 strict=True):
        tokens = decode(hyps[0].tokens, model.vocab.tgt)
        print(" ".join(tokens))
        if args.attention_plot and hyps[0].attention is not None:
            out = Path(args.attention_plot) / f"{Path(path).stem}.attention.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            attention_png(image, hyps[0].attention, tokens, out)
    return 0

