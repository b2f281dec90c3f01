"""LaTeX formulas for image-to-sequence: a seeded grammar, mathtext rendering, image files.

The grammar draws formulas as token sequences in the normalised form of im2latex (Deng et al.
2017): every group is braced, ``x _ { i } ^ { 2 }`` puts the subscript first, tokens are split
by spaces. It has letters, digits, Greek letters, binary operators, fractions, square roots,
sums with limits, sub/superscripts and nested round and square brackets::

    expr   := term (op term){0..3}
    term   := atom [_ { small }] [^ { small }]  |  \\frac { expr } { expr }  |  \\sqrt { expr }
            |  \\sum _ { i = 1 } ^ { n } term  |  ( expr )  |  [ expr ]
    small  := atom (op atom){0..1}

Nesting stops at ``max_depth``; a formula longer than ``max_tokens`` or whose image does not
fit (taller than the canvas, wider than ``max_width``) is drawn again, so a seed always gives
the same formulas.

Images are rendered with matplotlib's mathtext (no TeX installation), as grey levels with ink
high (0 background, 255 ink), cropped to the ink and placed on a canvas of fixed height, left
aligned, its width padded to a multiple of ``WIDTH_STEP`` so a CNN's pooled grid has whole
columns. `render` is also what image match uses to compare a prediction with the gold formula.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqlab.errors import SeqlabError

if TYPE_CHECKING:
    from matplotlib.mathtext import MathTextParser, RasterParse

WIDTH_STEP = 8  # canvas widths are multiples of this: the image encoder pools by 8
MARGIN = 2  # blank pixels left of and around the ink
FONT_SIZE = 10.0  # points at RENDER_DPI: a plain letter is ~10 px tall, a nested fraction ~25
RENDER_DPI = 100

LETTERS = tuple("abcdxyzn")
DIGITS = tuple("0123456789")
GREEK = (r"\alpha", r"\beta", r"\gamma", r"\delta", r"\theta", r"\lambda", r"\mu", r"\pi",
         r"\sigma", r"\phi", r"\omega")
OPS = ("+", "-", "=", r"\times", r"\cdot", "<")


@dataclass(frozen=True)
class GrammarConfig:
    """How large the generated formulas and their images may be."""

    max_depth: int = 2  # fractions, roots, sums and brackets nest at most this deep
    max_tokens: int = 40  # longer formulas are drawn again
    height: int = 32  # canvas height in pixels (taller renderings are drawn again)
    max_width: int = 256  # widest canvas in pixels (wider renderings are drawn again)

    def __post_init__(self) -> None:
        if self.max_depth < 0 or self.max_tokens < 1:
            raise SeqlabError(f"expected max_depth >= 0 and max_tokens >= 1, got "
                              f"{self.max_depth} and {self.max_tokens}")
        if self.height < 16 or self.max_width < 16 or self.max_width % WIDTH_STEP:
            raise SeqlabError(f"expected height >= 16 and max_width >= 16, a multiple of "
                              f"{WIDTH_STEP}, got {self.height} and {self.max_width}")


# --- the grammar ------------------------------------------------------------------------------
class _Grammar:
    def __init__(self, rng: np.random.Generator, max_depth: int) -> None:
        self.rng, self.max_depth = rng, max_depth

    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def atom(self) -> list[str]:
        u = self.rng.random()
        return [self.pick(LETTERS if u < 0.45 else DIGITS if u < 0.7 else GREEK)]

    def small(self) -> list[str]:
        out = self.atom()
        if self.rng.random() < 0.3:
            out += [self.pick(("+", "-")), *self.atom()]
        return out

    def scripted(self) -> list[str]:
        out, u = self.atom(), self.rng.random()
        if u < 0.25:
            out += ["_", "{", *self.small(), "}"]
        elif u < 0.45:
            out += ["^", "{", *self.small(), "}"]
        elif u < 0.55:
            out += ["_", "{", *self.small(), "}", "^", "{", *self.small(), "}"]
        return out

    def term(self, depth: int) -> list[str]:
        u = self.rng.random() if depth < self.max_depth else 0.0
        if u < 0.55:
            return self.scripted()
        if u < 0.7:
            return [r"\frac", "{", *self.expr(depth + 1), "}", "{", *self.expr(depth + 1), "}"]
        if u < 0.8:
            return [r"\sqrt", "{", *self.expr(depth + 1), "}"]
        if u < 0.87:
            i = self.pick(("i", "k"))
            return [r"\sum", "_", "{", i, "=", self.pick(("0", "1")), "}", "^", "{",
                    self.pick(("n", "N", r"\infty")), "}", *self.term(depth + 1)]
        bracket = ("(", ")") if u < 0.94 else ("[", "]")
        return [bracket[0], *self.expr(depth + 1), bracket[1]]

    def expr(self, depth: int) -> list[str]:
        out = self.term(depth)
        for _ in range(int(self.rng.integers(0, 4 if depth == 0 else 2))):
            out += [self.pick(OPS), *self.term(depth)]
        return out


def generate(n: int, seed: int, cfg: GrammarConfig = GrammarConfig(),
             exclude: frozenset[str] = frozenset()) -> list[list[str]]:
    """`n` token sequences that render within the canvas; none is in `exclude` (joined by
    spaces). Deterministic for (n, seed, cfg, exclude)."""
    return generate_rendered(n, seed, cfg, exclude)[0]


def generate_rendered(n: int, seed: int, cfg: GrammarConfig = GrammarConfig(),
                      exclude: frozenset[str] = frozenset()
                      ) -> tuple[list[list[str]], list[np.ndarray]]:
    """`generate`'s formulas and their cropped ink (what `render` gives), rendered once."""
    rng = np.random.default_rng(seed)
    grammar, out, inks = _Grammar(rng, cfg.max_depth), list[list[str]](), list[np.ndarray]()
    while len(out) < n:
        tokens = grammar.expr(0)
        text = " ".join(tokens)
        if len(tokens) > cfg.max_tokens or text in exclude:
            continue
        ink = render(text)
        if ink is None or ink.shape[0] > cfg.height - 2 * MARGIN or \
                canvas_width(ink.shape[1]) > cfg.max_width:
            continue
        out.append(tokens)
        inks.append(ink)
    return out, inks


