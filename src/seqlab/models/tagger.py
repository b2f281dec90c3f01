"""A sequence tagger: word and character features, a BiLSTM, and a CRF or softmax output.

The architecture of Lample, Ballesteros, Subramanian, Kawakami & Dyer 2016 ("Neural
architectures for named entity recognition"): each word is the concatenation of a word
embedding and a character-level summary of its spelling (the final states of a small BiLSTM over
its characters, or, as in Ma & Hovy 2016, a max-pooled character CNN); a bidirectional
`seqlab.nn.recurrent.RecurrentStack` reads the sentence; a linear layer gives emissions (B, T, K);
`seqlab.nn.crf.LinearChainCRF` scores whole tag sequences (``output="crf"``), with BIO/BIOES
constraints from the tag names when they follow a scheme, or each position is classified on its
own (``output="softmax"``, the ablation).

    batch = encode(sentences, vocab)            # seqlab.tasks.tagging: words, chars, lengths
    loss, _ = model.training_loss(batch, None)  # CRF NLL (mean over sentences) or cross-entropy
    paths = model.decode(batch)                 # Viterbi, or argmax per position
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.distributed import to_device
from seqlab.errors import SeqlabError
from seqlab.models.base import TorchModel
from seqlab.nn.crf import LinearChainCRF, bio_constraints
from seqlab.nn.recurrent import RecurrentStack, StackConfig
from seqlab.tasks.tagging import TagBatch, TagVocab


def _word_stack() -> StackConfig:
    return StackConfig(hidden=100, layers=1, bidirectional=True)  # Lample et al.: 100 per side


@dataclass
class TaggerConfig:
    """Sizes of the features, the word BiLSTM and the output layer."""

    word_dim: int = 100  # word embedding size
    char_encoder: Literal["lstm", "cnn", "none"] = "lstm"  # spelling features, or none
    char_dim: int = 25  # character embedding size
    char_hidden: int = 25  # char BiLSTM units per direction, or CNN filters
    char_kernel: int = 3  # CNN window (char_encoder=cnn)
    recurrent: StackConfig = field(default_factory=_word_stack)  # the word-level BiLSTM
    dropout: float = 0.33  # on the word features and on the BiLSTM's output (0.5 in Lample
    # et al.; 0.33 learned faster and scored higher on CoNLL-2000 and UD EWT: benchmarks/tagging)
    output: Literal["crf", "softmax"] = "crf"  # joint decoding, or one softmax per position

    def __post_init__(self) -> None:
        if min(self.word_dim, self.char_dim, self.char_hidden, self.char_kernel) < 1:
            raise SeqlabError("model.word_dim, char_dim, char_hidden and char_kernel must be "
                              f">= 1, got {self.word_dim}, {self.char_dim}, {self.char_hidden}, "
                              f"{self.char_kernel}")
        if not 0 <= self.dropout < 1:
            raise SeqlabError(f"model.dropout must be in [0, 1), got {self.dropout}")
        # The word stack always reads both ways; a partial override such as
        # model.recurrent.hidden=64 refines the preset's section and keeps that.
        if not self.recurrent.bidirectional:
            raise SeqlabError("model.recurrent.bidirectional must be true for the tagger (its "
                              "word BiLSTM reads both ways), got false")


class CharEncoder(nn.Module):
    """Characters of every word (N, L) -> one vector per word (N, out)."""

    def __init__(self, n_chars: int, cfg: TaggerConfig) -> None:
        super().__init__()
        self.kind = cfg.char_encoder
        self.embed = nn.Embedding(n_chars, cfg.char_dim, padding_idx=0)
        if self.kind == "lstm":
            self.rnn = RecurrentStack(cfg.char_dim, StackConfig(hidden=cfg.char_hidden, layers=1,
                                                                bidirectional=True))
        else:
            self.conv = nn.Conv1d(cfg.char_dim, cfg.char_hidden, cfg.char_kernel,
                                  padding=cfg.char_kernel // 2)
        self.hidden = cfg.char_hidden
        self.out = 2 * cfg.char_hidden if self.kind == "lstm" else cfg.char_hidden

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        lengths = (chars > 0).sum(1).clamp_min(1)  # (N,); padding words read one pad char
        x = self.embed(chars)  # (N, L, C)
        if self.kind == "lstm":
            h, _ = self.rnn(x, lengths=lengths)  # (N, L, 2H)
            H, rows = self.hidden, torch.arange(len(chars), device=chars.device)
            # forward half after the last char, backward half after reading back to the first
            return torch.cat([h[rows, lengths - 1, :H], h[:, 0, H:]], -1)  # (N, 2H)
        y = self.conv(x.transpose(1, 2))  # (N, F, L')
        y = y[:, :, : chars.shape[1]]  # an even kernel pads one step too many
        real = (torch.arange(chars.shape[1], device=chars.device) < lengths[:, None])
        return y.masked_fill(~real[:, None, :], float("-inf")).amax(2)  # (N, F)


class SequenceTagger(TorchModel):
    """``emissions(batch) -> (B, T, K)``; CRF or softmax on top (see the module docstring)."""

    family = "tagger"
    Config = TaggerConfig
    width = "recurrent.hidden"  # the key `compare --params` sizes
    vocab_type = TagVocab

    def __init__(self, config: TaggerConfig, vocab: TagVocab) -> None:
        super().__init__()
        if vocab is None:
            raise SeqlabError("a tagger needs the tagging vocabulary (words, chars, tags)")
        self.config, self.vocab = config, vocab
        self.words = nn.Embedding(len(vocab.words), config.word_dim, padding_idx=0)
        self.chars = CharEncoder(len(vocab.chars), config) if config.char_encoder != "none" \
            else None
        width = config.word_dim + (self.chars.out if self.chars is not None else 0)
        self.encoder = RecurrentStack(width, config.recurrent)
        self.drop = nn.Dropout(config.dropout)
        K = len(vocab.tags)
        self.proj = nn.Linear(self.encoder.output_size, K)
        self.crf = None
        if config.output == "crf":
            scheme = vocab.scheme
            allowed = bio_constraints(vocab.tags, scheme) if scheme != "none" else ()
            self.crf = LinearChainCRF(K, *allowed)

    def emissions(self, batch: TagBatch) -> torch.Tensor:
        """Per-position tag scores (B, T, K)."""
        x = self.words(batch.words)  # (B, T, E)
        if self.chars is not None:
            B, T, L = batch.chars.shape
            c = self.chars(batch.chars.reshape(B * T, L)).reshape(B, T, -1)  # (B, T, Ec)
            x = torch.cat([x, c], -1)
        h, _ = self.encoder(self.drop(x), lengths=batch.lengths)  # (B, T, 2H)
        return self.proj(self.drop(h))  # (B, T, K)

    def training_loss(self, batch: TagBatch, state: None) -> tuple[torch.Tensor, None]:
        e = self.emissions(batch)
        if self.crf is not None:
            return self.crf(e, batch.tags, lengths=batch.lengths, reduction="mean"), None
        return F.cross_entropy(e.flatten(0, 1), batch.tags.flatten(), ignore_index=-100), None

    # --- inference -------------------------------------------------------------------------
    def decode(self, batch: TagBatch) -> list[list[int]]:
        """The best tag ids of each sentence (a list of its length)."""
        batch = to_device(batch, self.device)  # encoded on the CPU
        with self._inference():
            e = self.emissions(batch)
            if self.crf is not None:
                return self.crf.viterbi(e, lengths=batch.lengths)[0]
            best = e.argmax(-1).tolist()  # (B, T)
        return [row[:n] for row, n in zip(best, batch.lengths.tolist(), strict=True)]

    def marginals(self, batch: TagBatch) -> torch.Tensor:
        """p(y_t = k | sentence) (B, T, K), zero on padding: forward-backward for the CRF,
        the softmax itself otherwise."""
        batch = to_device(batch, self.device)
        with self._inference():
            e = self.emissions(batch)
            if self.crf is not None:
                return self.crf.marginals(e, lengths=batch.lengths)
            T = e.shape[1]
            real = torch.arange(T, device=e.device) < batch.lengths[:, None]  # (B, T)
            return e.softmax(-1) * real[..., None]

    def nbest(self, batch: TagBatch, k: int) -> list[list[tuple[list[int], float]]]:
        """The k most probable tag sequences of each sentence with their log-probabilities,
        best first. The softmax tagger's positions are independent, so its k best are the
        k-best Viterbi over its log-probabilities with no transition scores."""
        batch = to_device(batch, self.device)
        with self._inference():
            e = self.emissions(batch)
            if self.crf is not None:
                crf, log_z = self.crf, self.crf.log_partition(e, lengths=batch.lengths)
            else:
                crf, e = LinearChainCRF(e.shape[2]).to(e.device), e.log_softmax(-1)
                log_z = e.new_zeros(e.shape[0])
            paths, scores = crf.nbest(e, k=k, lengths=batch.lengths)
            logp = (scores - log_z[:, None]).tolist()  # (B, k)
        return [list(zip(row, lp[: len(row)], strict=True)) for row, lp in zip(paths, logp,
                                                                                strict=True)]
