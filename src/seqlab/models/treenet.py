"""Tree classifiers: a word embedding, a tree encoder (or a sequential baseline) and a linear
output per node.

Encoders (``model.encoder``), all from `seqlab.nn.tree` except the baseline:

* ``childsum``: Tai et al.'s child-sum Tree-LSTM, any number of children per node;
* ``binary``: Tai et al.'s binary (N = 2) N-ary Tree-LSTM, for binary trees (SST, the ListOps
  gold parse);
* ``recursive``: Socher et al.'s plain recursive network h = tanh(W [h_l; h_r] + b) (binary
  trees; a leaf's state is its word vector, so ``emb_dim == hidden``);
* ``bilstm``: the sequential baseline. A bidirectional LSTM reads each tree's leaves left to
  right and the root label is predicted from the two final states; it has no node outputs.

``forward(batch) -> (logits (n, C), nodes (n,))``: the logits and the tree-order indices of the
nodes they belong to (every node, or the roots for the baseline). The loss is cross-entropy over
the labelled ones among them; the batch says which nodes are labelled (the tree task masks all
but the roots when ``data.labels=root``).

References: Socher et al. (2013), "Recursive Deep Models for Semantic Compositionality Over a
Sentiment Treebank"; Tai, Socher & Manning (2015), "Improved Semantic Representations From
Tree-Structured Long Short-Term Memory Networks".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.models.base import TorchModel
from seqlab.nn.tree import BinaryTreeLSTM, ChildSumTreeLSTM, RecursiveNN, TreeBatch
from seqlab.protocol import State

ENCODERS = ("childsum", "binary", "recursive", "bilstm")


@dataclass
class TreeNetConfig:
    """The encoder and its sizes."""

    encoder: Literal["childsum", "binary", "recursive", "bilstm"] = "childsum"
    emb_dim: int = 64  # word vectors; must equal hidden for encoder=recursive
    hidden: int = 64  # node state size (per direction for bilstm)
    dropout: float = 0.0  # on word vectors and on states before the output layer
    classes: int = 0  # output classes; 0 takes the data's (stored in the vocabulary)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise SeqlabError(f"model.encoder: expected one of {', '.join(ENCODERS)}, got "
                              f"{self.encoder!r}")
        if min(self.emb_dim, self.hidden) < 1 or self.classes < 0:
            raise SeqlabError("model.emb_dim and model.hidden must be >= 1 and model.classes "
                              f">= 0, got {self.emb_dim}, {self.hidden}, {self.classes}")
        if not 0 <= self.dropout < 1:
            raise SeqlabError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.encoder == "recursive" and self.emb_dim != self.hidden:
            raise SeqlabError("model.encoder=recursive uses word vectors as leaf states, so "
                              f"model.emb_dim must equal model.hidden, got {self.emb_dim} and "
                              f"{self.hidden}")


@dataclass
class TreeVocab:
    """The words of the trees and the number of label classes; JSON
    ``{"words": {"level": "word", "tokens": [...]}, "classes": C}``, plus ``"polarity": true``
    for a model of SST's binary task, whose files keep their 5 classes (see
    `seqlab.tasks.trees.to_polarity`)."""

    words: Vocab
    classes: int
    polarity: bool = False  # the data's 5 sentiment classes are read as negative/positive

    def __len__(self) -> int:
        return len(self.words)

    def token_id(self, word: str) -> int:
        """The word's id; unseen words are ``<unk>``."""
        return self.words.index.get(word, self.words.unk_id or 0)

    def to_json(self) -> dict[str, Any]:
        obj = {"words": self.words.to_json(), "classes": self.classes}
        return {**obj, "polarity": True} if self.polarity else obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TreeVocab:
        if not isinstance(obj, dict) or not {"words", "classes"} <= set(obj) <= {
                "words", "classes", "polarity"}:
            raise SeqlabError(f"tree vocabulary JSON must have keys words and classes (and "
                              f"optionally polarity), got {obj!r:.80}")
        return cls(Vocab.from_json(obj["words"]), int(obj["classes"]),
                   bool(obj.get("polarity", False)))


def leaf_sequences(batch: TreeBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each tree's leaf token ids left to right, (num_trees, T) padded with 0, and the lengths
    (num_trees,). Leaves are the height-0 level; tree order is post-order, so a tree's leaves
    come in sentence order."""
    word_row = torch.cat([lv.words for lv in batch.levels])[batch.order]  # (num_nodes,)
    leaf = batch.order < len(batch.levels[0].words)  # level-order rows of height 0 come first
    ids = batch.tokens[word_row[leaf]]  # (num_leaves,)
    tree = batch.tree_index[leaf]
    lengths = torch.bincount(tree, minlength=batch.num_trees)  # (num_trees,)
    pos = torch.arange(len(ids), device=ids.device) - (lengths.cumsum(0) - lengths)[tree]
    out = ids.new_zeros(batch.num_trees, int(lengths.max()))
    out[tree, pos] = ids
    return out, lengths


class TreeNet(TorchModel):
    """Embedding -> tree encoder (or leaf BiLSTM) -> linear classes per node (or root)."""

    family = "treenet"
    Config = TreeNetConfig
    vocab_type = TreeVocab

    def __init__(self, config: TreeNetConfig, vocab: TreeVocab) -> None:
        nn.Module.__init__(self)
        self.config, self.vocab = config, vocab
        classes = config.classes or vocab.classes
        if classes < 2:
            raise SeqlabError(f"a tree classifier needs at least 2 classes, got {classes}")
        E, H = config.emb_dim, config.hidden
        self.embedding = nn.Embedding(len(vocab), E)
        self.encoder: nn.Module
        if config.encoder == "bilstm":
            self.encoder = nn.LSTM(E, H, batch_first=True, bidirectional=True)
        elif config.encoder == "childsum":
            self.encoder = ChildSumTreeLSTM(E, H)
        elif config.encoder == "binary":
            self.encoder = BinaryTreeLSTM(E, H)
        else:
            self.encoder = RecursiveNN(H)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(2 * H if config.encoder == "bilstm" else H, classes)

    @property
    def num_classes(self) -> int:
        return self.out.out_features

    @property
    def node_outputs(self) -> bool:
        """Whether every node gets logits (False: the roots only)."""
        return self.config.encoder != "bilstm"

    def forward(self, batch: TreeBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (n, C) and the tree-order nodes (n,) they are for."""
        if self.config.encoder == "bilstm":
            ids, lengths = leaf_sequences(batch)  # (B, T), (B,)
            x = self.drop(self.embedding(ids))  # (B, T, E)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            _, (h, _) = self.encoder(packed)  # h (2, B, H), in the batch's order
            states, nodes = torch.cat([h[0], h[1]], dim=-1), batch.roots  # (B, 2H)
        else:
            x = self.drop(self.embedding(batch.tokens))  # (num_words, E)
            states = self.encoder(batch, x)  # (num_nodes, H)
            nodes = torch.arange(batch.num_nodes, device=states.device)
        return self.out(self.drop(states)), nodes

    def training_loss(self, batch: TreeBatch, state: State) -> tuple[torch.Tensor, State]:
        logits, nodes = self(batch)  # (n, C), (n,)
        y = batch.labels[nodes]
        keep = y >= 0  # unlabelled nodes, and all but the roots under data.labels=root
        return F.cross_entropy(logits[keep].float(), y[keep]), state
