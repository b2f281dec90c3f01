"""Tree classification: a label at every node, or only at the root, of PTB-bracketed trees.

Data (``data.path``):

* a file of PTB trees, one a line (the Stanford Sentiment Treebank: classes 0-4 at every node);
* a ListOps TSV (``label<TAB>expression``, the official format);
* ``listops`` (or ``generate``): ListOps drawn by the seeded generator (`seqlab.data.listops`),
  sized by ``data.examples``, ``data.max_depth``, ``data.max_args``, ``data.value_p``.

ListOps becomes n-ary trees (operator on the node, every node labelled with its value) for the
child-sum Tree-LSTM, and the binary gold parse for the binary encoders and the BiLSTM baseline,
whose leaves are then the expression's tokens in order (`seqlab.data.trees.listops_tree`).

    seqlab train --model tree-lstm --data sst/train.txt --valid sst/dev.txt --test sst/test.txt \
        model.encoder=binary --out runs/sst
    seqlab train --model tree-lstm --out runs/listops data.path=listops data.examples=20000
    seqlab eval runs/sst --json          # root, all-node and binary accuracy
    echo "(2 (2 a) (3 good) )" | seqlab predict runs/sst   # the root's class

Metrics: ``root_accuracy`` (selects the best checkpoint), ``node_accuracy`` over every labelled
node (None for the baseline, which labels roots only) and, for 5-class data (SST),
``binary_accuracy``: over the roots whose gold label is not neutral (2), the share whose
*5-way* prediction has the gold polarity (0-1 negative, 3-4 positive; a predicted 2 is wrong).
This scores the fine-grained model on the binary task. Tai et al. instead train a separate
2-class model on the non-neutral sentences: ``data.polarity=true`` (`to_polarity`), whose
``root_accuracy`` is then the binary accuracy as the papers define it. The run remembers it,
so ``seqlab eval RUN --data test.txt`` reads a 5-class file the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from seqlab.data import listops
from seqlab.data.splits import Cursor, SplitConfig, Splits
from seqlab.data.trees import Tree, check_binary, listops_tree, parse_tree, read_listops, read_trees
from seqlab.data.vocab import Vocab
from seqlab.distributed import World
from seqlab.errors import SeqlabError
from seqlab.models.treenet import TreeVocab
from seqlab.nn.tree import TreeBatch
from seqlab.scoring import ScoreRow
from seqlab.tasks.base import JsonVocabFile, Metrics

GENERATED = ("listops", "generate")  # data.path values that draw ListOps from the generator
EVAL_CHUNK = 256  # trees per forward pass when scoring


@dataclass
class TreeConfig(SplitConfig):
    """Trees from a PTB file, a ListOps TSV or the ListOps generator."""

    path: str = "listops"  # a trees file, a ListOps .tsv, or "listops" to generate
    format: Literal["auto", "ptb", "listops"] = "auto"  # auto: .tsv files are ListOps
    labels: Literal["nodes", "root"] = "nodes"  # train on every labelled node, or roots only
    polarity: bool = False  # SST's binary task: classes 0-1 -> 0, 3-4 -> 1, neutral unlabelled
    examples: int = 2000  # generated expressions (train, valid and test together)
    max_depth: int = 6  # generator: operators nest at most this deep
    max_args: int = 5  # generator: an operator takes 2..max_args arguments
    value_p: float = 0.25  # generator: probability that a node is an operator
    seed: int = 0  # generator seed

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in ("auto", "ptb", "listops"):
            raise SeqlabError(f"data.format: expected auto, ptb or listops, got {self.format!r}")
        if self.labels not in ("nodes", "root"):
            raise SeqlabError(f"data.labels: expected nodes or root, got {self.labels!r}")
        if self.examples < 10:
            raise SeqlabError(f"data.examples must be >= 10, got {self.examples}")
        self.generator()  # checks max_depth, max_args and value_p

    def generator(self) -> listops.ListOpsConfig:
        return listops.ListOpsConfig(self.max_depth, self.max_args, self.value_p)


TreeData = Splits[list[Tree]]


# --- reading -----------------------------------------------------------------------------------
def _binary_form(model: Any) -> bool:
    """Binary encoders and the leaf baseline take ListOps's gold binary parse."""
    return model is not None and getattr(model, "encoder", "childsum") != "childsum"