# --- rendering --------------------------------------------------------------------------------
@cache
def _parser() -> MathTextParser[RasterParse]:
    from matplotlib.mathtext import MathTextParser

    return MathTextParser("agg")


def latex(tokens: Sequence[str]) -> str:
    """Tokens as mathtext reads them: joined without spaces (a space in mathtext's math mode is
    a symbol that takes scripts: ``x _ { 2 }`` would put the 2 under the space), except after a
    control word followed by a letter (``\\cdot n``)."""
    out = ""
    for tok in tokens:
        if out and tok[:1].isalpha() and _CONTROL_WORD.search(out):
            out += " "
        out += tok
    return out


_CONTROL_WORD = re.compile(r"\\[A-Za-z]+$")


def render(formula: str) -> np.ndarray | None:
    """The ink of `formula` (tokens separated by spaces) rendered by mathtext, cropped: (h, w)
    uint8, 255 = ink; None when mathtext cannot parse it or it draws nothing."""
    from matplotlib.font_manager import FontProperties

    try:
        raster = _parser().parse(f"${latex(formula.split())}$", dpi=RENDER_DPI,
                                 prop=FontProperties(size=FONT_SIZE))
    except Exception:  # mathtext raises ValueError, or worse, on arbitrary text
        return None
    return crop(np.array(raster.image, dtype=np.uint8))  # a copy: the raster is reused


