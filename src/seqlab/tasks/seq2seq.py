"""The sequence-to-sequence task: map a source sequence to a target sequence.

Data is pairs (TSV, SCAN or parallel files; `seqlab.seq2seq.data`), batched by length
(`PairBatcher`); validation reports teacher-forced bits per token, token accuracy and greedy
exact match, which selects the best checkpoint; evaluation adds BLEU and chrF
(`seqlab.seq2seq.metrics`). Its own CLI command is ``seqlab translate``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from seqlab.data.unknown import count_unknown, singleton_share, unknown_warning
from seqlab.distributed import World, shard
from seqlab.errors import SeqlabError
from seqlab.seq2seq.data import (
    UNK_ID,
    PairBatcher,
    PairData,
    Pairs,
    PairVocab,
    decode,
    detokenize,
    encode,
    load_eval_pairs,
    prepare,
    tokenize,
)
from seqlab.seq2seq.data import DataConfig as PairConfig
from seqlab.seq2seq.metrics import Seq2SeqEvaluation, evaluate, validation_metrics
from seqlab.tasks.base import JsonVocabFile, Metrics


def _max_lens(model_cfg: Any) -> tuple[int, int]:
    return model_cfg.max_src_len, model_cfg.max_tgt_len


def _singletons(train: Pairs | None, field: str, size: int) -> float | None:
    """`singleton_share` of one side ("src" or "tgt") of the training pairs."""
    return None if train is None else singleton_share(getattr(train, field), size)


class Translation(JsonVocabFile, vocab=PairVocab):
    """Source-to-target sequence transduction (the `Task` protocol)."""

    name: ClassVar[str] = "seq2seq"
    DataConfig: ClassVar[type] = PairConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {"seq2seq": ("seq2seq", {})}
    metric: ClassVar[str] = "exact_match"
    metrics: ClassVar[tuple[str, ...]] = ("exact_match", "token_accuracy", "bits_per_token")
    mode: ClassVar[str] = "max"

    def prepare(self, cfg: PairConfig, workdir: Path, vocab: PairVocab | None = None,
                model: Any = None) -> PairData:
        """Read, check (against the model config's maximum lengths) and encode the pairs."""
        from seqlab.seq2seq.model import Seq2SeqConfig

        return prepare(cfg, _max_lens(model or Seq2SeqConfig()), vocab=vocab)

    def describe_data(self, data: PairData) -> str:
        return (f"{len(data.train):,} pairs (vocabularies {len(data.vocab.src)} / "
                f"{len(data.vocab.tgt)})")

    def batches(self, data: PairData, cfg: PairConfig, train: Any, world: World) -> Any:
        return shard(PairBatcher(data.train, train.batch_size, train.seed, cfg.bucket), world)

    def estimator_inputs(self, data: PairData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the seq2seq task trains torch models only")

    def validate(self, model: Any, data: PairData) -> Callable[[], Metrics] | None:
        if len(data.valid) == 0:
            return None
        return lambda: validation_metrics(model, data.valid)

    def evaluate(self, model: Any, split: Pairs, *, split_name: str, name: str
                 ) -> Seq2SeqEvaluation:
        return evaluate(model, split, split=split_name, name=name)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> Pairs:
        return load_eval_pairs(path, None, model.vocab, _max_lens(model.config))

    def unknown_warnings(self, vocab: PairVocab, splits: dict[str, Pairs],
                         train: Pairs | None = None) -> list[str]:
        """A line per side when more than 5% of a split's tokens on that side are ``<unk>``
        (`seqlab.data.unknown`); `train`, when at hand, tells whether most words are seen
        once."""
        lines = []
        for side, key, level, field in (("source ", "data.level", vocab.levels[0], "src"),
                                        ("target ", "data.tgt_level", vocab.levels[1], "tgt")):
            rates = {name: (count_unknown(getattr(p, field), UNK_ID), len(getattr(p, field)))
                     for name, p in splits.items()}
            shares = functools.partial(_singletons, train, field, len(getattr(vocab, field)))
            line = unknown_warning(rates, level, shares, levels=("char", "word"), side=side,
                                   key=key)
            lines += [line] if line else []
        return lines

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """The best translation of each source line; `options` are `DecodeConfig` keys."""
        from seqlab.config import from_dict, to_dict
        from seqlab.seq2seq.search import DecodeConfig

        cfg = from_dict(DecodeConfig, {**to_dict(model.config.decode), **options},
                        prefix="decode.")
        vocab = model.vocab
        ids = [encode(tokenize(line.strip(), vocab.src.level), vocab.src) for line in inputs]
        for i, s in enumerate(ids, 1):
            if len(s) == 0:
                raise SeqlabError(f"input {i}: expected a non-empty source, got an empty line")
        hyps = model.translate(ids, cfg)
        return [detokenize(decode(h[0].tokens, vocab.tgt), vocab.tgt.level) for h in hyps]

    def add_commands(self, sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
        from seqlab.seq2seq.cli import register

        return register(sub)
