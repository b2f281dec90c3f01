r"""Tree-structured encoders, batched level by level: RecursiveNN, child-sum and binary Tree-LSTM.

Each encoder computes one state per node from its word (if it has one) and its children's
states, and returns the states of every node: ``encoder(batch, embeddings) -> (num_nodes, H)``,
where ``embeddings`` (num_words, E) are the vectors of ``batch.tokens``. Per node j with input
x (zero when the node has no word) and children k::

    RecursiveNN   leaf h = x;   h = tanh(W [h_l; h_r] + b)
    child-sum     h~ = sum_k h_k
                  i = sigma(W_i x + U_i h~ + b_i);  o likewise;  u likewise with tanh
                  f_k = sigma(W_f x + U_f h_k + b_f)            one forget gate per child
                  c = i * u + sum_k f_k * c_k;   h = o * tanh(c)
    binary        i = sigma(W_i x + U_i [h_l; h_r] + b_i);  o likewise;  u likewise with tanh
    (N-ary, N=2)  f_k = sigma(W_f x + U_fk [h_l; h_r] + b_f),  k = l, r
                  c = i * u + f_l * c_l + f_r * c_r;   h = o * tanh(c)

A Tree-LSTM leaf is the same cell with no children (h_k = c_k = 0). RecursiveNN and the binary
Tree-LSTM take binary trees (0 or 2 children per node); RecursiveNN also needs E == H and words
on leaves only. The child-sum cell takes any number of children and words on any node (ListOps
operators, dependency heads).

Level-wise batching: a node's level is its height (leaves 0), so all its children sit on lower
levels. The encoders walk the levels bottom-up and compute every node of a level at once, with
a few large matrix products, instead of one small product per node.

Every node is read exactly once, by its parent, and `TreeBatch.build` knows by which level. So
within a level the nodes are sorted by the level that reads them, and a level's output is split
into contiguous pieces, one per reading level (``split``: views, no copy). Level d concatenates
its pieces after a *null child* row (h = c = 0) into its *pool* and gathers its children from
the pool, padded to its widest node with row 0. Every state is copied O(1) times, forward and
backward, where gathering from one growing buffer would copy it once per level above it; there
are no in-place writes, so autograd sees plain splits, concatenations and gathers. Zero-state
padding is exact: a null child adds 0 to h~ and f_k * 0 to c. For two trees::

    tree 0 (ids in tree order)   tree 1     level  rows <- ids, by reader   pieces: read by
            4                      7        0      0<-0 1<-1 2<-5 3<-6 4<-3  [0:4] 1, [4:5] 2
           / \                    / \       1      5<-2 6<-7                 [5:6] 2, [6:7] none
          2   3                  5   6      2      7<-4                      [7:8] none
         / \
        0   1     level 1: pool = [null, rows 0-3], children [[1, 2], [3, 4]]
                  level 2: pool = [null, row 4, row 5], children [[2, 1]]
                  output: rows in tree order, order = [0, 1, 5, 4, 7, 2, 3, 6]

Nodes are numbered in *tree order*: each tree's nodes in post-order (`Tree.nodes`), the trees
one after another; outputs, labels and roots use it, so ``states[batch.roots]`` are the trees'
root states. A batch of trees of height at most L costs L levels of large products, against
one small product per node for the per-node recursion.

References: Socher, Lin, Ng & Manning (2011), "Parsing Natural Scenes and Natural Language with
Recursive Neural Networks"; Socher et al. (2013), "Recursive Deep Models for Semantic
Compositionality Over a Sentiment Treebank"; Tai, Socher & Manning (2015), "Improved Semantic
Representations From Tree-Structured Long Short-Term Memory Networks", sections 3.1-3.2; Looks et
al. (2017), "Deep Learning with Dynamic Computation Graphs", for batching by depth.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.trees import Tree
from seqlab.errors import SeqlabError


@dataclass(frozen=True)
class Level:
    """The nodes of one height, sorted by the level that reads them."""

    words: torch.Tensor  # (n,) row of the word embeddings for each node; num_words for none
    children: torch.Tensor  # (n, K) rows of this level's pool; 0 (the null child) on padding
    mask: torch.Tensor  # (n, K) True on real children
    has_words: bool  # False: no node of the level has a word (SST above the leaves)
    sources: tuple[int, ...]  # the lower levels whose pieces make up the pool, in order
    route: tuple[int, ...]  # piece sizes: rows read by level d+1, d+2, ..., none (roots)


@dataclass(frozen=True)
class TreeBatch:
    """Trees flattened for level-wise encoding; build one with `TreeBatch.build`."""

    tokens: torch.Tensor  # (num_words,) token ids of the nodes with a word, tree order
    levels: tuple[Level, ...]  # from the leaves (height 0) up
    order: torch.Tensor  # (num_nodes,) level-order row of each node, tree order
    labels: torch.Tensor  # (num_nodes,) class ids, -1 on unlabelled nodes, tree order
    roots: torch.Tensor  # (num_trees,) tree-order index of each root
    tree_index: torch.Tensor  # (num_nodes,) the tree each node belongs to
    max_children: int  # the widest node
    binary: bool  # every node has 0 or 2 children
    internal_words: bool  # some node with children has a word

    @classmethod
    def build(cls, trees: Sequence[Tree], token_id: Callable[[str], int]) -> TreeBatch:
        """Flatten `trees`; `token_id` maps a word to its id (a dict's ``__getitem__``, say)."""
        if not trees:
            raise SeqlabError("a tree batch needs at least one tree, got none")
        nodes, kids, heights, tree_index = _flatten(trees)
        n = len(nodes)
        for j, node in enumerate(nodes):
            if node.is_leaf and node.word is None:
                raise SeqlabError(f"tree {tree_index[j]} of the batch has a leaf without a word")
        worded = [j for j in range(n) if nodes[j].word is not None]
        word_row = np.full(n, len(worded), dtype=np.int64)  # num_words = "no word"
        word_row[worded] = np.arange(len(worded))
        levels, row = _schedule(kids, np.asarray(heights), word_row, len(worded))
        widths = [len(k) for k in kids]
        return cls(
            tokens=torch.tensor([token_id(nodes[j].word or "") for j in worded], dtype=torch.long),
            levels=levels, order=torch.from_numpy(row),
            labels=torch.tensor([-1 if x.label is None else x.label for x in nodes]),
            roots=torch.from_numpy(np.flatnonzero(np.diff([*tree_index, len(trees)]))),
            tree_index=torch.tensor(tree_index), max_children=max(widths),
            binary=all(w in (0, 2) for w in widths),
            internal_words=any(nodes[j].children for j in worded))

    @property
    def num_nodes(self) -> int:
        return len(self.order)

    @property
    def num_trees(self) -> int:
        return len(self.roots)

    @property
    def num_words(self) -> int:
        return len(self.tokens)

    def targets(self, where: Literal["nodes", "root"] = "nodes"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(node indices, labels) to train on: every labelled node, or the labelled roots."""
        if where not in ("nodes", "root"):
            raise SeqlabError(f"labels are taken at 'nodes' or 'root', got {where!r}")
        idx = self.roots if where == "root" else torch.arange(self.num_nodes)
        idx = idx[self.labels[idx] >= 0]
        return idx, self.labels[idx]

    def to(self, device: torch.device | str) -> TreeBatch:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        levels = tuple(replace(lv, words=lv.words.to(device), children=lv.children.to(device),
                               mask=lv.mask.to(device)) for lv in self.levels)
        return replace(self, levels=levels, **moved)


def _flatten(trees: Sequence[Tree]) -> tuple[list[Tree], list[list[int]], list[int], list[int]]:
    """Every node in tree order, with its children's indices, its height and its tree."""
    nodes: list[Tree] = []
    kids: list[list[int]] = []
    heights: list[int] = []
    tree_index: list[int] = []
    for t, tree in enumerate(trees):
        stack: list[tuple[Tree, list[int]]] = [(tree, [])]  # node, its finished children
        while stack:
            node, done = stack[-1]
            if len(done) < len(node.children):
                stack.append((node.children[len(done)], []))
                continue
            stack.pop()
            heights.append(1 + max((heights[k] for k in done), default=-1))
            nodes.append(node)
            kids.append(done)
            tree_index.append(t)
            if stack:
                stack[-1][1].append(len(nodes) - 1)
    return nodes, kids, heights, tree_index


def _schedule(kids: list[list[int]], height: np.ndarray, word_row: np.ndarray, num_words: int
              ) -> tuple[tuple[Level, ...], np.ndarray]:
    """The levels, and the level-order row of each node (see the module docstring)."""
    n, L = len(height), int(height.max()) + 1
    widths = np.array([len(k) for k in kids])
    child = np.fromiter(itertools.chain.from_iterable(kids), np.int64, int(widths.sum()))
    parent_of = np.repeat(np.arange(n), widths)  # one entry per (parent, child) edge
    place = np.arange(len(child)) - np.repeat(np.cumsum(widths) - widths, widths)  # 0, 1, ...
    reader = np.full(n, L)  # the level that reads each node; L: a root, read by none
    reader[child] = height[parent_of]
    by_level = np.lexsort((reader, height))  # level, then reader, then tree order (stable)
    row = np.empty(n, dtype=np.int64)
    row[by_level] = np.arange(n)
    start = np.concatenate([[0], np.cumsum(np.bincount(height, minlength=L))])
    route = np.zeros((L, L + 1), dtype=np.int64)  # route[s, d]: rows of level s read by d
    np.add.at(route, (height, reader), 1)
    piece_start = start[:-1, None] + np.cumsum(route, 1) - route  # row where piece s->d starts
    pool_start = 1 + np.cumsum(route, 0) - route  # where it lands in d's pool, after the null
    slot = pool_start[height, reader] + row - piece_start[height, reader]  # pool row, if read
    edges = np.argsort(reader[child], kind="stable")  # edges grouped by the reading level
    edge_start = np.searchsorted(reader[child][edges], np.arange(L + 1))
    levels = []
    for d in range(L):
        members = by_level[start[d] : start[d + 1]]
        e = edges[edge_start[d] : edge_start[d + 1]]
        r = row[parent_of[e]] - start[d]
        children = np.zeros((len(members), widths[members].max()), dtype=np.int64)  # 0: null
        mask = np.zeros(children.shape, dtype=bool)
        children[r, place[e]] = slot[child[e]]
        mask[r, place[e]] = True
        words = word_row[members]
        levels.append(Level(
            torch.from_numpy(words), torch.from_numpy(children), torch.from_numpy(mask),
            has_words=bool((words < num_words).any()),
            sources=tuple(int(x) for x in np.flatnonzero(route[:d, d])),
            route=tuple(int(x) for x in route[d, d + 1 :])))
    return tuple(levels), row


class _LevelwiseEncoder(nn.Module):
    """The level loop; a subclass says what a word contributes and how a node composes."""

    input_size: int
    hidden_size: int
    state_size: int  # columns of a state: H, or 2H for a Tree-LSTM's [h, c]

    def forward(self, batch: TreeBatch, embeddings: torch.Tensor) -> torch.Tensor:
        """Node states (num_nodes, H) in tree order; `embeddings` (num_words, E)."""
        self.check(batch)
        if embeddings.shape != (batch.num_words, self.input_size):
            want = (batch.num_words, self.input_size)
            raise SeqlabError(f"embeddings must be (num_words, input_size) = {want}, got "
                              f"{tuple(embeddings.shape)}")
        x_all = self.word_inputs(embeddings)  # (num_words + 1, ·); the last row: no word
        null = x_all.new_zeros(1, self.state_size)  # the null child
        outs: list[torch.Tensor] = []
        pieces: list[tuple[torch.Tensor, ...]] = []  # pieces[s][d - s - 1]: read by level d
        for d, lv in enumerate(batch.levels):
            pool = torch.cat([null, *(pieces[s][d - s - 1] for s in lv.sources)])  # (1 + m, S)
            # Skipping the gather on levels without words also skips its backward, a dense
            # (num_words + 1, ·) zero-fill.
            x = x_all[lv.words] if lv.has_words else None
            new = self.compose(x, pool[lv.children])  # (n, S) from (n, K, S)
            outs.append(new)
            pieces.append(new.split(lv.route))
        return torch.cat(outs)[batch.order, : self.hidden_size]

    def check(self, batch: TreeBatch) -> None:
        """Raise if this encoder cannot take the batch's trees."""

    def word_inputs(self, embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compose(self, x: torch.Tensor | None, kids: torch.Tensor) -> torch.Tensor:
        """States (n, S) of a level's nodes from their word inputs x (n, ·), None when no
        node has a word, and their children's states (n, K, S), zero on padded slots."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # as nn.LSTM
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def _require_binary(batch: TreeBatch, who: str) -> None:
    if not batch.binary:
        raise SeqlabError(f"{who} needs binary trees (0 or 2 children per node), got a node with "
                          f"{batch.max_children} children or a unary one; see "
                          "seqlab.data.trees.check_binary")


def _with_null_row(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(1, x.shape[1])])  # (W + 1, ·): nodes without a word get 0


class RecursiveNN(_LevelwiseEncoder):
    """Socher et al.'s plain recursive network on binary trees: h = tanh(W [h_l; h_r] + b);
    a leaf's state is its word vector, so the input size equals the hidden size."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.input_size = self.hidden_size = self.state_size = hidden_size
        self.weight = nn.Parameter(torch.empty(hidden_size, 2 * hidden_size))  # W (H, 2H)
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def check(self, batch: TreeBatch) -> None:
        _require_binary(batch, "RecursiveNN")
        if batch.internal_words:
            raise SeqlabError("RecursiveNN takes words on leaves only, got a word on a node "
                              "with children")

    def word_inputs(self, embeddings: torch.Tensor) -> torch.Tensor:
        return _with_null_row(embeddings)

    def compose(self, x: torch.Tensor | None, kids: torch.Tensor) -> torch.Tensor:
        if kids.shape[1] == 0:
            assert x is not None  # TreeBatch.build gives every leaf a word
            return x  # leaves: the word vector itself
        return torch.tanh(F.linear(kids.flatten(1), self.weight, self.bias))  # (n, 2H) -> (n, H)


class _TreeLSTM(_LevelwiseEncoder):
    """What both Tree-LSTMs share: a state is [h, c], and every word enters the gates through
    ``weight_x`` (4H, E) for the blocks i, o, u, f, in one GEMM for all words."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.state_size = 2 * hidden_size
        self.weight_x = nn.Parameter(torch.empty(4 * hidden_size, input_size))

    def word_inputs(self, embeddings: torch.Tensor) -> torch.Tensor:
        return _with_null_row(F.linear(embeddings, self.weight_x))


class ChildSumTreeLSTM(_TreeLSTM):
    """Tai et al.'s child-sum Tree-LSTM: any number of children, a forget gate per child.

    Parameters (gate blocks i, o, u, f): ``weight_x`` (4H, E), ``weight_iou`` (3H, H) on the
    children's summed h, ``weight_f`` (H, H) on each child's h, ``bias`` (4H,)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.weight_iou = nn.Parameter(torch.empty(3 * H, H))
        self.weight_f = nn.Parameter(torch.empty(H, H))
        self.bias = nn.Parameter(torch.empty(4 * H))
        self.reset_parameters()

    def compose(self, x: torch.Tensor | None, kids: torch.Tensor) -> torch.Tensor:
        H = self.hidden_size
        h, c = kids.split(H, dim=-1)  # (n, K, H) each; padded slots are 0
        iou = F.linear(h.sum(1), self.weight_iou, self.bias[: 3 * H])  # (n, 3H)
        f = F.linear(h, self.weight_f, self.bias[3 * H :])  # (n, K, H): a gate per child
        if x is not None:
            iou, f = iou + x[:, : 3 * H], f + x[:, None, 3 * H :]
        i, o, u = iou.chunk(3, dim=-1)
        f = torch.sigmoid(f)
        c_new = torch.sigmoid(i) * torch.tanh(u) + (f * c).sum(1)  # (n, H)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c_new), c_new], dim=-1)


class BinaryTreeLSTM(_TreeLSTM):
    """Tai et al.'s N-ary Tree-LSTM with N = 2: separate weights for the left and right child.

    Parameters: ``weight_x`` (4H, E) for the blocks i, o, u, f; ``weight_h`` (5H, 2H) for
    i, o, u, f_l, f_r on [h_l; h_r]; ``bias`` (4H,), the forget bias shared by both children."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.weight_h = nn.Parameter(torch.empty(5 * H, 2 * H))
        self.bias = nn.Parameter(torch.empty(4 * H))
        self.reset_parameters()

    def check(self, batch: TreeBatch) -> None:
        _require_binary(batch, "BinaryTreeLSTM")

    def compose(self, x: torch.Tensor | None, kids: torch.Tensor) -> torch.Tensor:
        H = self.hidden_size
        pre = self.bias.expand(len(kids), -1) if x is None else x + self.bias  # (n, 4H): i, o, u, f
        if kids.shape[1] == 0:  # leaves: no children term, c = i * u
            i, o, u, _ = pre.chunk(4, dim=-1)
            c_new = torch.sigmoid(i) * torch.tanh(u)
        else:
            h, c = kids.split(H, dim=-1)  # (n, 2, H) each
            g = F.linear(h.flatten(1), self.weight_h)  # (n, 5H): i, o, u, f_l, f_r
            iou = pre[:, : 3 * H] + g[:, : 3 * H]
            f = torch.sigmoid(pre[:, None, 3 * H :] + g[:, 3 * H :].unflatten(1, (2, H)))
            i, o, u = iou.chunk(3, dim=-1)
            c_new = torch.sigmoid(i) * torch.tanh(u) + (f * c).sum(1)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c_new), c_new], dim=-1)
