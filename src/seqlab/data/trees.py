"""Labelled trees: PTB bracket reading and writing, a binarisation check, and ListOps as trees.

A `Tree` has a class label (None for an unlabelled node), a word, and children. In PTB bracket
notation every node is ``(label word)`` or ``(label child child ...)``; the Stanford Sentiment
Treebank labels every node, leaves included, with a sentiment class 0-4::

    (3 (2 It) (4 (2 's) (3 good)))            root 3 over "It" (2) and "'s good" (4)

Words are separated by ASCII spaces and tabs only: three SST words contain a no-break space
(U+00A0, as in "8 1/2"), and splitting on Unicode whitespace would break their leaves apart.

Labels must be integers (class ids). Reading is strict: malformed brackets, an unbalanced tree, a
node without a label, words mixed with subtrees or text after the tree are one-line
`SeqlabError`s that start with ``file:line`` and give the column.

ListOps (`seqlab.data.listops`) becomes a tree in one of two forms:

* n-ary (``binary=False``): an internal node per operator application, its word the operator
  token (``[MAX``) and its children the arguments; digits are leaves. Every node is labelled with
  the value of its subexpression. This is the child-sum Tree-LSTM's input.
* binary (``binary=True``): the file's own parentheses, the gold left-branching parse, with the
  tokens ``[MAX``, digits and ``]`` as leaves. Digits are labelled with their value, a node that
  closes an operator (``( ... ] )``) with the operator's value, other nodes not at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from seqlab.data import listops
from seqlab.errors import SeqlabError

_TOKEN = re.compile(r"[()]|[^ \t\r\n()]+")  # ASCII whitespace only: U+00A0 belongs to words


@dataclass(slots=True)
class Tree:
    """A node and, through its children, the subtree below it."""

    label: int | None  # class id; None for an unlabelled node
    word: str | None = None  # a leaf's word (or a ListOps operator on an internal node)
    children: tuple[Tree, ...] = ()

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def nodes(self) -> list[Tree]:
        """Every node in post-order (children before their parent, the root last)."""
        out: list[Tree] = []
        stack: list[tuple[Tree, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded or node.is_leaf:
                out.append(node)
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(node.children))
        return out

    def leaves(self) -> list[Tree]:
        return [n for n in self.nodes() if n.is_leaf]

    def words(self) -> list[str]:
        """The sentence: the leaves' words, left to right."""
        return [n.word for n in self.leaves() if n.word is not None]

    def height(self) -> int:
        """0 for a leaf, else 1 + the largest child height."""
        heights: dict[int, int] = {}
        for n in self.nodes():
            heights[id(n)] = 1 + max((heights[id(c)] for c in n.children), default=-1)
        return heights[id(self)]

    def to_ptb(self) -> str:
        """PTB bracket text; `parse_tree` reads it back to an equal tree."""
        if self.label is None:
            raise SeqlabError("an unlabelled node cannot be written in PTB brackets")
        inner = [self.word] if self.word is not None else []
        inner += [c.to_ptb() for c in self.children]
        return f"({self.label} {' '.join(inner)})"


# --- PTB brackets -----------------------------------------------------------------------------
def parse_tree(text: str, where: str = "<string>") -> Tree:
    """One tree from PTB bracket text; `where` (``file:line``) starts every error message."""
    tokens = _TOKEN.findall(text)
    # One frame per node whose ")" is still to come: [label, word, children, first token].
    # Plain lists and one flat loop, no call per token: twice as fast as helper functions.
    stack: list[list] = []
    root: Tree | None = None
    want_label = False
    for i, tok in enumerate(tokens):
        if want_label:
            if tok in ("(", ")"):
                _fail(text, where, i - 1, "malformed brackets: node without a label")
            if not (tok.isascii() and tok.isdigit()):
                _fail(text, where, i, f"node label must be an integer class, got {tok!r}")
            stack.append([int(tok), None, [], i - 1])
            want_label = False
        elif root is not None:
            _fail(text, where, i, "unbalanced tree: ')' closes no bracket" if tok == ")"
                  else "unbalanced tree: text after the tree's closing bracket")
        elif tok == "(":
            want_label = True
        elif tok == ")":
            if not stack:
                _fail(text, where, i, "unbalanced tree: ')' closes no bracket")
            label, word, children, start = stack.pop()
            if word is None and not children:
                _fail(text, where, start, "malformed brackets: node with neither a word nor "
                      "children")
            node = Tree(label, word, tuple(children))
            if not stack:
                root = node
            elif stack[-1][1] is not None:
                _fail(text, where, stack[-1][3], "malformed brackets: node has both the word "
                      f"{stack[-1][1]!r} and subtrees")
            else:
                stack[-1][2].append(node)
        elif not stack:
            _fail(text, where, i, f"malformed brackets: word {tok!r} outside any bracket")
        elif stack[-1][1] is not None or stack[-1][2]:
            what = f"the word {stack[-1][1]!r}" if stack[-1][1] is not None else "subtrees"
            _fail(text, where, i, f"malformed brackets: word {tok!r} follows {what} in one node")
        else:
            stack[-1][1] = tok
    if want_label:
        _fail(text, where, len(tokens) - 1, "malformed brackets: node without a label")
    if stack:
        _fail(text, where, stack[-1][3],
              f"unbalanced tree: {len(stack)} bracket(s) not closed by the end of the line")
    if root is None:
        raise SeqlabError(f"{where}: empty tree")
    return root