def _needs_binary(model: Any) -> bool:
    return model is not None and getattr(model, "encoder", "") in ("binary", "recursive")


def read(path: str, fmt: str, model: Any) -> list[Tree]:
    """Trees of a file, in the form the model's encoder takes; errors name ``file:line``."""
    if fmt == "listops" or (fmt == "auto" and path.endswith(".tsv")):
        return read_listops(path, binary=_binary_form(model))
    return read_trees(path, binary=_needs_binary(model))


def _generate(cfg: TreeConfig, model: Any) -> list[Tree]:
    exprs = listops.generate(cfg.examples, cfg.seed, cfg.generator())
    return [listops_tree(e, binary=_binary_form(model)) for e in exprs]


def to_polarity(trees: Sequence[Tree], where: str) -> list[Tree]:
    """SST's binary task as Tai et al. (2015) set it: every node's 5-way sentiment becomes its
    polarity (0-1 -> 0 negative, 3-4 -> 1 positive), neutral nodes (2) lose their label, and
    trees whose root is neutral are left out."""
    top = _max_label(trees)
    if top > 4:
        raise SeqlabError(f"{where}: data.polarity expects SST's labels 0..4, got label {top}")

    def relabel(node: Tree) -> Tree:  # SST trees are at most ~30 levels deep
        label = None if node.label in (None, 2) else int(node.label > 2)
        return replace(node, label=label, children=tuple(relabel(c) for c in node.children))

    return [relabel(t) for t in trees if t.label not in (None, 2)]


def _max_label(trees: Sequence[Tree]) -> int:
    return max((n.label for t in trees for n in t.nodes() if n.label is not None), default=-1)


def build_vocab(trees: Sequence[Tree], classes: int, min_count: int = 1,
                max_size: int | None = None) -> TreeVocab:
    """Every word of the training trees (internal nodes' too: ListOps operators)."""
    words = ([n.word for n in t.nodes() if n.word is not None] for t in trees)
    return TreeVocab(Vocab.build(words, "word", min_count=min_count, max_size=max_size), classes)


def _check_labels(trees: Sequence[Tree], classes: int, where: str) -> None:
    top = _max_label(trees)
    if top >= classes:
        raise SeqlabError(f"{where}: expected labels 0..{classes - 1} (the model's classes), "
                          f"got label {top}")


# --- batches -----------------------------------------------------------------------------------
def make_batch(trees: Sequence[Tree], vocab: TreeVocab, labels: str = "nodes") -> TreeBatch:
    """A level-wise batch; with ``labels="root"`` every other node's label is masked (-1)."""
    batch = TreeBatch.build(trees, vocab.token_id)
    if labels == "root":
        keep = torch.full_like(batch.labels, -1)
        keep[batch.roots] = batch.labels[batch.roots]
        batch = replace(batch, labels=keep)
    return batch


class TreeBatcher(Cursor):
    """Shuffled batches of whole trees; the position is (epoch, index).

    Under several processes each rank builds its own batch from trees rank, rank + N, ... of
    the global batch. `seqlab.distributed.shard` cannot do it: it slices the rows of a
    batch's tensors, and a level-wise tree batch is not a stack of rows."""

    def __init__(self, trees: list[Tree], vocab: TreeVocab, batch_size: int, seed: int,
                 labels: str = "nodes", rank: int = 0, world: int = 1) -> None:
        if len(trees) < batch_size:
            raise SeqlabError(f"expected at least train.batch_size = {batch_size} training "
                              f"trees, got {len(trees)}")
        if batch_size < world:
            raise SeqlabError(f"train.batch_size is the global batch and must be at least the "
                              f"{world} processes, got {batch_size}")
        self.trees, self.vocab, self.global_batch, self.seed = trees, vocab, batch_size, seed
        self.labels, self.part = labels, slice(rank, None, world)
        self._nodes = batch_size

    @property
    def batch_size(self) -> int:
        return len(range(self.global_batch)[self.part])

    def next(self) -> tuple[TreeBatch, bool]:
        start = self.take(self.global_batch, len(self.trees))
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.trees))
        chosen = order[start : start + self.global_batch][self.part]
        batch = make_batch([self.trees[i] for i in chosen], self.vocab, self.labels)
        self._nodes = batch.num_nodes
        return batch, True

    def tokens_per_batch(self) -> int:
        return self._nodes  # nodes of the last batch: the unit of work of a tree encoder


