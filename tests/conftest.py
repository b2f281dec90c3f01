"""Shared fixtures. Tests are deterministic: every random source is seeded."""

from __future__ import annotations

import os

# A busy core makes multi-threaded torch spin (PERF-NOTES trap 1); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seqlab.data.vocab import Vocab

torch.set_num_threads(1)  # tiny models: one thread is fastest and avoids contention

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "data" in item.keywords and not SHARED_DATA.exists():
            item.add_marker(pytest.mark.skip(reason=f"{SHARED_DATA} is absent"))


def char_vocab(symbols: str) -> Vocab:
    """A char vocabulary: <unk>, newline, then `symbols` in order."""
    return Vocab("char", ["<unk>", "\n", *symbols])


def markov2_source(n_symbols: int = 8, alpha: float = 0.5, seed: int = 0
                   ) -> tuple[np.ndarray, float]:
    """A random order-2 Markov chain: transition tensor P[a, b, c] and its entropy rate (bits)."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(n_symbols, alpha), size=(n_symbols, n_symbols))  # (S, S, S)
    # Stationary distribution of the pair chain (a, b) -> (b, c).
    S = n_symbols
    T = np.zeros((S * S, S * S))
    for a in range(S):
        for b in range(S):
            T[a * S + b, b * S : (b + 1) * S] = P[a, b]
    pi = np.full(S * S, 1.0 / (S * S))
    for _ in range(10_000):
        pi = pi @ T
    H = -(P * np.log2(P)).sum(-1).reshape(-1)
    return P, float(pi @ H)


def sample_markov2(P: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    S = P.shape[0]
    out = np.empty(n, dtype=np.int64)
    out[:2] = rng.integers(S, size=2)
    u = rng.random(n)
    cdf = P.cumsum(-1)
    for t in range(2, n):
        out[t] = min(np.searchsorted(cdf[out[t - 2], out[t - 1]], u[t]), S - 1)
    return out


@pytest.fixture
def tiny_text(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.txt"
    p.write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 40, encoding="utf-8")
    return p


def stepped_log_probs(lm: Any, ids: Any) -> tuple[np.ndarray, torch.Tensor, Any]:
    """log p of each token of `ids` along the sampler's path: ``prime([])`` then ``step``.
    Returns the log-probabilities, the logits after the last token and the final state."""
    logits, state = lm.prime([])
    out = []
    for tok in ids:
        out.append(float(torch.log_softmax(logits.double(), -1)[tok]))
        logits, state = lm.step(int(tok), state)
    return np.array(out), logits, state
