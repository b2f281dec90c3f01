"""Toolkit vs bare loop, interleaved: the speed ratio on a shared, noisy machine.

    .venv/bin/python -m benchmarks.tinyshakespeare.ab --rounds 8

`bench.py` times the toolkit for 10 minutes and then the bare loop for one: when another
process takes a core in between, the ratio measures the neighbour, not seqlab. Here both run in
one process and alternate, two optimizer steps each per round, so load changes hit both alike;
the ratio is of the median step times. The toolkit side is the trainer's own step
(`Trainer._step`: batch, state, autocast, forward, backward, clip, update, accounting), the
bare side the same model and optimizer written directly in PyTorch (`bench.bench_bare_loop`'s).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import check_quiet, write_results
from benchmarks.tinyshakespeare.bench import LSTM, data_config, train_config
from seqlab import models
from seqlab.data.corpus import prepare
from seqlab.data.stream import StreamBatcher
from seqlab.distributed import resolve_device
from seqlab.precision import resolve_precision
from seqlab.run import Run
from seqlab.trainer import Progress, Trainer, _LossModule, _Window

HERE = Path(__file__).parent


def toolkit_step(data: np.ndarray, vocab) -> callable:  # type: ignore[valid-type]
    cfg = train_config(1.0)
    model = models.build("lstm", vocab, LSTM)
    trainer = Trainer(Run(train=cfg))
    trainer.device = resolve_device("cpu")
    trainer.precision = resolve_precision(cfg.precision)
    trainer.net, trainer.scaler = _LossModule(model, trainer.world, trainer.device), None
    opt, batches = model.configure_optimizer(cfg), StreamBatcher(data, cfg.batch_size,
                                                                 cfg.seq_len, 0)
    prog, window, state = Progress(), _Window(), [None]

    def step() -> None:
        state[0] = trainer._step(model, opt, batches, prog, state[0], window)
    return step


def bare_step(data: np.ndarray, vocab_size: int) -> callable:  # type: ignore[valid-type]
    cfg = train_config(1.0)
    bf16 = resolve_precision(cfg.precision) == "bf16"
    emb = nn.Embedding(vocab_size, LSTM["emb_dim"])
    rnn = nn.LSTM(LSTM["emb_dim"], LSTM["hidden"], LSTM["layers"], batch_first=True,
                  dropout=LSTM["dropout"])
    drop, head = nn.Dropout(LSTM["dropout"]), nn.Linear(LSTM["hidden"], vocab_size)
    params = [p for m in (emb, rnn, head) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    rng, B, T, state = np.random.default_rng(0), cfg.batch_size, cfg.seq_len, [None]

    def step() -> None:
        idx = rng.integers(0, len(data) - T - 1, B)[:, None] + np.arange(T + 1)
        xy = torch.from_numpy(np.asarray(data[idx], dtype=np.int64))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, s = rnn(drop(emb(xy[:, :-1])), state[0])
            logits = head(drop(out))
        state[0] = tuple(x.detach() for x in s)
        F.cross_entropy(logits.flatten(0, 1).float(), xy[:, 1:].flatten()).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--work", type=Path, default=HERE / "_work" / "ab")
    args = p.parse_args()
    quiet = check_quiet()
    corpus = prepare(data_config(), args.work / "data")
    torch.manual_seed(0)
    sides = {"seqlab": toolkit_step(corpus.train, corpus.vocab),
             "bare": bare_step(corpus.train, len(corpus.vocab))}
    times: dict[str, list[float]] = {k: [] for k in sides}
    for step in sides.values():  # warm-up
        step()
    for _ in range(args.rounds):
        for name, step in sides.items():
            t0 = time.perf_counter()
            step()
            step()
            times[name].append((time.perf_counter() - t0) / 2)
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratio = med["bare"] / med["seqlab"]
    tokens = 64 * 128
    print(f"seqlab {tokens / med['seqlab']:,.0f} tok/s, bare {tokens / med['bare']:,.0f} tok/s, "
          f"seqlab/bare = {ratio:.3f} (median of {args.rounds} interleaved rounds)")
    write_results(HERE / "ab.json", {"rounds": args.rounds, "quiet": quiet,
                                      "seconds_per_step": times, "median": med, "ratio": ratio,
                                      "precision": resolve_precision("auto")})


if __name__ == "__main__":
    main()
