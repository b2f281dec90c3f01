"""PTB trees and ListOps: parsing, round trips, one-line errors, the generator and the evaluator,
and the shared SST and ListOps files against the counts in their PROVENANCE.md."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import SHARED_DATA

from seqlab.data import listops
from seqlab.data.listops import Apply, ListOpsConfig, evaluate, generate, parse_expression, to_text
from seqlab.data.trees import (
    Tree,
    check_binary,
    is_binary,
    listops_tree,
    parse_tree,
    read_listops,
    read_trees,
)
from seqlab.errors import SeqlabError

SST = SHARED_DATA / "sst" / "trees"
LISTOPS_TEST = SHARED_DATA / "listops" / "test_d20s.tsv"


def random_tree(rng: random.Random, depth: int = 0) -> Tree:
    """Any shape: 1-3 children, unary chains included; labels 0-4."""
    if depth >= 4 or rng.random() < 0.35:
        return Tree(rng.randrange(5), rng.choice(["a", "b", "-LRB-", "8\u00a01\\/2", "é"]))
    kids = tuple(random_tree(rng, depth + 1) for _ in range(rng.randint(1, 3)))
    return Tree(rng.randrange(5), None, kids)


# --- PTB brackets -----------------------------------------------------------------------------
def test_parse_sst_example() -> None:
    t = parse_tree("(3 (2 It) (4 (2 's) (3 good)))")
    assert t == Tree(3, None, (Tree(2, "It"), Tree(4, None, (Tree(2, "'s"), Tree(3, "good")))))
    assert t.words() == ["It", "'s", "good"]
    assert [n.label for n in t.nodes()] == [2, 2, 3, 4, 3]  # post-order, root last
    assert t.height() == 2 and is_binary(t)


def test_no_break_space_stays_inside_a_word() -> None:
    # SST's "8 1/2" is written with U+00A0; only ASCII spaces and tabs separate tokens.
    t = parse_tree("(2 (2 8\u00a01\\/2) (2 x))")
    assert t.words() == ["8\u00a01\\/2", "x"]


def test_round_trip_random_trees() -> None:
    rng = random.Random(0)
    for _ in range(200):
        t = random_tree(rng)
        text = t.to_ptb()
        assert parse_tree(text) == t
        assert parse_tree(text).to_ptb() == text
    assert parse_tree(" \t(1   (2 a)\t(3 b) ) \n").to_ptb() == "(1 (2 a) (3 b))"


BAD = [
    ("(3 (2 It) (4 (2 's) (3 good))", "unbalanced tree: 1 bracket(s) not closed", 1),
    ("(3 (2 It)) (4 x)", "unbalanced tree: text after the tree's closing bracket", 12),
    ("(3 (2 a)))", "unbalanced tree: ')' closes no bracket", 10),
    ("((2 a) (2 b))", "malformed brackets: node without a label", 1),
    ("(3 (2 a) (", "malformed brackets: node without a label", 10),
    ("(3 (2 a) b)", "malformed brackets: word 'b' follows subtrees", 10),
    ("(3 a b)", "malformed brackets: word 'b' follows the word 'a'", 6),
    ("(3 a (2 b))", "malformed brackets: node has both the word 'a' and subtrees", 1),
    ("(3)", "malformed brackets: node with neither a word nor children", 1),
    ("a (2 b)", "malformed brackets: word 'a' outside any bracket", 1),
    ("(NP (2 b))", "node label must be an integer class, got 'NP'", 2),
]


@pytest.mark.parametrize(("text", "message", "column"), BAD)
def test_bad_input_is_one_line_naming_file_and_line(tmp_path: Path, text: str, message: str,
                                                    column: int) -> None:
    path = tmp_path / "trees.txt"
    path.write_text("(2 (2 fine) (2 tree))\n\n" + text + "\n(2 ok)\n", encoding="utf-8")
    with pytest.raises(SeqlabError) as err:
        read_trees(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == f"{path}:3: {message}" + msg[len(f"{path}:3: {message}"):]
    assert msg.endswith(f"(column {column})")


def test_binary_check_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("(2 (2 a) (2 b))\n(1 (2 a) (2 b) (3 c))\n", encoding="utf-8")
    assert not is_binary(read_trees(path)[1])
    with pytest.raises(SeqlabError, match=r"t\.txt:2: tree is not binary: .* 3 children"):
        read_trees(path, binary=True)
    with pytest.raises(SeqlabError, match="1 children"):
        check_binary(parse_tree("(2 (1 (2 a)))"))
    with pytest.raises(SeqlabError, match="does not exist"):
        read_trees(tmp_path / "missing.txt")


# --- ListOps: evaluator, text, generator --------------------------------------------------------
@pytest.mark.parametrize(("text", "value"), [
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("[MIN 3 [MAX 1 0 ] 8 ]", 1),
    ("[MED 2 5 ]", 3),  # median 3.5, integer part 3
    ("[MED 3 1 2 ]", 2),
    ("[MED 9 1 8 2 ]", 5),  # (2 + 8) / 2
    ("[SM 6 5 9 0 ]", 0),  # 20 mod 10
    ("[SM 9 9 ]", 8),
    ("[SM [MAX 3 4 ] [MIN 9 8 ] [MED 1 2 3 ] ]", 4),  # 4 + 8 + 2 = 14
    ("7", 7),
    ("( ( ( ( ( [SM 6 ) 5 ) 9 ) 0 ) ] )", 0),  # the official file's first two lines
    ("( ( ( ( ( [MIN 6 ) 3 ) 5 ) 0 ) ] )", 0),
])
def test_evaluator_hand_examples(text: str, value: int) -> None:
    assert evaluate(text) == value


@pytest.mark.parametrize(("text", "message"), [
    ("[MAX 1 ]", "needs at least 2 arguments, got 1"),
    ("[FOO 1 2 ]", "got '[FOO'"),
    ("[MAX 1 2 ] 3", "continues after its end"),
    ("[MAX 1 [MIN 2 3 ]", "1 operator(s) not closed"),
    ("1 ]", "continues after its end"),
    ("]", "closes no operator"),
    ("( )", "empty ListOps expression"),
])
def test_expression_errors(text: str, message: str) -> None:
    with pytest.raises(SeqlabError, match=r"^f\.tsv:4: ") as err:
        parse_expression(text, "f.tsv:4")
    assert message in str(err.value)


def test_official_format_round_trip() -> None:
    e = Apply("SM", (6, 5, 9, 0))
    assert to_text(e) == "( ( ( ( ( [SM 6 ) 5 ) 9 ) 0 ) ] )"
    assert to_text(e, parens=False) == "[SM 6 5 9 0 ]"
    nested = parse_expression("[MAX 2 9 [MIN 4 7 ] 0 ]")
    assert nested == Apply("MAX", (2, 9, Apply("MIN", (4, 7)), 0))
    assert parse_expression(to_text(nested)) == nested


def test_generator_is_deterministic_for_a_seed() -> None:
    a, b, c = generate(300, seed=7), generate(300, seed=7), generate(300, seed=8)
    assert a == b and a != c
    # Golden digest of the first 100 texts for seed 0: pins the draw order (random.Random), so
    # the same seed gives the same data on every machine and Python version.
    digest = hashlib.sha256("\n".join(to_text(e) for e in generate(100, 0)).encode())
    assert digest.hexdigest() == "9dcb0090c020cab0c7fbb68ff78099ae6f3548072e743b3c42e59e609ff2314e"


def _applications(e: listops.Expr) -> list[Apply]:
    return [e, *(a for x in e.args for a in _applications(x))] if isinstance(e, Apply) else []


def test_generator_follows_its_config(tmp_path: Path) -> None:
    cfg = ListOpsConfig(max_depth=4, max_args=3, value_p=0.6, max_tokens=60)
    exprs = generate(400, seed=1, config=cfg)
    texts = [to_text(e) for e in exprs]
    assert len(set(texts)) == 400  # distinct
    for e, text in zip(exprs, texts, strict=True):
        assert listops.depth(e) <= 4 and len(text.split()) <= 60
        assert all(2 <= len(a.args) <= 3 and a.op in listops.OPERATORS for a in _applications(e))
        assert parse_expression(text) == e
    # exclude: none of the held-out texts is drawn again by the same seed.
    held = set(texts[:50])
    assert held.isdisjoint(to_text(e) for e in generate(400, seed=1, config=cfg, exclude=held))
    listops.write_tsv(tmp_path / "g.tsv", exprs[:20])  # the official format, read back as trees
    assert [t.label for t in read_listops(tmp_path / "g.tsv")] == [evaluate(e) for e in exprs[:20]]


def test_generator_refuses_impossible_requests() -> None:
    with pytest.raises(SeqlabError, match="value_p"):
        ListOpsConfig(value_p=1.0)
    with pytest.raises(SeqlabError, match="no new expression"):
        generate(11, seed=0, config=ListOpsConfig(max_depth=1))  # only 10 digits exist


# --- ListOps as trees ---------------------------------------------------------------------------
def _gold(t: Tree) -> str:
    """The binary form written back with the file's parentheses."""
    return t.word or "" if t.is_leaf else f"( {_gold(t.children[0])} {_gold(t.children[1])} )"