def crop(ink: np.ndarray, threshold: int = 0) -> np.ndarray | None:
    """The bounding box of pixels above `threshold` (None when there are none)."""
    rows, cols = np.nonzero(ink > threshold)
    if len(rows) == 0:
        return None
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def canvas_width(ink_width: int) -> int:
    return -(-(ink_width + 2 * MARGIN) // WIDTH_STEP) * WIDTH_STEP


def place(ink: np.ndarray, height: int) -> np.ndarray:
    """`ink` (h, w) on a blank canvas (height, canvas_width(w)), left aligned at the margin and
    centred vertically."""
    h, w = ink.shape
    canvas = np.zeros((height, canvas_width(w)), dtype=np.uint8)
    top = (height - h) // 2
    canvas[top : top + h, MARGIN : MARGIN + w] = ink
    return canvas


def image_match(predicted: str, gold: str) -> bool:
    """Whether two formulas render to the same pixels, whitespace cropped (Deng et al. 2017's
    exact image match); a formula that does not render never matches."""
    a, b = render(predicted), render(gold)
    if a is None or b is None or a.shape != b.shape:
        return False
    return bool(np.array_equal(a > 127, b > 127))  # binarised, as Deng et al. compare


# --- image files ------------------------------------------------------------------------------
def read_image(path: str | Path, height: int, max_width: int) -> np.ndarray:
    """A user's formula image as a canvas like the generator's: grey-scale, ink high (dark ink
    on a light page is inverted), cropped, shrunk to fit the canvas height when taller."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            grey = np.asarray(im.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise SeqlabError(f"{path}: expected an image file, got {type(e).__name__}: {e}"
                          ) from None
    if grey.mean() > 127:  # a light page: make the ink the high values
        grey = 255 - grey
    ink = crop(grey, threshold=32)
    if ink is None:
        raise SeqlabError(f"{path}: expected a formula image, got a blank one")
    limit = height - 2 * MARGIN
    if ink.shape[0] > limit:
        scale = limit / ink.shape[0]
        size = (max(1, round(ink.shape[1] * scale)), limit)
        ink = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS))
    if canvas_width(ink.shape[1]) > max_width:
        raise SeqlabError(f"{path}: the formula is {ink.shape[1]} px wide at height {height}, "
                          f"more than model.max_width = {max_width}")
    return place(ink, height)


def read_folder(path: str | Path, index: str, height: int, max_width: int
                ) -> tuple[list[np.ndarray], list[list[str]]]:
    """Images and token sequences of a folder holding `index`: a TSV of ``file<TAB>formula``
    lines (the formula's tokens split by spaces, the file relative to the folder)."""
    folder = Path(path)
    tsv = folder / index
    if not tsv.is_file():
        raise SeqlabError(f"{folder}: expected a folder with {index} (file<TAB>formula lines), "
                          "got none")
    images, formulas = [], []
    with tsv.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2 or not row[1].split():
                raise SeqlabError(f"{tsv}:{n}: expected file<TAB>formula, got {row!r}")
            images.append(read_image(folder / row[0].strip(), height, max_width))
            formulas.append(row[1].split())
    if not images:
        raise SeqlabError(f"{tsv}: expected file<TAB>formula lines, got none")
    return images, formulas


# --- the cache --------------------------------------------------------------------------------
def save_images(path: Path, images: Sequence[np.ndarray], formulas: Sequence[Sequence[str]]
                ) -> None:
    """Canvases (same height) and formulas in one .npz, without pickle, written atomically."""
    from seqlab.io import atomic_open

    pixels = np.concatenate(images, axis=1) if images else np.zeros((0, 0), np.uint8)
    offsets = np.cumsum([0, *(im.shape[1] for im in images)]).astype(np.int64)
    text = np.array([" ".join(f) for f in formulas], dtype=np.str_)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        np.savez(f, pixels=pixels, offsets=offsets, formulas=text)


def load_images(path: Path) -> tuple[list[np.ndarray], list[list[str]]]:
    with np.load(path, allow_pickle=False) as z:
        pixels, offsets, text = z["pixels"], z["offsets"], z["formulas"]
    images = [pixels[:, a:b] for a, b in itertools.pairwise(offsets)]
    return images, [str(t).split() for t in text]
