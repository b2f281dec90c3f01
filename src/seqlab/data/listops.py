"""ListOps: nested list operations over single digits, a seeded generator and an exact evaluator.

An expression is a digit 0-9 or an operator applied to 2..max_args expressions::

    [MAX 2 9 [MIN 4 7 ] 0 ]            = 9
    MIN, MAX    smallest and largest argument
    MED         the median, integer part: [MED 2 5] = int(3.5) = 3
    SM          the sum modulo 10:        [SM 6 5 9 0] = 20 mod 10 = 0

The official files (Nangia & Bowman 2018, ``test_d20s.tsv``) hold one example a line,
``label<TAB>expression``, where the expression's tokens are separated by spaces and extra
parentheses give the gold binarised, left-branching parse::

    [SM 6 5 9 0 ]   is written   ( ( ( ( ( [SM 6 ) 5 ) 9 ) 0 ) ] )

`to_text` writes that format, and `parse_expression` and `evaluate` read it (with or without
the parentheses). `seqlab.data.trees.read_listops` turns such a file into trees.

The generator follows the description of the paper and its release script (``make_data.py``:
MAX_DEPTH 20, MAX_ARGS 5, VALUE_P 0.25): at depth d < max_depth a node is an operator with
probability value_p, with 2..max_args arguments drawn uniformly and an operator drawn uniformly;
otherwise (and always at max_depth) it is a uniform digit. The root has depth 1. The release
script draws until it has enough *distinct* examples, which removes most of the many tiny
expressions; `generate` does the same, from a seed, so the data is reproducible (the release
script had no seed). Training data comes from here: only the official test set is stored, and
`generate(..., exclude=...)` keeps its expressions out. The official file was deduplicated
within a far larger draw, so it holds fewer small expressions (depth 2: 21%, against 34% of
3,000 drawn here); its label and root-operator frequencies match ours within 0.03 (total
variation).

References: Nangia & Bowman (2018), "ListOps: A Diagnostic Dataset for Latent Tree Learning",
NAACL SRW; github.com/nyu-mll/spinn, branch listops-release.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from seqlab.errors import SeqlabError
from seqlab.io import atomic_write

OPERATORS = ("MIN", "MAX", "MED", "SM")
OPEN = {f"[{op}": op for op in OPERATORS}  # the token that opens each operator
CLOSE = "]"
DIGITS = tuple(str(d) for d in range(10))
VOCAB = (*OPEN, CLOSE, *DIGITS, "(", ")")  # the 17 symbols of the official files
MAX_MISSES = 100_000  # rejected draws in a row before `generate` gives up


class Apply(NamedTuple):
    """An operator applied to its arguments."""

    op: str  # one of OPERATORS
    args: tuple[Expr, ...]


Expr = int | Apply


@dataclass(frozen=True)
class ListOpsConfig:
    """The generator's parameters; the defaults are those of the official d20 files."""

    max_depth: int = 20  # nodes at this depth are digits; the root has depth 1
    max_args: int = 5  # an operator takes 2..max_args arguments
    value_p: float = 0.25  # probability that a node above max_depth is an operator
    max_tokens: int | None = None  # reject longer expressions (official format); None keeps all

    def __post_init__(self) -> None:
        if self.max_depth < 1 or self.max_args < 2 or not 0 <= self.value_p < 1:
            raise SeqlabError(
                "ListOps needs max_depth >= 1, max_args >= 2 and value_p in [0, 1), got "
                f"{self.max_depth}, {self.max_args} and {self.value_p}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise SeqlabError(f"max_tokens must be positive or None, got {self.max_tokens}")


# --- evaluation -------------------------------------------------------------------------------
def apply(op: str, values: Sequence[int]) -> int:
    """The value of one operator on its argument values (exact integer arithmetic)."""
    if not values:
        raise SeqlabError(f"ListOps operator {op} needs at least one argument")
    if op == "MIN":
        return min(values)
    if op == "MAX":
        return max(values)
    if op == "SM":
        return sum(values) % 10
    if op == "MED":
        s, n = sorted(values), len(values)
        # Integer part of the median; the values are non-negative, so // truncates like int().
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2
    raise SeqlabError(f"ListOps operator must be one of {OPERATORS}, got {op!r}")


def evaluate(expr: Expr | str) -> int:
    """The value of an expression, or of its text in the official format."""
    if isinstance(expr, str):
        expr = parse_expression(expr)
    # Post-order without recursion: each frame is (node, values of its arguments so far).
    stack: list[tuple[Apply, list[int]]] = []
    node: Expr = expr
    while True:
        if isinstance(node, Apply):
            stack.append((node, []))
            node = node.args[0]
            continue
        value = node
        while stack:
            parent, done = stack[-1]
            done.append(value)
            if len(done) < len(parent.args):
                break
            stack.pop()
            value = apply(parent.op, done)
        else:
            return value
        node = stack[-1][0].args[len(stack[-1][1])]


def parse_expression(text: str, where: str = "<expression>") -> Expr:
    """Read an expression from its tokens; parentheses (the gold parse) are ignored.

    Errors are one-line `SeqlabError`s that start with `where` (a ``file:line``)."""
    frames: list[tuple[str, list[Expr]]] = []  # open operators and the arguments read so far
    result: Expr | None = None
    for pos, tok in enumerate(text.split(" ")):
        if tok in ("(", ")", ""):
            continue
        if result is not None:
            raise SeqlabError(f"{where}: ListOps expression continues after its end "
                              f"(token {pos + 1}: {tok!r})")
        if tok in OPEN:
            frames.append((OPEN[tok], []))
            continue
        if tok in DIGITS:
            value: Expr = int(tok)
        elif tok == CLOSE:
            if not frames:
                raise SeqlabError(f"{where}: ListOps ']' (token {pos + 1}) closes no operator")
            op, args = frames.pop()
            if len(args) < 2:
                raise SeqlabError(f"{where}: ListOps operator {op} (closed at token {pos + 1}) "
                                  f"needs at least 2 arguments, got {len(args)}")
            value = Apply(op, tuple(args))
        else:
            raise SeqlabError(f"{where}: ListOps token {pos + 1} must be one of "
                              f"{' '.join(VOCAB)}, got {tok!r}")
        if frames:
            frames[-1][1].append(value)
        else:
            result = value
    if frames:
        raise SeqlabError(f"{where}: ListOps expression ends with {len(frames)} operator(s) "
                          "not closed by ']'")
    if result is None:
        raise SeqlabError(f"{where}: empty ListOps expression")
    return result


# --- text -------------------------------------------------------------------------------------
def to_tokens(expr: Expr, parens: bool = True) -> list[str]:
    """Tokens of an expression in the official format (with the left-branching gold parse)."""
    if not isinstance(expr, Apply):
        return [str(expr)]
    # ( ( ( [OP a1 ) a2 ) ] ): one "(" per argument, and one for "]".
    out = ["("] * (len(expr.args) + 1) if parens else []
    out.append(f"[{expr.op}")
    for arg in expr.args:
        out += to_tokens(arg, parens)
        if parens:
            out.append(")")
    out.append(CLOSE)
    if parens:
        out.append(")")
    return out


def to_text(expr: Expr, parens: bool = True) -> str:
    return " ".join(to_tokens(expr, parens))


def depth(expr: Expr) -> int:
    """Nesting depth, counted as the generator does: a digit at the root has depth 1."""
    if not isinstance(expr, Apply):
        return 1
    return 1 + max(depth(a) for a in expr.args)


def write_tsv(path: str | Path, exprs: Iterable[Expr]) -> None:
    """Write ``label<TAB>expression`` lines, the official file format."""
    atomic_write(path, "".join(f"{evaluate(e)}\t{to_text(e)}\n" for e in exprs))


# --- generation -------------------------------------------------------------------------------
def generate_expression(rng: random.Random, config: ListOpsConfig | None = None,
                        depth: int = 1) -> Expr:
    """One random expression; `depth` is that of the node being drawn (the root's is 1)."""
    cfg = config or ListOpsConfig()
    if depth >= cfg.max_depth or rng.random() >= cfg.value_p:
        return rng.randrange(10)
    n_args = rng.randint(2, cfg.max_args)
    args = tuple(generate_expression(rng, cfg, depth + 1) for _ in range(n_args))
    return Apply(rng.choice(OPERATORS), args)


def generate(n: int, seed: int, config: ListOpsConfig | None = None, distinct: bool = True,
             exclude: Collection[str] = ()) -> list[Expr]:
    """`n` expressions, the same ones for the same seed and config.

    With `distinct`, repeated expressions are drawn again, as the release script does; `exclude`
    holds texts (official format, e.g. the test set's) that must not be produced, so training
    data never overlaps the evaluation set."""
    cfg = config or ListOpsConfig()
    if n < 0:
        raise SeqlabError(f"number of ListOps examples must be >= 0, got {n}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Expr] = []
    misses = 0  # draws in a row that were rejected: a config with few expressions never ends
    while len(out) < n:
        expr = generate_expression(rng, cfg)
        text = to_text(expr)
        too_long = cfg.max_tokens is not None and text.count(" ") + 1 > cfg.max_tokens
        if too_long or text in exclude or (distinct and text in seen):
            misses += 1
            if misses > MAX_MISSES:
                raise SeqlabError(f"ListOps config {cfg} gave no new expression in {MAX_MISSES:,} "
                                  f"draws after {len(out)} of the {n} asked for")
            continue
        misses = 0
        seen.add(text)
        out.append(expr)
    return out