def test_listops_tree_forms() -> None:
    e = parse_expression("[MAX 2 9 [MIN 4 7 ] 0 ]")
    nary = listops_tree(e)
    assert (nary.label, nary.word, [c.label for c in nary.children]) == (9, "[MAX", [2, 9, 4, 0])
    assert (nary.children[2].word, [c.word for c in nary.children[2].children]) == \
        ("[MIN", ["4", "7"])
    binary = listops_tree(e, binary=True)
    assert is_binary(binary) and _gold(binary) == to_text(e)  # the file's gold parse
    labelled = [(n.word, n.label) for n in binary.nodes() if n.label is not None]
    assert labelled == [("2", 2), ("9", 9), ("4", 4), ("7", 7), (None, 4), ("0", 0), (None, 9)]


def test_read_listops_checks_labels_and_parse(tmp_path: Path) -> None:
    path = tmp_path / "l.tsv"
    path.write_text("9\t( ( ( [MAX 2 ) 9 ) ] )\n3\t( ( ( [MIN 2 ) 9 ) ] )\n")
    with pytest.raises(SeqlabError, match=r"l\.tsv:2: label 3 disagrees with .* value 2"):
        read_listops(path)
    path.write_text("9\t( ( [MAX ( 2 9 ) ) ] )\n")
    with pytest.raises(SeqlabError, match=r"l\.tsv:1: the parentheses are not"):
        read_listops(path)
    path.write_text("9 [MAX 2 9 ]\n")
    with pytest.raises(SeqlabError, match=r"l\.tsv:1: expected 'label<TAB>expression'"):
        read_listops(path)


