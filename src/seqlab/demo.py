"""The README's first command: an n-gram and a small LSTM on Python's documentation.

Both train on the same split of the built-in corpus; the demo prints held-out bits/char for
each, then a sample from each. Takes about three minutes on two cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seqlab.config import to_dict
from seqlab.data.corpus import DataConfig
from seqlab.experiment import Experiment, train
from seqlab.models import make_config
from seqlab.sampling import SampleConfig, sample_text
from seqlab.train import TrainConfig

DEMO_MODELS = {
    "ngram": {"order": 6},
    "lstm": {"emb_dim": 64, "hidden": 384, "layers": 2, "dropout": 0.1},
}


def run_demo(minutes: float = 2.5, out: str | Path = "runs/demo") -> list[dict]:
    out = Path(out)
    data = DataConfig()  # built-in corpus, char level, 90/5/5 split
    rows, trained = [], {}
    for name, overrides in DEMO_MODELS.items():
        exp = Experiment(
            model_name=name, model=make_config(name, overrides), data=data,
            train=TrainConfig(batch_size=32, seq_len=128, lr=3e-3, max_steps=100_000,
                              max_minutes=minutes, eval_interval=250, warmup_steps=50),
            sample=SampleConfig(length=300, temperature=0.8, seed=1),
        )
        model, _, scores = train(exp, out / name)
        test = next(e for e in scores if e.split == "test")
        params = model.num_parameters() if hasattr(model, "num_parameters") else None
        rows.append({"model": name, "test_bits_per_char": test.bits_per_token,
                     "tokens": test.tokens, "parameters": params, "config": to_dict(exp.model)})
        trained[name] = (model, exp.sample)
    _print_table(rows)
    for name, (model, cfg) in trained.items():
        print(f"\n--- sample from {name} (temperature {cfg.temperature}) ---")
        for pieces in sample_text(model, cfg):
            for piece in pieces:
                sys.stdout.write(piece)
                sys.stdout.flush()
        print()
    return rows


def _print_table(rows: list[dict]) -> None:
    print("\nHeld-out (test split) bits per character on Python's documentation:")
    print(f"{'model':<8} {'bits/char':>10} {'tokens':>8} {'parameters':>11}")
    for r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "-"
        print(f"{r['model']:<8} {r['test_bits_per_char']:>10.4f} {r['tokens']:>8,} {params:>11}")
