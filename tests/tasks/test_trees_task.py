"""The tree task: PTB and ListOps trees through the generic pipeline and CLI, its metrics, its
batches, and a structure-sensitive problem on which the Tree-LSTM must beat the BiLSTM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab import models
from seqlab.cli import main
from seqlab.data import listops
from seqlab.data.trees import parse_tree
from seqlab.errors import SeqlabError
from seqlab.models.treenet import TreeVocab, leaf_sequences
from seqlab.tasks.base import BatchSource
from seqlab.tasks.trees import TreeBatcher, binary_accuracy, build_vocab, make_batch, to_polarity

TINY = ["train.batch_size=16", "train.progress=false", "train.eval_interval=10",
        "train.lr=1e-2", "model.hidden=12", "model.emb_dim=12"]
# Tiny sentiment trees in SST's form: binary, classes 0-4 at every node.
SST = ["(3 (2 a) (4 (3 good) (2 film)))", "(1 (2 a) (0 (1 bad) (2 film)))",
       "(2 (2 the) (2 film))", "(4 (4 great) (3 (2 the) (3 good)))",
       "(0 (1 bad) (0 (0 awful) (2 film)))"]


def run(*args: object) -> int:
    return main([str(a) for a in args])


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_listops_train_eval_predict_and_reload(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    assert run("train", "--model", "tree-lstm", "--out", out, "data.path=listops",
               "data.examples=200", "data.max_depth=3", "train.max_steps=20", *TINY) == 0
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    result = last_json(capsys.readouterr().out)
    assert result["model"] == "tree-lstm" and result["trees"] == 10  # 5% of 200
    assert 0 <= result["root_accuracy"] <= 1 and 0 <= result["node_accuracy"] <= 1
    assert result["binary_accuracy"] is None  # ListOps has 10 classes, not SST's 5
    model = models.load(out / "best.safetensors")
    assert model.family == "treenet" and model.num_classes == 10
    inputs = tmp_path / "in.txt"
    inputs.write_text("[MAX 2 9 [MIN 4 7 ] 0 ]\n3\t( ( ( [MIN 4 ) 7 ) ] )\n7\n",
                      encoding="utf-8")
    assert run("predict", out, "--input", inputs) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(x in listops.DIGITS for x in lines)


def test_sst_style_trees_with_every_encoder(tmp_path: Path, capsys) -> None:
    data = tmp_path / "sst.txt"
    data.write_text("\n".join(SST * 8) + "\n", encoding="utf-8")
    for name, extra in [("tree-rnn", []), ("tree-lstm", ["model.encoder=binary"]),
                        ("tree-bilstm", [])]:
        out = tmp_path / name
        assert run("train", "--model", name, "--data", data, "--out", out, "train.max_steps=4",
                   *TINY, *extra, "data.valid_fraction=0.25", "data.test_fraction=0.25") == 0
        capsys.readouterr()
        assert run("eval", out, "--json") == 0
        result = last_json(capsys.readouterr().out)
        assert 0 <= result["binary_accuracy"] <= 1 and result["trees"] == 10
        assert (result["node_accuracy"] is None) == (name == "tree-bilstm")
        assert run("predict", out, "--input", data) == 0
        assert set(capsys.readouterr().out.split()) <= set("01234")


def test_binary_accuracy_drops_neutral_roots_and_compares_polarity() -> None:
    gold = np.array([0, 1, 2, 3, 4, 4, -1])
    pred = np.array([1, 3, 0, 4, 2, 3, 0])
    # kept: gold 0 (pred 1: right), 1 (3: wrong), 3 (4: right), 4 (2: neutral, wrong), 4 (3)
    assert binary_accuracy(pred, gold) == pytest.approx(3 / 5)


def test_polarity_maps_labels_and_drops_neutral_roots() -> None:
    trees = [parse_tree(t) for t in SST]
    binary = to_polarity(trees, "sst.txt")
    assert [t.label for t in binary] == [1, 0, 1, 0]  # the neutral-root "the film" is left out
    assert [n.label for n in binary[0].nodes()] == [None, 1, None, 1, 1]  # a good film
    assert [n.label for n in trees[0].nodes()] == [2, 3, 2, 4, 3]  # the input is not changed
    with pytest.raises(SeqlabError, match=r"sst\.txt: data\.polarity expects SST.s labels 0\.\.4"):
        to_polarity([parse_tree("(7 (2 a) (3 b))")], "sst.txt")


def test_polarity_run_is_a_two_class_model_that_eval_reads_the_same_way(
        tmp_path: Path, capsys) -> None:
    data = tmp_path / "sst.txt"
    data.write_text("\n".join(SST * 8) + "\n", encoding="utf-8")
    out = tmp_path / "pol"
    assert run("train", "--model", "tree-lstm", "--data", data, "--out", out,
               "model.encoder=binary", "data.polarity=true", "train.max_steps=60", *TINY,
               "train.warmup_steps=0",
               "data.valid_fraction=0.25", "data.test_fraction=0.25") == 0
    model = models.load(out / "best.safetensors")
    assert model.num_classes == 2 and model.vocab.polarity
    capsys.readouterr()
    assert run("eval", out, "--data", data, "--json") == 0
    result = last_json(capsys.readouterr().out)
    assert result["trees"] == 32 and result["binary_accuracy"] is None  # 8 neutral roots out
    assert result["root_accuracy"] == 1.0  # 4 distinct sentences learned by heart
    assert run("predict", out, "--input", data) == 0
    assert capsys.readouterr().out.split() == ["1", "0", "1", "1", "0"] * 8


def test_malformed_tree_file_is_one_line_error_and_leaves_no_run(tmp_path: Path,
                                                                   capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{SST[0]}\n{SST[1]}\n(3 (2 a) (4 good)\n", encoding="utf-8")
    out = tmp_path / "run"
    assert run("train", "--model", "tree-lstm", "--data", bad, "--out", out, *TINY) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:3" in err and "unbalanced" in err
    assert not out.exists()
    # a binary encoder refuses a non-binary tree, naming its line
    bad.write_text(f"{SST[0]}\n(2 (2 a) (2 b) (2 c))\n", encoding="utf-8")
    assert run("train", "--model", "tree-rnn", "--data", bad, "--out", out, *TINY) == 2
    assert f"{bad}:2: tree is not binary" in capsys.readouterr().err and not out.exists()


def test_root_labels_and_leaf_sequences() -> None:
    trees = [parse_tree(SST[0]), parse_tree("(1 (0 x) (1 y))")]
    vocab = build_vocab(trees, classes=5)
    batch = make_batch(trees, vocab, labels="root")
    assert batch.labels.tolist() == [-1, -1, -1, -1, 3, -1, -1, 1]  # post-order, roots last
    ids, lengths = leaf_sequences(batch)
    words = [[vocab.words.tokens[i] for i in row[:n]] for row, n in zip(ids, lengths,
                                                                            strict=True)]
    assert words == [["a", "good", "film"], ["x", "y"]]
    assert vocab.token_id("unseen") == vocab.words.unk_id
    assert TreeVocab.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


def test_batcher_resumes_exactly_and_shards_the_global_batch() -> None:
    trees = [parse_tree(t) for t in SST * 3]
    vocab = build_vocab(trees, classes=5)
    source = TreeBatcher(trees, vocab, 4, seed=0)
    assert isinstance(source, BatchSource)
    source.next()
    position = source.state_dict()
    batch, _ = source.next()
    source.load_state_dict(position)
    again, _ = source.next()
    assert torch.equal(batch.tokens, again.tokens) and torch.equal(batch.labels, again.labels)
    ranks = [TreeBatcher(trees, vocab, 4, seed=0, rank=r, world=2) for r in (0, 1)]
    for r in ranks:
        r.load_state_dict(position)
    parts = [r.next()[0] for r in ranks]
    assert [r.batch_size for r in ranks] == [2, 2]
    assert sorted(torch.cat([p.labels[p.roots] for p in parts]).tolist()) == sorted(
        batch.labels[batch.roots].tolist())


def _min_max_listops(path: Path) -> Path:
    """Nested MIN/MAX over digits, depth <= 4: the value depends on the nesting."""
    cfg = listops.ListOpsConfig(max_depth=4, max_args=3, value_p=0.4)
    exprs = [e for e in listops.generate(6000, 1, cfg)
             if isinstance(e, listops.Apply) and not {"MED", "SM"} & set(
                 listops.to_text(e).replace("[", " ").split())]
    listops.write_tsv(path, exprs[:1000])
    return path


def test_tree_lstm_beats_the_bilstm_baseline_in_compare(tmp_path: Path, capsys) -> None:
    """Same data and steps; the Tree-LSTM reads the expression's structure (and is taught at
    every node), the BiLSTM reads its tokens. Measured: 0.95 against 0.81 on the test split."""
    data = _min_max_listops(tmp_path / "minmax.tsv")
    size = "hidden=32:emb_dim=16"
    assert run("compare", "--models", f"tree-bilstm:{size},tree-lstm:{size}", "--out",
               tmp_path / "c", "--max-steps", 200, "--json", "--data", data,
               "data.valid_fraction=0.15", "data.test_fraction=0.15", "train.batch_size=32",
               "train.seed=1", "train.eval_interval=50", "train.lr=1e-2",
               "train.progress=false") == 0
    rows = last_json(capsys.readouterr().out)["rows"]
    assert {r["metric"] for r in rows} == {"root_accuracy"}
    score = {r["model"].split(":")[0]: r["test_root_accuracy"] for r in rows}
    assert score["tree-lstm"] > 0.85 and score["tree-lstm"] > score["tree-bilstm"] + 0.05
    board = json.loads((tmp_path / "c" / "leaderboard.json").read_text())
    assert [r["model"].split(":")[0] for r in board["rows"]] == ["tree-lstm", "tree-bilstm"]