def _fail(text: str, where: str, token: int, message: str) -> NoReturn:
    """Raise the one-line error, with the 1-based column of token number `token`."""
    starts = [m.start() for m in _TOKEN.finditer(text)]
    col = starts[token] + 1 if token < len(starts) else len(text.rstrip("\n")) + 1
    raise SeqlabError(f"{where}: {message} (column {col})")


def read_trees(path: str | Path, binary: bool = False) -> list[Tree]:
    """Every tree of a file with one PTB tree a line; blank lines are skipped. With `binary`,
    a tree that is not binary is an error too."""
    return list(iter_trees(path, binary))


def iter_trees(path: str | Path, binary: bool = False) -> Iterator[Tree]:
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"tree file {path} does not exist")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip(" \t\r\n"):
                tree = parse_tree(line, f"{path}:{lineno}")
                if binary:
                    check_binary(tree, f"{path}:{lineno}")
                yield tree


# --- binarisation -----------------------------------------------------------------------------
def is_binary(tree: Tree) -> bool:
    """Every node has 0 or 2 children: what the binary (N=2) Tree-LSTM and RecursiveNN take."""
    return all(len(n.children) in (0, 2) for n in tree.nodes())


def check_binary(tree: Tree, where: str = "<tree>") -> None:
    """Raise a one-line `SeqlabError` at the first node with 1 or more than 2 children."""
    for n in tree.nodes():
        if len(n.children) not in (0, 2):
            shown = " ".join(n.words())
            raise SeqlabError(f"{where}: tree is not binary: a node (label {n.label}) has "
                              f"{len(n.children)} children, over {shown[:60]!r}; binary models "
                              "need 0 or 2 per node")


# --- ListOps ----------------------------------------------------------------------------------
def listops_tree(expr: listops.Expr, binary: bool = False) -> Tree:
    """A ListOps expression as a tree, in the n-ary or the binary (gold parse) form."""
    if not isinstance(expr, listops.Apply):
        return Tree(expr, str(expr))
    args = [listops_tree(a, binary) for a in expr.args]
    value = listops.apply(expr.op, [a.label for a in args if a.label is not None])
    if not binary:
        return Tree(value, f"[{expr.op}", tuple(args))
    node = Tree(None, f"[{expr.op}")
    for a in args:  # ( ( [OP a1 ) a2 ) ...: left-branching, unlabelled partial applications
        node = Tree(None, None, (node, a))
    return Tree(value, None, (node, Tree(None, listops.CLOSE)))


def read_listops(path: str | Path, binary: bool = False) -> list[Tree]:
    """Trees of a ListOps file (``label<TAB>expression`` lines); a label that disagrees with the
    expression's value is an error."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"ListOps file {path} does not exist")
    trees = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            label, tab, text = line.rstrip("\r\n").partition("\t")
            if not tab or label not in listops.DIGITS:
                raise SeqlabError(f"{where}: expected 'label<TAB>expression' with a label 0-9, "
                                  f"got {line.rstrip()[:40]!r}")
            expr = listops.parse_expression(text, where)
            if "(" in text and listops.to_text(expr) != " ".join(text.split()):
                raise SeqlabError(f"{where}: the parentheses are not the left-branching gold "
                                  "parse that ListOps files carry")
            tree = listops_tree(expr, binary)
            if tree.label != int(label):
                raise SeqlabError(f"{where}: label {label} disagrees with the expression's "
                                  f"value {tree.label}")
            trees.append(tree)
    return trees