# --- scoring -----------------------------------------------------------------------------------
@dataclass
class TreeEvaluation(ScoreRow):
    model: str
    split: str
    trees: int
    nodes: int  # labelled nodes scored by node_accuracy
    root_accuracy: float  # share of roots labelled right
    node_accuracy: float | None  # share of labelled nodes right; None: the model labels roots
    binary_accuracy: float | None  # 5-class data: polarity right on non-neutral roots
    seconds: float

    def summary(self) -> str:
        parts = [f"root accuracy {self.root_accuracy:.2%}"]
        if self.node_accuracy is not None:
            parts.append(f"node accuracy {self.node_accuracy:.2%}")
        if self.binary_accuracy is not None:
            parts.append(f"binary accuracy {self.binary_accuracy:.2%}")
        return f"{self.model} on {self.split}: {', '.join(parts)}, {self.trees:,} trees"


@dataclass
class _Outputs:
    root_pred: np.ndarray  # (num_trees,) predicted root classes
    root_gold: np.ndarray  # (num_trees,) gold root classes, -1 unlabelled
    node_hits: int  # labelled nodes predicted right (tree encoders only)
    node_count: int


def _outputs(model: Any, trees: Sequence[Tree]) -> _Outputs:
    preds, golds, hits, count = [], [], 0, 0
    with model._inference():
        for s in range(0, len(trees), EVAL_CHUNK):
            batch = make_batch(trees[s : s + EVAL_CHUNK], model.vocab).to(model.device)
            logits, nodes = model(batch)  # (n, C), (n,)
            pred = logits.argmax(-1)
            if model.node_outputs:
                gold = batch.labels[nodes]
                hits += int((pred[gold >= 0] == gold[gold >= 0]).sum())
                count += int((gold >= 0).sum())
                pred = pred[batch.roots]
            preds.append(pred.cpu().numpy())
            golds.append(batch.labels[batch.roots].cpu().numpy())
    return _Outputs(np.concatenate(preds), np.concatenate(golds), hits, count)


def polarity(labels: np.ndarray) -> np.ndarray:
    """SST's 5 classes as -1 (0-1, negative), 0 (2, neutral), +1 (3-4, positive)."""
    return np.sign(labels - 2)


