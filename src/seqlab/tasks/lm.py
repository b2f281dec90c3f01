"""The language-model task: predict the next token of a text.

Data is a text file (or the built-in corpus) tokenised to a memmapped id stream
(`seqlab.data.corpus`); batches are truncated-BPTT windows (`StreamBatcher`); the metric is bits
per token (`seqlab.scoring`), the same definition for every family; prediction continues a
prompt through the one sampler (`seqlab.sampling`). Its own CLI command is ``seqlab sample``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from seqlab.data.corpus import Corpus, encode_for_eval, prepare
from seqlab.data.corpus import DataConfig as TextConfig
from seqlab.data.stream import StreamBatcher
from seqlab.data.unknown import count_unknown, singleton_share, unknown_warning
from seqlab.data.vocab import LEVELS, Vocab
from seqlab.distributed import World
from seqlab.errors import SeqlabError
from seqlab.scoring import Evaluation, evaluate, validator
from seqlab.tasks.base import JsonVocabFile, Metrics


class LanguageModeling(JsonVocabFile, vocab=Vocab):
    """Next-token prediction on text (the `Task` protocol)."""

    name: ClassVar[str] = "lm"
    DataConfig: ClassVar[type] = TextConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "ngram": ("ngram", {}),
        "rnn": ("recurrent", {"cell": "rnn"}),
        "lstm": ("recurrent", {"cell": "lstm"}),
        "gru": ("recurrent", {"cell": "gru"}),
        "hmm": ("hmm", {}),
        "window": ("window", {}),
        "tcn": ("conv", {"kind": "tcn"}),
        "wavenet": ("conv", {"kind": "wavenet"}),
        "transformer": ("transformer", {}),
    }
    metric: ClassVar[str] = "bits_per_token"
    metrics: ClassVar[tuple[str, ...]] = ("bits_per_token", "bits_per_char")  # validation's
    mode: ClassVar[str] = "min"

    def prepare(self, cfg: TextConfig, workdir: Path, vocab: Vocab | None = None,
                model: Any = None) -> Corpus:
        return prepare(cfg, workdir, vocab=vocab)

    def describe_data(self, data: Corpus) -> str:
        return (f"{len(data.train):,} {data.vocab.level} tokens (vocabulary {len(data.vocab)})")

    def batches(self, data: Corpus, cfg: TextConfig, train: Any, world: World) -> StreamBatcher:
        return StreamBatcher(data.train, train.batch_size, train.seq_len, train.seed,
                             rank=world.rank, world=world.size)

    def estimator_inputs(self, data: Corpus) -> tuple[np.ndarray, list[int] | None, Any]:
        """``fit(X, lengths, valid=...)`` arguments for counting and EM models."""
        return data.train, None, data.valid

    def validate(self, model: Any, data: Corpus) -> Callable[[], Metrics] | None:
        return validator(model, data.valid)

    def evaluate(self, model: Any, split: np.ndarray, *, split_name: str, name: str
                 ) -> Evaluation:
        return evaluate(model, split, split=split_name, name=name)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> np.ndarray:
        return encode_for_eval(path, model.vocab, workdir)

    def unknown_warnings(self, vocab: Vocab, splits: dict[str, np.ndarray],
                         train: np.ndarray | None = None) -> list[str]:
        """A line when more than 5% of a split's tokens are ``<unk>`` (`seqlab.data.unknown`);
        `train`, when at hand, tells whether most words are seen once."""
        if vocab.unk_id is None:  # byte and bpe level: nothing is unknown
            return []
        rates = {name: (count_unknown(ids, vocab.unk_id), len(ids)) for name, ids in
                 splits.items()}
        line = unknown_warning(
            rates, vocab.level, lambda: None if train is None else singleton_share(train,
                                                                                   len(vocab)),
            levels=LEVELS)
        return [line] if line else []

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """One sampled continuation per prompt; `options` are `SampleConfig` keys."""
        from seqlab.config import from_dict
        from seqlab.sampling import SampleConfig, sample_text

        out = []
        for prompt in inputs:
            cfg = from_dict(SampleConfig, {**options, "prompt": prompt, "num_samples": 1},
                            prefix="sample.")
            out.append("".join(next(iter(sample_text(model, cfg)))))
        return out

    def add_commands(self, sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
        s = sub.add_parser("sample", help="generate text from a trained language model")
        s.add_argument("run", help="run folder or checkpoint file")
        s.add_argument("--prompt", help="text to continue")
        s.add_argument("--length", type=int, help="tokens per sample")
        s.add_argument("--temperature", type=float)
        s.add_argument("--top-k", type=int)
        s.add_argument("--top-p", type=float)
        s.add_argument("--greedy", action="store_true", default=None)
        s.add_argument("--num-samples", type=int)
        s.add_argument("--seed", type=int)
        s.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
        s.add_argument("overrides", nargs="*", metavar="sample.key=value",
                       help="dotted overrides of the sample section")
        return {"sample": cmd_sample}


def cmd_sample(args: argparse.Namespace) -> int:
    """``seqlab sample RUN``: stream samples to standard output."""
    from seqlab.config import apply_overrides, from_dict
    from seqlab.experiment import load_run
    from seqlab.protocol import LanguageModel
    from seqlab.sampling import SampleConfig, sample_text

    model, config = load_run(args.run, args.device)
    if not isinstance(model, LanguageModel):
        raise SeqlabError(f"{args.run}: expected a language model run, got a {model.family} "
                          "model; use the command for its task (e.g. seqlab translate)")
    raw = apply_overrides({"sample": dict(config.get("sample", {}))}, args.overrides)
    if set(raw) != {"sample"}:
        raise SeqlabError(f"sample accepts only sample.* overrides, got {sorted(raw)}")
    flags = {"length": args.length, "temperature": args.temperature, "top_k": args.top_k,
             "top_p": args.top_p, "greedy": args.greedy, "num_samples": args.num_samples,
             "seed": args.seed, "prompt": args.prompt}  # the prompt verbatim: no YAML parsing
    raw["sample"].update({k: v for k, v in flags.items() if v is not None})
    cfg = from_dict(SampleConfig, raw["sample"], prefix="sample.")
    for i, pieces in enumerate(sample_text(model, cfg)):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
