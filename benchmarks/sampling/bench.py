"""Sampling speed: chars/s of batch-1 and batched generation, fast stepper against the rest.

Untrained char LMs (vocabulary 65, embedding 64) of the issue's size, 2 x 512 LSTM, GRU and tanh
RNN, plus a WaveNet with queues (10 layers, 64 channels). Every method samples real tokens
(softmax + ``torch.multinomial`` with a seeded generator; one ``int()`` sync per token):

* ``nn.LSTM step``: the fused module on one column per token, oneDNN on (PERF-NOTES trap 2);
* ``protocol step``: ``model.step(token, state)`` (oneDNN off; the sampler's old path);
* ``hand loop``: a plain hand-written loop of the reference cells (`seqlab.nn.cells`), per step
  ``embed -> F.linear(x, W_ih) -> cell step -> head``, no preallocation;
* ``fast``: `seqlab.fast_sampling` (embedding folded into layer 1, [W_ih|W_hh] in one addmm,
  in-place buffers) through `seqlab.sampling.stream`, the CLI's path.

The bandwidth bound: the bytes of weights one fast step reads (layer-1 W_hh, the concatenated
later layers, the output layer) over the time of just those matrix-vector products (the same
weights, same threads, measured in the same run): the rate at which the weights stream from
cache. Methods are timed in interleaved repeats (the machine is shared); medians are reported.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.sampling.bench [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import check_quiet, markdown_table, write_results
from seqlab.data.vocab import Vocab
from seqlab.fast_sampling import sample_batch, stepper
from seqlab.models.conv import ConvLM
from seqlab.models.recurrent import RecurrentConfig, RecurrentLM
from seqlab.nn.cells import STEPS
from seqlab.nn.conv import ConvConfig
from seqlab.sampling import SampleConfig, stream

HERE = Path(__file__).parent
VOCAB = Vocab("char", ["<unk>", "\n", *[chr(c) for c in range(32, 95)]])  # 65 symbols


def build(cell: str, hidden: int) -> Any:
    torch.manual_seed(0)
    if cell == "wavenet":
        cfg = ConvConfig(kind="wavenet", levels=10, channels=64, skip_channels=64, emb_dim=64,
                         dropout=0.0)
        return ConvLM(cfg, VOCAB).eval()
    return RecurrentLM(RecurrentConfig(cell=cell, hidden=hidden, layers=2, emb_dim=64),
                       VOCAB).eval()


def draw(logits: torch.Tensor, gen: torch.Generator) -> int:
    return int(torch.multinomial(logits.float().softmax(-1), 1, generator=gen))


# --- batch-1 methods: each returns the seconds for n tokens ----------------------------------
def run_fast(lm: Any, n: int) -> float:
    cfg = SampleConfig(length=n, seed=0)
    t0 = time.perf_counter()
    for _ in stream(lm, [], cfg, torch.Generator().manual_seed(0)):
        pass
    return time.perf_counter() - t0


def run_protocol(lm: Any, n: int) -> float:
    gen = torch.Generator().manual_seed(0)
    logits, state = lm.prime([])
    t0 = time.perf_counter()
    for _ in range(n):
        logits, state = lm.step(draw(logits, gen), state)
    return time.perf_counter() - t0


def run_fused(lm: Any, n: int) -> float:
    """nn.LSTM/GRU/RNN on one column per token with oneDNN as the build has it."""
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        state = lm.initial_state(1)
        logits, state = lm(torch.tensor([[VOCAB.eos_id]]), state)
        t0 = time.perf_counter()
        for _ in range(n):
            logits, state = lm(torch.tensor([[draw(logits[0, -1], gen)]]), state)
    return time.perf_counter() - t0


def run_hand(lm: Any, n: int) -> float:
    """The plain hand-written loop over the reference cells."""
    gen = torch.Generator().manual_seed(0)
    c = lm.config
    ws = [layer.weights(0) for layer in lm.stack.layers]
    step = STEPS[c.cell]
    with torch.inference_mode():
        state = [tuple(s[i] for s in lm.initial_state(1)) for i in range(c.layers)]
        tok = VOCAB.eos_id
        t0 = time.perf_counter()
        for _ in range(n):
            x = lm.embed(torch.tensor([tok]))  # (1, E)
            for i, w in enumerate(ws):
                state[i], _ = step(F.linear(x, w.w_ih, w.b_ih), state[i], w)
                x = state[i][0]
            tok = draw(lm.head(x)[0], gen)
    return time.perf_counter() - t0


METHODS: dict[str, Callable[[Any, int], float]] = {
    "nn_step": run_fused, "protocol_step": run_protocol, "hand_loop": run_hand,
    "fast": run_fast}


def matvec_bound(lm: Any, n: int) -> dict[str, float]:
    """Time only the weight matrix-vector products of one fast step: the cache-bandwidth floor."""
    st = stepper(lm, 1)
    mats = [st.w_hh0, *st.w_cat, *st.w_ih, *st.w_hh, st.head_w]
    nbytes = sum(m.numel() * m.element_size() for m in mats)
    xs = [torch.randn(1, m.shape[1]) for m in mats]
    outs = [torch.empty(1, m.shape[0]) for m in mats]
    with torch.inference_mode():
        for _ in range(20):
            for m, x, o in zip(mats, xs, outs, strict=True):
                torch.mm(x, m.t(), out=o)
        t0 = time.perf_counter()
        for _ in range(n):
            for m, x, o in zip(mats, xs, outs, strict=True):
                torch.mm(x, m.t(), out=o)
        dt = (time.perf_counter() - t0) / n
    return {"weight_bytes_per_step": nbytes, "matvec_s": dt, "bandwidth_GBps": nbytes / dt / 1e9,
            "bound_chars_per_s": 1 / dt}


def batch1(cells: list[str], hidden: int, n: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for cell in cells:
        lm = build(cell, hidden)
        methods = {"protocol_step": run_protocol, "fast": run_fast}
        if cell != "wavenet":
            methods = {k: METHODS[k] for k in METHODS}
        times: dict[str, list[float]] = {k: [] for k in methods}
        bounds = []
        for f in methods.values():  # warm-up
            f(lm, 20)
        for _ in range(repeats):  # interleaved: each repeat times every method once
            for k, f in methods.items():
                times[k].append(f(lm, n))
            if cell != "wavenet":
                bounds.append(matvec_bound(lm, n))
        row: dict[str, Any] = {"model": cell if cell == "wavenet" else f"{cell} 2x{hidden}"}
        for k, ts in times.items():
            row[k] = n / statistics.median(ts)
        # Same-run ratios: per repeat, then the median.
        for k in methods:
            if k != "fast":
                row[f"fast_over_{k}"] = statistics.median(
                    b / a for a, b in zip(times["fast"], times[k], strict=True))
        if bounds:
            bound = statistics.median(b["bound_chars_per_s"] for b in bounds)
            row.update(weight_MB=bounds[0]["weight_bytes_per_step"] / 1e6,
                       bandwidth_GBps=statistics.median(b["bandwidth_GBps"] for b in bounds),
                       bound_chars_per_s=bound, share_of_bound=row["fast"] / bound)
        rows.append(row)
        print(row, flush=True)
    return rows


def batched(cells: list[str], hidden: int, n: int, batches: list[int], repeats: int
            ) -> list[dict[str, Any]]:
    """Per-sequence chars/s of `sample_batch` at each batch size, and the fused module's."""
    rows = []
    for cell in cells:
        lm = build(cell, hidden)
        for B in batches:
            prompts = [[2 + (b % 60)] for b in range(B)]
            sample_batch(lm, prompts, 10)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                sample_batch(lm, prompts, n)
                ts.append(time.perf_counter() - t0)
            per_seq = n / statistics.median(ts)
            rows.append({"model": cell if cell == "wavenet" else f"{cell} 2x{hidden}",
                         "batch": B, "per_sequence_chars_per_s": per_seq,
                         "total_chars_per_s": per_seq * B})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cells", default="lstm,gru,rnn,wavenet")
    p.add_argument("--batches", default="1,2,4,8,16,32,64")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    quiet = check_quiet()
    cells = args.cells.split(",")
    rows1 = batch1(cells, args.hidden, args.tokens, args.repeats)
    rowsb = batched(cells, args.hidden, args.tokens // 2, [int(b) for b in
                                                           args.batches.split(",")],
                    max(1, args.repeats // 2))
    print(markdown_table(rows1, [
        ("model", "model", ""), ("nn_step", "nn.* step", ",.0f"),
        ("protocol_step", "protocol step", ",.0f"), ("hand_loop", "hand loop", ",.0f"),
        ("fast", "fast", ",.0f"), ("fast_over_nn_step", "fast / nn.*", ".1f"),
        ("fast_over_hand_loop", "fast / hand", ".2f"), ("bandwidth_GBps", "GB/s", ".0f"),
        ("bound_chars_per_s", "bound", ",.0f"), ("share_of_bound", "share", ".2f")]))
    print(markdown_table(rowsb, [
        ("model", "model", ""), ("batch", "batch", "d"),
        ("per_sequence_chars_per_s", "chars/s per sequence", ",.0f"),
        ("total_chars_per_s", "chars/s total", ",.0f")]))
    write_results(Path(args.out), {"threads": args.threads, "tokens": args.tokens,
                                   "repeats": args.repeats, "quiet_at_start": quiet,
                                   "batch1": rows1, "batched": rowsb})


if __name__ == "__main__":
    main()