def binary_accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Share of non-neutral gold roots whose 5-way prediction has their polarity."""
    keep = (gold >= 0) & (gold != 2)
    return float((polarity(pred[keep]) == polarity(gold[keep])).mean()) if keep.any() else 0.0


def score(model: Any, trees: Sequence[Tree], split: str, name: str) -> TreeEvaluation:
    t0 = time.perf_counter()
    out = _outputs(model, trees)
    labelled = out.root_gold >= 0
    return TreeEvaluation(
        model=name, split=split, trees=len(trees), nodes=out.node_count,
        root_accuracy=float((out.root_pred == out.root_gold)[labelled].mean())
        if labelled.any() else 0.0,
        node_accuracy=out.node_hits / max(out.node_count, 1) if model.node_outputs else None,
        binary_accuracy=binary_accuracy(out.root_pred, out.root_gold)
        if model.num_classes == 5 else None,
        seconds=time.perf_counter() - t0)


def parse_input(line: str, model: Any, where: str) -> Tree:
    """One input for ``predict``: a PTB tree, or a ListOps expression (with or without the
    ``label<TAB>`` of the TSV format; the label is ignored). A PTB tree starts with a bracket
    and has no ``[``; everything else is read as ListOps."""
    text = line.split("\t")[-1]
    if "[" in text or not text.lstrip().startswith("("):
        return listops_tree(listops.parse_expression(text.strip(), where),
                            binary=_binary_form(model.config))
    tree = parse_tree(text, where)
    if _needs_binary(model.config):
        check_binary(tree, where)
    return tree


# --- the task ----------------------------------------------------------------------------------
class TreeTask(JsonVocabFile, vocab=TreeVocab):
    """Node and root classification of trees (the `Task` protocol)."""

    name: ClassVar[str] = "tree"
    DataConfig: ClassVar[type] = TreeConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "tree-lstm": ("treenet", {"encoder": "childsum", "emb_dim": 64, "hidden": 64}),
        "tree-rnn": ("treenet", {"encoder": "recursive", "emb_dim": 64, "hidden": 64}),
        "tree-bilstm": ("treenet", {"encoder": "bilstm", "emb_dim": 64, "hidden": 64}),
    }
    metric: ClassVar[str] = "root_accuracy"
    metrics: ClassVar[tuple[str, ...]] = ("root_accuracy",)
    mode: ClassVar[str] = "max"

    def prepare(self, cfg: TreeConfig, workdir: Path, vocab: TreeVocab | None = None,
                model: Any = None) -> TreeData:
        main = (_generate(cfg, model) if cfg.path in GENERATED
                else read(cfg.path, cfg.format, model))
        n_train, n_valid, _ = cfg.split_sizes(len(main))
        if n_train < 1:
            raise SeqlabError(f"{cfg.path}: expected training trees after the held-out splits, "
                              "got none")
        held = main[n_train:]
        valid = read(cfg.valid, cfg.format, model) if cfg.valid else held[:n_valid]
        test = read(cfg.test, cfg.format, model) if cfg.test else held[n_valid:]
        main = main[:n_train]
        if cfg.polarity:
            main, valid, test = (to_polarity(s, w or cfg.path) for s, w in (
                (main, cfg.path), (valid, cfg.valid), (test, cfg.test)))
        if vocab is None:
            classes = getattr(model, "classes", 0) or 1 + max(
                _max_label(s) for s in (main, valid, test))
            vocab = build_vocab(main, classes, cfg.min_count, cfg.max_vocab)
            vocab.polarity = cfg.polarity
        elif vocab.polarity != cfg.polarity:
            raise SeqlabError(f"data.polarity: the run was trained with {vocab.polarity}, got "
                              f"{cfg.polarity}")
        for split, where in ((main, cfg.path), (valid, cfg.valid), (test, cfg.test)):
            _check_labels(split, vocab.classes, where or cfg.path)
        return Splits(vocab, main, valid, test)

    def describe_data(self, data: TreeData) -> str:
        nodes = sum(len(t.nodes()) for t in data.train)
        return (f"{len(data.train):,} trees, {nodes:,} nodes (vocabulary {len(data.vocab)}, "
                f"{data.vocab.classes} classes)")

    def batches(self, data: TreeData, cfg: TreeConfig, train: Any, world: World) -> TreeBatcher:
        return TreeBatcher(data.train, data.vocab, train.batch_size, train.seed, cfg.labels,
                           rank=world.rank, world=world.size)

    def estimator_inputs(self, data: TreeData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the tree task trains torch models only")

    def validate(self, model: Any, data: TreeData) -> Callable[[], Metrics] | None:
        if not data.valid:
            return None
        return lambda: {"root_accuracy": score(model, data.valid, "valid", "").root_accuracy}

    def evaluate(self, model: Any, split: list[Tree], *, split_name: str, name: str
                 ) -> TreeEvaluation:
        return score(model, split, split_name, name)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> list[Tree]:
        trees = read(path, "auto", model.config)
        if model.vocab.polarity:
            trees = to_polarity(trees, path)
        _check_labels(trees, model.num_classes, path)
        return trees

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        trees = [parse_input(line, model, f"<input>:{n}") for n, line in enumerate(inputs, 1)
                 if line.strip()]
        if not trees:
            return []
        return [str(int(p)) for p in _outputs(model, trees).root_pred]

    def add_commands(self, sub: Any) -> dict[str, Callable[..., int]]:
        return {}