# --- the shared files ---------------------------------------------------------------------------
def _require(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent")


@pytest.mark.data
def test_sst_counts_match_provenance() -> None:
    _require(SST)
    # From ../shared/data/sst/PROVENANCE.md: trees, labelled nodes, leaves, root labels 0-4.
    # PROVENANCE counts 163,560 train leaves; the trees hold 163,563: three train words contain a
    # no-break space ("8 1/2" and "2 1/2"), which a \S+ count does not take as one token.
    expected = {"train": (8544, 318_582, 163_563, [1092, 2218, 1624, 2322, 1288]),
                "dev": (1101, 41_447, 21_274, [139, 289, 229, 279, 165]),
                "test": (2210, 82_600, 42_405, [279, 633, 389, 510, 399])}
    for split, (n_trees, n_nodes, n_leaves, roots) in expected.items():
        trees = read_trees(SST / f"{split}.txt")
        nodes = [n for t in trees for n in t.nodes()]
        assert (len(trees), len(nodes), sum(n.is_leaf for n in nodes)) == \
            (n_trees, n_nodes, n_leaves)
        assert Counter(t.label for t in trees) == dict(enumerate(roots))
        assert {n.label for n in nodes} == {0, 1, 2, 3, 4}
        assert {len(n.children) for n in nodes} == {0, 2}  # binary throughout
        if split == "train":
            first = trees[0]
            assert first.label == 3 and first.words()[:4] == ["The", "Rock", "is", "destined"]


@pytest.mark.data
def test_sst_file_round_trips() -> None:
    _require(SST)
    lines = (SST / "dev.txt").read_text(encoding="utf-8").splitlines()
    assert [parse_tree(x).to_ptb() for x in lines] == lines


@pytest.mark.data
def test_official_listops_labels_equal_the_evaluator() -> None:
    _require(LISTOPS_TEST)
    rows = [x.split("\t") for x in LISTOPS_TEST.read_text().splitlines()]
    assert len(rows) == 10_000
    values = [evaluate(text) for _, text in rows]
    assert values == [int(label) for label, _ in rows]  # 10,000 of 10,000
    # Label counts from PROVENANCE.md.
    assert Counter(values) == dict(enumerate([1127, 1038, 967, 978, 991, 969, 895, 930, 964,
                                              1141]))
    assert all(to_text(parse_expression(text)) == text for _, text in rows[:2000])


@pytest.mark.data
def test_official_listops_as_trees(tmp_path: Path) -> None:
    _require(LISTOPS_TEST)
    head = tmp_path / "head.tsv"
    head.write_text("".join(LISTOPS_TEST.read_text().splitlines(keepends=True)[:500]))
    nary, binary = read_listops(head), read_listops(head, binary=True)
    for a, b in zip(nary, binary, strict=True):
        assert a.label == b.label is not None and is_binary(b)
        assert [n.word for n in b.leaves()] == [w for w in _gold(b).split() if w not in "()"]
        assert all(n.label is not None for n in a.nodes())  # a value at every n-ary node


@pytest.mark.data
def test_generated_data_resembles_the_official_set() -> None:
    _require(LISTOPS_TEST)
    official = [parse_expression(x.split("\t")[1]) for x in
                LISTOPS_TEST.read_text().splitlines()[:3000]]
    ours = generate(3000, seed=0)

    def tv(key: object) -> float:  # total variation distance between the two histograms
        p, q = Counter(map(key, official)), Counter(map(key, ours))  # type: ignore[arg-type]
        return sum(abs(p[k] - q[k]) for k in p.keys() | q.keys()) / 2 / 3000

    assert tv(evaluate) < 0.05  # labels 0-9, roughly uniform with more 0s and 9s
    assert tv(lambda e: e.op if isinstance(e, Apply) else "digit") < 0.05  # root operator
