"""Generators for the synthetic transduction tasks, written as TSV (source<TAB>target).

* reversal: Joey NMT's published reverse task (scripts/generate_reverse_task.py there):
  integers 0..49 (vocabulary 50), length uniform in 1..25 for training and 1..30 for dev and
  test, so a sixth of the test set is longer than anything seen in training. 50,000 training
  pairs, 1,000 dev and 1,000 test. The target is the source reversed.
* addition: two numbers of 1 to 4 digits, written as characters, ``"4821+77"`` -> ``"4898"``
  (char level on both sides: the model must carry digits right to left).

    python benchmarks/seq2seq/tasks.py OUT_DIR    # writes {reversal,addition}.{train,dev,test}.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seqlab.io import atomic_write


def reversal(n: int, max_len: int, seed: int, vocab: int = 50) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seq = [str(x) for x in rng.integers(0, vocab, rng.integers(1, max_len + 1))]
        out.append((" ".join(seq), " ".join(reversed(seq))))
    return out


def addition(n: int, max_digits: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = (int(rng.integers(0, 10 ** int(rng.integers(1, max_digits + 1))))
                for _ in range(2))
        out.append((f"{a}+{b}", str(a + b)))
    return out


def write_tsv(pairs: list[tuple[str, str]], path: Path) -> None:
    atomic_write(path, "".join(f"{s}\t{t}\n" for s, t in pairs))


def generate(out: Path) -> dict[str, dict[str, Path]]:
    """Write every split of every task under `out`; seeds are fixed, so files are identical."""
    splits = {
        "reversal": {"train": reversal(50_000, 25, seed=1), "dev": reversal(1_000, 30, seed=2),
                     "test": reversal(1_000, 30, seed=3)},
        "addition": {"train": addition(50_000, 4, seed=4), "dev": addition(1_000, 4, seed=5),
                     "test": addition(1_000, 4, seed=6)},
    }
    paths: dict[str, dict[str, Path]] = {}
    for task, parts in splits.items():
        for split, pairs in parts.items():
            path = out / f"{task}.{split}.tsv"
            write_tsv(pairs, path)
            paths.setdefault(task, {})[split] = path
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    generate(ap.parse_args().out)
