"""Level-wise tree encoders: equal to a per-node recursion (values and gradients), gradcheck,
the batch layout, and the inputs each encoder refuses."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from seqlab.data import listops
from seqlab.data.trees import Tree, listops_tree, parse_tree
from seqlab.errors import SeqlabError
from seqlab.nn.tree import BinaryTreeLSTM, ChildSumTreeLSTM, RecursiveNN, TreeBatch

STEPS = 60
LISTOPS_IDS = {tok: 9 + i for i, tok in enumerate(listops.VOCAB)}
V = 9 + len(LISTOPS_IDS)  # random trees use the words w0..w8, ListOps trees its symbols


def token_id(word: str) -> int:
    return LISTOPS_IDS[word] if word in LISTOPS_IDS else int(word[1:])


def random_tree(rng: random.Random, binary: bool, depth: int = 0) -> Tree:
    """Varied shapes. Binary: 0 or 2 children. Otherwise 1-4 children (unary chains included)
    and sometimes a word on an internal node, as ListOps operators have."""
    word = f"w{rng.randrange(V)}"
    if depth >= 6 or rng.random() < 0.3 + 0.08 * depth:
        return Tree(rng.randrange(5), word)
    n = 2 if binary else rng.choice([1, 1, 2, 3, 4])
    kids = tuple(random_tree(rng, binary, depth + 1) for _ in range(n))
    return Tree(rng.randrange(5), None if binary or rng.random() < 0.5 else word, kids)


def chain(n: int) -> Tree:
    """n unary nodes above one leaf."""
    t = Tree(0, "w1")
    for k in range(n):
        t = Tree(k % 5, None, (t,))
    return t


def forest(binary: bool, n: int = 12, seed: int = 0) -> list[Tree]:
    rng = random.Random(seed)
    trees = [random_tree(rng, binary) for _ in range(n)] + [Tree(1, "w3")]  # and a lone leaf
    if not binary:
        trees += [chain(5), Tree(2, "w4", (chain(2), Tree(1, "w5"), chain(0), chain(3)))]
    return trees


# --- the per-node reference: Tai et al.'s equations, one node at a time -------------------------
def ref_recursive(m: RecursiveNN, tree: Tree, table: Tensor) -> list[Tensor]:
    out: list[Tensor] = []

    def node(t: Tree) -> Tensor:
        if t.is_leaf:
            h = table[token_id(t.word or "")]
        else:
            left, right = (node(c) for c in t.children)
            h = torch.tanh(m.weight @ torch.cat([left, right]) + m.bias)
        out.append(h)
        return h

    node(tree)
    return out  # post-order, as TreeBatch numbers nodes


def ref_child_sum(m: ChildSumTreeLSTM, tree: Tree, table: Tensor) -> list[Tensor]:
    H, E = m.hidden_size, m.input_size
    Wi, Wo, Wu, Wf = m.weight_x.split(H)
    Ui, Uo, Uu = m.weight_iou.split(H)
    bi, bo, bu, bf = m.bias.split(H)
    out: list[Tensor] = []

    def node(t: Tree) -> tuple[Tensor, Tensor]:
        kids = [node(c) for c in t.children]
        x = table[token_id(t.word)] if t.word is not None else table.new_zeros(E)
        h_sum = sum((h for h, _ in kids), table.new_zeros(H))
        i = torch.sigmoid(Wi @ x + Ui @ h_sum + bi)
        o = torch.sigmoid(Wo @ x + Uo @ h_sum + bo)
        u = torch.tanh(Wu @ x + Uu @ h_sum + bu)
        c = i * u
        for h_k, c_k in kids:
            c = c + torch.sigmoid(Wf @ x + m.weight_f @ h_k + bf) * c_k
        h = o * torch.tanh(c)
        out.append(h)
        return h, c

    node(tree)
    return out


def ref_binary(m: BinaryTreeLSTM, tree: Tree, table: Tensor) -> list[Tensor]:
    H = m.hidden_size
    Wi, Wo, Wu, Wf = m.weight_x.split(H)
    Ui, Uo, Uu, Ufl, Ufr = m.weight_h.split(H)
    bi, bo, bu, bf = m.bias.split(H)
    out: list[Tensor] = []

    def node(t: Tree) -> tuple[Tensor, Tensor]:
        zero = table.new_zeros(H)
        (hl, cl), (hr, cr) = [node(c) for c in t.children] or [(zero, zero), (zero, zero)]
        x = table[token_id(t.word)] if t.word is not None else table.new_zeros(m.input_size)
        hh = torch.cat([hl, hr])
        i = torch.sigmoid(Wi @ x + Ui @ hh + bi)
        o = torch.sigmoid(Wo @ x + Uo @ hh + bo)
        u = torch.tanh(Wu @ x + Uu @ hh + bu)
        fl = torch.sigmoid(Wf @ x + Ufl @ hh + bf)
        fr = torch.sigmoid(Wf @ x + Ufr @ hh + bf)
        c = i * u + fl * cl + fr * cr
        h = o * torch.tanh(c)
        out.append(h)
        return h, c

    node(tree)
    return out


CASES: dict[str, tuple[Callable[[int, int], torch.nn.Module], Callable, bool]] = {
    # name: (module from (E, H), per-node reference, binary trees only)
    "recursive": (lambda E, H: RecursiveNN(H), ref_recursive, True),  # E is H here
    "child_sum": (ChildSumTreeLSTM, ref_child_sum, False),
    "binary": (BinaryTreeLSTM, ref_binary, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_levelwise_equals_per_node_recursion_values_and_gradients(name: str) -> None:
    _check_against_reference(name, forest(CASES[name][2]))


@pytest.mark.parametrize("name", ["child_sum", "binary"])
def test_levelwise_equals_per_node_recursion_on_listops(name: str) -> None:
    """Deep trees: operators as internal words (n-ary) or the gold parse (binary, height ~30)."""
    cfg = listops.ListOpsConfig(max_depth=7, max_args=4, value_p=0.5, max_tokens=200)
    exprs = listops.generate(12, seed=2, config=cfg)
    trees = [listops_tree(e, binary=name == "binary") for e in exprs]
    assert max(t.height() for t in trees) >= (20 if name == "binary" else 5)
    _check_against_reference(name, trees)


def _check_against_reference(name: str, trees: list[Tree]) -> None:
    make, ref, _ = CASES[name]
    torch.manual_seed(0)
    m = make(4, 5).double()
    batch = TreeBatch.build(trees, token_id)
    table = torch.randn(V, m.input_size, dtype=torch.float64, requires_grad=True)

    states = m(batch, table[batch.tokens])  # (num_nodes, H)
    expected = torch.stack([h for t in trees for h in ref(m, t, table)])
    assert states.shape == (sum(len(t.nodes()) for t in trees), m.hidden_size)
    # float64 on both sides; only the summation order differs, so 1e-6 holds with a wide margin.
    torch.testing.assert_close(states, expected, atol=1e-10, rtol=1e-10)

    w = torch.randn_like(states)  # one scalar loss through both, every gradient compared
    params = [table, *m.parameters()]
    got = torch.autograd.grad((states * w).sum(), params)
    want = torch.autograd.grad((expected * w).sum(), params)
    for g, r in zip(got, want, strict=True):
        assert g.abs().sum() > 0  # every parameter takes part
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_do_not_depend_on_the_batch(name: str) -> None:
    """A tree's states are the same alone and among others (padding never leaks in)."""
    make, _, binary = CASES[name]
    torch.manual_seed(1)
    m = make(4, 5).double()
    trees = forest(binary, seed=3)
    table = torch.randn(V, m.input_size, dtype=torch.float64)
    batch = TreeBatch.build(trees, token_id)
    together = m(batch, table[batch.tokens])
    alone = []
    for t in trees:
        b = TreeBatch.build([t], token_id)
        alone.append(m(b, table[b.tokens]))
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-12, rtol=1e-12)


