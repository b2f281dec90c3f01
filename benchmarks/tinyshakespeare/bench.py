"""tinyshakespeare: Kneser-Ney n-grams and an LSTM under a fixed CPU budget, plus a bare loop.

    .venv/bin/python -m benchmarks.tinyshakespeare.bench --minutes 10

Data: ../shared/data/tinyshakespeare/input.txt, split as nanoGPT does (first 90% train, last 10%
validation), char level. The LSTM trains through `seqlab.experiment.train` (the same path as
`seqlab train`) for a wall-clock budget; the n-grams train in seconds. In the same run, a bare
PyTorch loop (embedding -> nn.LSTM -> linear, AdamW, clipping: the same configuration, no
seqlab) is timed, and the toolkit's training tokens/s is reported as a ratio of it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import SHARED_DATA, check_quiet, markdown_table, write_results
from seqlab import models
from seqlab.data.corpus import DataConfig, prepare
from seqlab.experiment import Experiment, train
from seqlab.precision import resolve_precision
from seqlab.run import TrainConfig
from seqlab.sampling import SampleConfig, sample_text
from seqlab.scoring import evaluate

HERE = Path(__file__).parent
DATA = SHARED_DATA / "tinyshakespeare" / "input.txt"
LSTM = {"emb_dim": 64, "hidden": 512, "layers": 2, "dropout": 0.1}
NGRAM_ORDERS = (3, 5, 7, 9)


def train_config(minutes: float) -> TrainConfig:
    return TrainConfig(batch_size=64, seq_len=128, lr=3e-3, min_lr=1e-4, warmup_steps=100,
                       max_steps=1_000_000, max_minutes=minutes, eval_interval=250,
                       precision="auto", clip_norm=1.0, progress=False)


def data_config() -> DataConfig:
    return DataConfig(path=str(DATA), level="char", valid_fraction=0.1, test_fraction=0.0)


def bench_ngrams(work: Path) -> list[dict]:
    corpus = prepare(data_config(), work / "ngram-data")
    rows = []
    for order in NGRAM_ORDERS:
        m = models.build("ngram", corpus.vocab, {"order": order})
        t0 = time.perf_counter()
        m.fit(corpus.train)
        fit_s = time.perf_counter() - t0
        e = evaluate(m, corpus.valid)
        rows.append({"model": f"ngram-{order}", "valid_bits_per_char": e.bits_per_token,
                     "valid_nats_per_char": e.bits_per_token * math.log(2),
                     "train_seconds": fit_s, "tokens_per_sec": len(corpus.train) / fit_s,
                     "parameters": int(sum((c > 0).sum() for c in m.counts_))})
    return rows


def bench_lstm(work: Path, minutes: float) -> tuple[dict, object, object]:
    exp = Experiment(model_name="lstm", model=models.make_config("lstm", LSTM),
                     data=data_config(), train=train_config(minutes))
    t0 = time.perf_counter()
    model, corpus, scores = train(exp, work / "lstm")
    wall = time.perf_counter() - t0
    records = [json.loads(x) for x in (work / "lstm" / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_sec"] for r in records if r["kind"] == "train"][1:]  # skip warm-up
    valid = next(s for s in scores if s.split == "valid")
    steps = max(r["step"] for r in records if r["kind"] == "train")
    return {"model": "lstm 2x512", "valid_bits_per_char": valid.bits_per_token,
            "valid_nats_per_char": valid.bits_per_token * math.log(2), "train_seconds": wall,
            "tokens_per_sec": float(np.median(speeds)), "parameters": model.num_parameters(),
            "steps": steps, "curve": [(r["step"], r["bits_per_token"]) for r in records
                                      if r["kind"] == "eval"]}, model, corpus


def bench_bare_loop(seconds: float, vocab_size: int, data: np.ndarray) -> float:
    """The same model and optimizer in plain PyTorch, on random windows of the same data."""
    torch.manual_seed(0)
    cfg = train_config(1.0)
    emb = nn.Embedding(vocab_size, LSTM["emb_dim"])
    rnn = nn.LSTM(LSTM["emb_dim"], LSTM["hidden"], LSTM["layers"], batch_first=True,
                  dropout=LSTM["dropout"])
    drop, head = nn.Dropout(LSTM["dropout"]), nn.Linear(LSTM["hidden"], vocab_size)
    params = [p for m in (emb, rnn, head) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=0.0)
    rng = np.random.default_rng(0)
    B, T = cfg.batch_size, cfg.seq_len
    state = None
    bf16 = resolve_precision(cfg.precision) == "bf16"  # the same choice as the toolkit's run

    def step() -> None:
        nonlocal state
        idx = rng.integers(0, len(data) - T - 1, B)[:, None] + np.arange(T + 1)
        xy = torch.from_numpy(np.asarray(data[idx], dtype=np.int64))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, state = rnn(drop(emb(xy[:, :-1])), state)
            logits = head(drop(out))
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), xy[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * B * T / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="LSTM training budget")
    p.add_argument("--bare-seconds", type=float, default=60.0)
    p.add_argument("--work", type=Path, default=HERE / "_work" / time.strftime("%Y%m%d-%H%M%S"))
    args = p.parse_args()
    check_quiet()
    rows = bench_ngrams(args.work)
    lstm, model, corpus = bench_lstm(args.work, args.minutes)
    bare = bench_bare_loop(args.bare_seconds, len(model.vocab), corpus.train)
    lstm["bare_tokens_per_sec"] = bare
    lstm["speed_ratio"] = lstm["tokens_per_sec"] / bare
    lstm["precision"] = resolve_precision("auto")
    rows.append(lstm)
    cols = [("model", "model", "s"), ("valid_bits_per_char", "valid bits/char", ".3f"),
            ("valid_nats_per_char", "valid nats/char", ".3f"),
            ("train_seconds", "train s", ".1f"), ("tokens_per_sec", "train tok/s", ",.0f"),
            ("parameters", "parameters", ",d")]
    table = markdown_table(rows, cols)
    print(table)
    print(f"\nbare nn.LSTM loop: {bare:,.0f} tok/s; seqlab/bare = {lstm['speed_ratio']:.3f}")
    sample = "".join(next(iter(sample_text(model, SampleConfig(
        prompt="ROMEO:", length=300, temperature=0.8, seed=1)))))
    print("\n" + sample)
    write_results(HERE / "results.json", {
        "command": f"python -m benchmarks.tinyshakespeare.bench --minutes {args.minutes}",
        "lstm_config": LSTM, "train_config": vars(train_config(args.minutes)), "rows": rows,
        "bare_tokens_per_sec": bare, "speed_ratio": lstm["speed_ratio"], "sample": sample,
        "table": table})


if __name__ == "__main__":
    main()
