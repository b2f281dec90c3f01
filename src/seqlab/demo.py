"""The README's first command: an n-gram and a small LSTM on Python's documentation.

Both models train through `seqlab.leaderboard` on the same split of the built-in corpus (char level,
90/5/5); the demo prints the leaderboard of held-out bits per character, then a sample from each
model. It takes about four minutes on two cores, set-up included.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seqlab.data.corpus import DataConfig
from seqlab.experiment import load_run
from seqlab.leaderboard import compare, markdown, parse_specs
from seqlab.run import TrainConfig
from seqlab.sampling import SampleConfig, sample_text

SPECS = "ngram:order=6,lstm:emb_dim=64:hidden=256:layers=2"


def run_demo(minutes: float = 2.5, out: str | Path = "runs/demo") -> list[dict]:
    """Train both models (the LSTM for `minutes`), print the table and one sample from each."""
    train = TrainConfig(batch_size=32, seq_len=128, lr=3e-3, warmup_steps=50, max_steps=10**6,
                        max_minutes=minutes, eval_interval=500,
                        precision="auto")  # bf16 only where this CPU's kernels run it
    rows = compare(parse_specs(SPECS), DataConfig(), train, out)
    print("\nHeld-out bits per character on Python's documentation (built-in corpus):\n")
    print(markdown(rows))
    sample = SampleConfig(length=300, temperature=0.8, seed=1, prompt="The ")
    for row in rows:
        model, _ = load_run(row["run"])
        print(f"\n--- {row['model']}, temperature {sample.temperature} ---")
        for piece in next(iter(sample_text(model, sample))):
            sys.stdout.write(piece)
            sys.stdout.flush()
        print()
    return rows
