"""Known entropy rate: text from random HMMs (K=8 states, M=16 symbols), four models on it.

    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.classical.entropy

Two random HMMs with known parameters: rows of the transition and emission matrices drawn from
Dirichlet(0.5) ("dense", seed 0, the model of tests/models/test_hmm.py::test_known_entropy_rate)
and from Dirichlet(0.1) ("sparse": more structure, a lower entropy rate). Each generates
200,000 training symbols, 20,000 validation symbols (model selection for the LSTM) and 100,000
held-out ones. On the held-out symbols, in bits/symbol: the true model (the forward algorithm
with the true parameters: the best any model can do, up to sampling noise), seqlab's
Baum-Welch fit (``hmm``, K = 8, 4 restarts), the Kneser-Ney n-gram at several orders, and a
small LSTM trained for a fixed budget (its best validation checkpoint). All four families go
through the same protocol and the same `seqlab.scoring`.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.classical.timing import RESULTS
from benchmarks.common import markdown_table, write_results
from seqlab import models
from seqlab.data.vocab import Vocab
from seqlab.models.hmm import CategoricalHMM
from seqlab.run import Run, TrainConfig
from seqlab.scoring import evaluate

K, M = 8, 16


def truth(alpha: float) -> CategoricalHMM:
    rng = np.random.default_rng(0)
    m = CategoricalHMM(K, n_features=M)
    m.startprob_ = rng.dirichlet(np.ones(K))
    m.transmat_ = rng.dirichlet(np.full(K, alpha), size=K)
    m.emissionprob_ = rng.dirichlet(np.full(M, alpha), size=K)
    return m


def row(source: str, name: str, bits: float, true_bits: float, seconds: float) -> dict:
    return {"source": source, "model": name, "bits": bits, "nats": bits * math.log(2),
            "gap_nats": (bits - true_bits) * math.log(2), "seconds": seconds}


def train_lstm(vocab: Vocab, train: np.ndarray, valid: np.ndarray, minutes: float, work: Path):
    """A small LSTM through the protocol; the run folder keeps its best validation weights."""
    lstm = models.build("lstm", vocab, {"hidden": 128, "layers": 1, "emb_dim": 32})
    cfg = TrainConfig(batch_size=32, seq_len=128, lr=3e-3, max_steps=100_000,
                      max_minutes=minutes, eval_interval=250, progress=False, threads=1)
    run = Run(train=cfg, dir=work)
    lstm.fit(train, valid=valid, run=run)
    return models.load(run.best_path)


def bench(source: str, alpha: float, minutes: float, work: Path) -> list[dict]:
    hmm = truth(alpha)
    train, _ = hmm.sample(200_000, random_state=1)
    test, _ = hmm.sample(100_000, random_state=2)
    valid, _ = hmm.sample(20_000, random_state=4)
    vocab = Vocab("char", ["<unk>", "\n", *"abcdefghijklmnop"])
    tr, va, te = train + 2, valid + 2, test + 2  # symbol s is the token "abc..."[s]
    true_bits = -hmm.score_steps(test).mean() / math.log(2)
    rows = [row(source, "true HMM (K=8)", true_bits, true_bits, 0.0)]
    t0 = time.perf_counter()
    em = models.build("hmm", vocab, {"n_states": K, "n_iter": 500, "n_init": 4, "tol": 1e-7})
    em.fit(tr, run=Run(train=TrainConfig(seed=3, max_steps=10_000, progress=False)))
    rows.append(row(source, "seqlab HMM, Baum-Welch (K=8, 4 restarts)",
                    evaluate(em, te).bits_per_token, true_bits, time.perf_counter() - t0))
    for order in (2, 3, 4, 6):
        t0 = time.perf_counter()
        ng = models.build("ngram", vocab, {"order": order}).fit(tr)
        rows.append(row(source, f"Kneser-Ney {order}-gram", evaluate(ng, te).bits_per_token,
                        true_bits, time.perf_counter() - t0))
    t0 = time.perf_counter()
    lstm = train_lstm(vocab, tr, va, minutes, work / source)
    rows.append(row(source, f"LSTM (1 x 128, {minutes:g} min, best valid)",
                    evaluate(lstm, te).bits_per_token, true_bits, time.perf_counter() - t0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lstm-minutes", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for source, alpha in (("dense", 0.5), ("sparse", 0.1))
                for r in bench(source, alpha, args.lstm_minutes, Path(tmp))]
    print(markdown_table(rows, [
        ("source", "HMM", "s"), ("model", "model", "s"), ("bits", "bits/symbol", ".4f"),
        ("nats", "nats/symbol", ".4f"), ("gap_nats", "- true, nats", "+.4f"),
        ("seconds", "train s", ".1f")]))
    write_results(RESULTS / "entropy.json", {"benchmark": "entropy", "K": K, "M": M,
                                             "train": 200_000, "test": 100_000, "rows": rows})


if __name__ == "__main__":
    main()
