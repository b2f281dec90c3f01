"""The seq2seq task module (see `seqlab.models.TASKS`): what ``seqlab train`` and ``seqlab eval``
call for a model whose task is "seq2seq".

It uses the language models' machinery unchanged: `seqlab.experiment.open_run` (config.json,
--resume checks), `seqlab.run.Run` and the generic `seqlab.train.Trainer` (budgets, schedule,
best/last checkpoints, exact resume). The run folder holds ``vocab.json`` with both
vocabularies; checkpoints carry them too, so one file rebuilds the model.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from seqlab.config import from_dict
from seqlab.errors import SeqlabError
from seqlab.experiment import Experiment, build_seeded, load_run, open_run, score_best
from seqlab.seq2seq.data import DataConfig, PairData, PairVocab, load_eval_pairs, prepare
from seqlab.seq2seq.metrics import Seq2SeqEvaluation, evaluate
from seqlab.train import Callback

__all__ = ["DataConfig", "evaluate_run", "train"]


def _max_lens(model_cfg: Any) -> tuple[int, int]:
    return model_cfg.max_src_len, model_cfg.max_tgt_len


def train(exp: Experiment, out: str | Path, *, resume: bool = False,
          callbacks: list[Callback] | None = None, command: list[str] | None = None,
          log: Any = None) -> tuple[Any, PairData, list[Seq2SeqEvaluation]]:
    """Train `exp` into run folder `out`; return the best model, the data and final scores."""
    if not exp.data.path:  # before open_run, so a bad command leaves no run folder behind
        raise SeqlabError("data.path: expected a file of pairs (TSV, SCAN or parallel), got "
                          "none; pass --data")
    data = prepare(exp.data, _max_lens(exp.model), vocab=_stored_vocab(out, resume))
    run = open_run(exp, out, resume=resume, command=command)
    run.callbacks = list(callbacks or [])
    data.vocab.save(Path(out) / "vocab.json")
    model = build_seeded(exp, data.vocab)
    print(f"training {exp.model_name} on {len(data.train):,} pairs (vocabularies "
          f"{len(data.vocab.src)} / {len(data.vocab.tgt)}, {model.num_parameters():,} "
          f"parameters) into {out}", file=log or sys.stderr)
    model.fit(data.train, valid=data.valid, run=run, bucket=exp.data.bucket)
    best, scores = score_best(exp, run, data, evaluate)
    return best, data, scores


def _stored_vocab(out: str | Path, resume: bool) -> PairVocab | None:
    path = Path(out) / "vocab.json"
    return PairVocab.load(path) if resume and path.exists() else None


def evaluate_run(run_dir: str | Path, *, data: str | None = None, split: str = "test"
                 ) -> Seq2SeqEvaluation:
    """Score a trained run on a split of its own data, or on another file of pairs (`data`)."""
    model, config = load_run(run_dir)
    if getattr(model, "task", "lm") != "seq2seq":
        raise SeqlabError(f"{run_dir}: expected a seq2seq run, got a {model.family} model")
    if data is not None:
        pairs = load_eval_pairs(data, None, model.vocab, _max_lens(model.config))
        return evaluate(model, pairs, split=data)
    if not config:
        raise SeqlabError(f"{run_dir}: a bare checkpoint has no data of its own; pass --data")
    cfg = from_dict(DataConfig, config["data"], prefix="data.")
    pairs = prepare(cfg, _max_lens(model.config), vocab=model.vocab).split(split)
    if len(pairs) == 0:
        raise SeqlabError(f"{run_dir}: the {split} split is empty; pass --split or --data")
    return evaluate(model, pairs, split=split)