TINY = {
    True: ["(1 (2 w0) (3 (4 w1) (0 w2)))", "(2 w3)"],
    False: ["(1 (2 w0) (3 (4 w1) (0 w2) (1 (2 w2))))", "(2 w3)", "(3 (3 (3 w4)))"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_float64(name: str) -> None:
    make, _, binary = CASES[name]
    torch.manual_seed(2)
    m = make(3, 2).double()
    trees = [parse_tree(s) for s in TINY[binary]]
    if not binary:  # a word on an internal node too
        trees.append(Tree(1, "w5", (Tree(2, "w6"), Tree(0, "w7"))))
    batch = TreeBatch.build(trees, token_id)
    names = [n for n, _ in m.named_parameters()]

    def f(emb: Tensor, *params: Tensor) -> Tensor:
        return torch.func.functional_call(m, dict(zip(names, params, strict=True)), (batch, emb))

    emb = torch.randn(batch.num_words, m.input_size, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in m.parameters()]
    assert torch.autograd.gradcheck(f, (emb, *params), eps=1e-6, atol=1e-6)


# --- the batch layout ---------------------------------------------------------------------------
def test_batch_layout_matches_the_module_diagram() -> None:
    ids = {w: i for i, w in enumerate("abcde")}
    trees = [parse_tree("(1 (2 (3 a) (4 b)) (5 c))"), parse_tree("(6 (7 d) (8 e))")]
    b = TreeBatch.build(trees, ids.__getitem__)
    assert b.order.tolist() == [0, 1, 5, 4, 7, 2, 3, 6]
    assert [lv.children.tolist() for lv in b.levels] == [[[]] * 5, [[1, 2], [3, 4]], [[2, 1]]]
    assert [lv.words.tolist() for lv in b.levels] == [[0, 1, 3, 4, 2], [5, 5], [5]]
    assert [lv.sources for lv in b.levels] == [(), (0,), (0, 1)]
    assert [lv.route for lv in b.levels] == [(4, 1, 0), (1, 1), (1,)]
    assert [lv.has_words for lv in b.levels] == [True, False, False]
    assert b.tokens.tolist() == [0, 1, 2, 3, 4] and b.roots.tolist() == [4, 7]
    assert b.labels.tolist() == [3, 4, 2, 5, 1, 7, 8, 6]
    assert b.tree_index.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert (b.num_nodes, b.num_trees, b.max_children, b.binary) == (8, 2, 2, True)
    moved = b.to("cpu")
    assert torch.equal(moved.order, b.order) and moved.levels[2].sources == (0, 1)
    assert torch.equal(moved.levels[1].children, b.levels[1].children)
    idx, y = b.targets("root")
    assert idx.tolist() == [4, 7] and y.tolist() == [1, 6]
    assert b.targets("nodes")[1].tolist() == b.labels.tolist()


def test_padding_mask_and_unlabelled_nodes() -> None:
    t = Tree(None, "w0", (Tree(1, "w1"), Tree(None, None, (Tree(2, "w2"),)), Tree(3, "w3")))
    b = TreeBatch.build([t, Tree(4, "w4")], token_id)
    assert [lv.mask.tolist() for lv in b.levels] == [[[]] * 4, [[True]], [[True, True, True]]]
    assert not b.binary and b.internal_words and b.max_children == 3
    idx, y = b.targets("nodes")
    assert y.tolist() == [1, 2, 3, 4] and b.labels[idx].tolist() == [1, 2, 3, 4]
    assert b.targets("root")[1].tolist() == [4]  # tree 0's root is unlabelled


def test_tree_lstm_leaf_is_the_cell_with_zero_children() -> None:
    torch.manual_seed(3)
    m = BinaryTreeLSTM(3, 4)
    x = torch.randn(1, 3)
    h = m(TreeBatch.build([Tree(0, "w0")], token_id), x)[0]
    i, o, u, _ = (m.weight_x @ x[0] + m.bias).split(4)
    c = torch.sigmoid(i) * torch.tanh(u)
    torch.testing.assert_close(h, torch.sigmoid(o) * torch.tanh(c))


def test_refusals() -> None:
    ternary = TreeBatch.build([parse_tree("(1 (2 w0) (2 w1) (2 w2))")], token_id)
    emb3 = torch.zeros(3, 3)
    with pytest.raises(SeqlabError, match="BinaryTreeLSTM needs binary trees"):
        BinaryTreeLSTM(3, 2)(ternary, emb3)
    with pytest.raises(SeqlabError, match="RecursiveNN needs binary trees"):
        RecursiveNN(3)(TreeBatch.build([chain(2)], token_id), torch.zeros(1, 3))
    worded = TreeBatch.build([Tree(1, "w0", (Tree(2, "w1"), Tree(2, "w2")))], token_id)
    with pytest.raises(SeqlabError, match="words on leaves only"):
        RecursiveNN(3)(worded, emb3)
    ok = TreeBatch.build([parse_tree("(1 (2 w0) (2 w1))")], token_id)
    with pytest.raises(SeqlabError, match=r"embeddings must be .* = \(2, 4\), got \(2, 3\)"):
        ChildSumTreeLSTM(4, 2)(ok, torch.zeros(2, 3))
    with pytest.raises(SeqlabError, match="at least one tree"):
        TreeBatch.build([], token_id)
    with pytest.raises(SeqlabError, match="tree 1 of the batch has a leaf without a word"):
        TreeBatch.build([Tree(0, "w0"), Tree(1, None, (Tree(2),))], token_id)
    with pytest.raises(SeqlabError, match="'nodes' or 'root'"):
        ok.targets("leaves")  # type: ignore[arg-type]


def _count_leaves(t: Tree) -> Tree:
    """The same tree labelled with min(leaves below, 5) - 1: a target the cell must compose."""
    kids = tuple(_count_leaves(c) for c in t.children)
    return Tree(min(len(t.leaves()), 5) - 1, t.word, kids)


def test_a_tree_lstm_learns_to_count_leaves() -> None:
    """Training through the level loop: labels at every node, a known answer."""
    torch.manual_seed(4)
    trees = [_count_leaves(t) for t in forest(binary=True, n=60, seed=5)]
    batch = TreeBatch.build(trees, token_id)
    enc, emb, head = BinaryTreeLSTM(8, 16), torch.nn.Embedding(V, 8), torch.nn.Linear(16, 5)
    opt = torch.optim.Adam([*enc.parameters(), *emb.parameters(), *head.parameters()], lr=0.03)
    idx, y = batch.targets("nodes")
    for _ in range(STEPS):
        logits = head(enc(batch, emb(batch.tokens))[idx])
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert (logits.argmax(-1) == y).double().mean() > 0.95
