"""Incremental generation of WaveNet/TCN language models: per-layer queues against recomputing.

The reference is the obvious way to sample from a causal convolution: for every new token, run
the whole stack over the last `receptive_field` tokens and keep the last output. seqlab's
``ConvLM.step`` instead keeps each layer's last (k - 1) d inputs in a queue, so a token costs one
width-k convolution per layer; `seqlab.fast_sampling.ConvStepper` (what ``seqlab sample`` and
the server use) keeps the same queues as rings indexed by time, with one product per kernel tap
on preallocated buffers. All three give the same logits (checked here on every timed token);
the table gives tokens per second and the ratios, batch 1, one thread.

    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.conv_generation.bench
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import check_quiet, markdown_table, write_results
from seqlab.data.vocab import Vocab
from seqlab.fast_sampling import ConvStepper
from seqlab.models.conv import ConvLM
from seqlab.nn.conv import ConvConfig

HERE = Path(__file__).parent
CONFIGS = {
    "wavenet, 10 layers, k=2": {"kind": "wavenet", "levels": 10, "channels": 64,
                                "skip_channels": 64},
    "wavenet, 3 x 10 layers, k=2": {"kind": "wavenet", "levels": 10, "blocks": 3,
                                    "channels": 64, "skip_channels": 64},
    "tcn, 8 blocks, k=3": {"kind": "tcn", "levels": 8, "channels": 64},
}


def bench(name: str, cfg: dict, tokens: int) -> dict:
    torch.manual_seed(0)
    vocab = Vocab("char", ["<unk>", "\n", *[chr(c) for c in range(32, 95)]])
    lm = ConvLM(ConvConfig(**cfg, emb_dim=32, dropout=0.0), vocab).eval()
    rf = lm.receptive_field
    stream = torch.randint(2, len(vocab), (rf + tokens + 20,)).tolist()
    _, state = lm.prime(stream[:rf])  # warm up and fill the queues
    ring = ConvStepper(lm, 1)
    ring.load_state(state)
    fast, slow, rings, worst = 0.0, 0.0, 0.0, 0.0
    for i, tok in enumerate(stream[rf:rf + tokens]):
        t0 = time.perf_counter()
        logits, state = lm.step(tok, state)
        t1 = time.perf_counter()
        with torch.inference_mode():  # the reference: the whole receptive field, every token
            window = torch.tensor([stream[i + 1:rf + i + 1]])
            ref = lm(window)[0][0, -1]
        t2 = time.perf_counter()
        from_ring = ring.step(torch.tensor([tok]))[0]
        t3 = time.perf_counter()
        fast, slow, rings = fast + t1 - t0, slow + t2 - t1, rings + t3 - t2
        worst = max(worst, float((logits - ref).abs().max()), float((from_ring - ref).abs().max()))
    return {"model": name, "receptive_field": rf, "tokens": tokens,
            "queue_tokens_per_s": tokens / fast, "recompute_tokens_per_s": tokens / slow,
            "ring_tokens_per_s": tokens / rings, "speedup": slow / fast,
            "ring_over_queue": fast / rings, "max_abs_logit_difference": worst}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(1)
    quiet = check_quiet()
    rows = [bench(name, cfg, args.tokens) for name, cfg in CONFIGS.items()]
    table = markdown_table(rows, [
        ("model", "model", "s"), ("receptive_field", "receptive field", "d"),
        ("queue_tokens_per_s", "queues (tok/s)", ",.0f"),
        ("recompute_tokens_per_s", "recompute (tok/s)", ",.0f"),
        ("ring_tokens_per_s", "rings (tok/s)", ",.0f"), ("speedup", "queues / recompute", ".1f"),
        ("ring_over_queue", "rings / queues", ".1f"),
        ("max_abs_logit_difference", "max |logit diff|", ".1e")])
    print(table)
    write_results(HERE / "results.json", {"quiet_machine": quiet, "rows": rows})


if __name__ == "__main__":
    main()
