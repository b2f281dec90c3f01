"""Sampling speed: chars/s of batch-1 and batched generation, fast stepper against the rest.

Untrained char LMs (vocabulary 65, embedding 64) of the issue's size, 2 x 512 LSTM, GRU and tanh
RNN, plus the conv stacks with queues: a WaveNet (10 layers, 64 channels) and a TCN (the
family's default: 6 blocks of kernel 3, 128 channels), and the raw-audio WaveNet with its
defaults (20 layers of 32 channels, 128 skip channels, 256 codes). Every method samples real tokens
(softmax + ``torch.multinomial`` with a seeded generator; one ``int()`` sync per token):

* ``nn.LSTM step``: the fused module on one column per token, oneDNN on (PERF-NOTES trap 2);
* ``protocol step``: ``model.step(token, state)`` (oneDNN off; the sampler's old path);
* ``hand loop``: a plain hand-written loop of the reference cells (`seqlab.nn.cells`), per step
  ``embed -> F.linear(x, W_ih) -> cell step -> head``, no preallocation;
* ``fast``: `seqlab.fast_sampling` (embedding folded into layer 1, [W_ih|W_hh] in one product,
  in-place buffers, weights packed once for MKL) through `seqlab.sampling.stream`, the CLI's
  path;
* ``fast, addmm``: the same stepper with plain ``addmm`` products (``packed=False``), which
  MKL repacks on every call: what packing the weights once buys;
* conv stacks: ``module step`` is the queues through the model's ``forward`` on one column
  (`fast_sampling.ModuleStepper`, the path before `ConvStepper`: ``torch.cat`` of each buffer
  and a strided ``conv1d`` per layer), ``fast`` the ring queues of `ConvStepper`.

The bandwidth bound: the bytes of weights one fast step reads (layer-1 W_hh, the concatenated
later layers, the output layer) over the time of just those matrix-vector products (the same
weights, same threads, measured in the same run, the faster of plain ``mm`` and the packed
products): the rate at which the weights stream from cache. Methods are timed in interleaved
repeats (the machine is shared); medians are reported.

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
from seqlab import models
from seqlab.data.vocab import Vocab
from seqlab.fast_sampling import ModuleStepper, RecurrentStepper, stepper
from seqlab.models.conv import ConvLM
from seqlab.models.recurrent import RecurrentConfig, RecurrentLM
from seqlab.nn.cells import STEPS
from seqlab.nn.conv import ConvConfig
from seqlab.sampling import SampleConfig, stream

HERE = Path(__file__).parent
CONV = ("wavenet", "tcn", "wavenet-audio")  # the conv stacks with queues
VOCAB = Vocab("char", ["<unk>", "\n", *[chr(c) for c in range(32, 95)]])  # 65 symbols


def build(cell: str, hidden: int) -> Any:
    torch.manual_seed(0)
    if cell == "wavenet":
        cfg = ConvConfig(kind="wavenet", levels=10, channels=64, skip_channels=64, emb_dim=64,
                         dropout=0.0)
        return ConvLM(cfg, VOCAB).eval()
    if cell == "tcn":
        return ConvLM(ConvConfig(kind="tcn", emb_dim=64, dropout=0.0), VOCAB).eval()
    if cell == "wavenet-audio":  # the raw-audio WaveNet's defaults: 20 layers, 256 codes
        return models.build("wavenet-audio", None).eval()
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


def run_fused(lm: Any, n: int, batch: int = 1) -> float:
    """nn.LSTM/GRU/RNN on one column per token with oneDNN as the build has it."""
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        state = lm.initial_state(batch)
        logits, state = lm(torch.full((batch, 1), VOCAB.eos_id), state)  # (B, 1, V)
        t0 = time.perf_counter()
        for _ in range(n):
            tok = draw_rows(logits[:, -1], gen)  # (B,)
            logits, state = lm(tok[:, None], state)
    return time.perf_counter() - t0


def run_hand(lm: Any, n: int, batch: int = 1) -> float:
    """The plain hand-written loop over the reference cells."""
    gen = torch.Generator().manual_seed(0)
    c = lm.config
    ws = [layer.weights(0) for layer in lm.stack.layers]
    step = STEPS[c.cell]
    with torch.inference_mode():
        state = [tuple(s[i] for s in lm.initial_state(batch)) for i in range(c.layers)]
        tok = torch.full((batch,), VOCAB.eos_id)
        t0 = time.perf_counter()
        for _ in range(n):
            x = lm.embed(tok)  # (B, E)
            for i, w in enumerate(ws):
                state[i], _ = step(F.linear(x, w.w_ih, w.b_ih), state[i], w)
                x = state[i][0]
            tok = draw_rows(lm.head(x), gen)
    return time.perf_counter() - t0


def run_fast_batch(lm: Any, n: int, batch: int, packed: bool = True) -> float:
    """The fused stepper on a (B,) batch (`sample_batch`'s loop; the stepper is built before
    the clock starts, as the server keeps its steppers)."""
    gen = torch.Generator().manual_seed(0)
    st = RecurrentStepper(lm, batch, packed=packed) if not packed else stepper(lm, batch)
    tok = torch.full((batch,), VOCAB.eos_id)
    t0 = time.perf_counter()
    for _ in range(n):
        tok = draw_rows(st.step(tok), gen)
    return time.perf_counter() - t0


def run_module(lm: Any, n: int, batch: int = 1) -> float:
    """A conv LM's queues through its ``forward`` on one column (`ModuleStepper`)."""
    gen = torch.Generator().manual_seed(0)
    st = ModuleStepper(lm, batch)
    tok = torch.full((batch,), VOCAB.eos_id)
    t0 = time.perf_counter()
    for _ in range(n):
        tok = draw_rows(st.step(tok), gen)
    return time.perf_counter() - t0


def draw_rows(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One token per row of (B, V) logits; at batch 1 one ``int()`` sync, as a sampler does."""
    tok = torch.multinomial(logits.float().softmax(-1), 1, generator=gen)[:, 0]
    if len(tok) == 1:
        return torch.tensor([int(tok)])
    return tok


def run_fast_addmm(lm: Any, n: int, batch: int = 1) -> float:
    return run_fast_batch(lm, n, batch, packed=False)


METHODS: dict[str, Callable[[Any, int], float]] = {
    "nn_step": run_fused, "protocol_step": run_protocol, "hand_loop": run_hand,
    "fast_addmm": run_fast_addmm, "fast": run_fast}


def matvec_bound(lm: Any, n: int) -> dict[str, float]:
    """Time only the weight matrix-vector products of one fast step: the cache-bandwidth floor."""
    st = stepper(lm, 1)
    assert isinstance(st, RecurrentStepper)
    prods = [st.hh0, *st.cat, *st.ih, *st.hh, st.head]
    nbytes = sum(p.w.numel() * p.w.element_size() for p in prods)
    xs = [torch.randn(1, p.w.shape[1]) for p in prods]
    outs = [torch.empty(1, p.w.shape[0]) for p in prods]

    def plain() -> None:
        for p, x, o in zip(prods, xs, outs, strict=True):
            torch.mm(x, p.w_t, out=o)

    def packed() -> None:
        for p, x, o in zip(prods, xs, outs, strict=True):
            p.into(x, o)

    dts = []
    with torch.inference_mode():
        for f in (plain, packed):
            for _ in range(20):
                f()
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            dts.append((time.perf_counter() - t0) / n)
    dt = min(dts)
    return {"weight_bytes_per_step": nbytes, "matvec_s": dt, "bandwidth_GBps": nbytes / dt / 1e9,
            "bound_chars_per_s": 1 / dt}


def batch1(cells: list[str], hidden: int, n: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for cell in cells:
        lm = build(cell, hidden)
        conv = cell in CONV
        methods = {"protocol_step": run_protocol, "module_step": run_module, "fast": run_fast}
        if not conv:
            methods = {k: METHODS[k] for k in METHODS}
        times: dict[str, list[float]] = {k: [] for k in methods}
        bounds = []
        for f in methods.values():  # warm-up
            f(lm, 20)
        for _ in range(repeats):  # interleaved: each repeat times every method once
            for k, f in methods.items():
                times[k].append(f(lm, n))
            if not conv:
                bounds.append(matvec_bound(lm, n))
        row: dict[str, Any] = {"model": cell if conv else f"{cell} 2x{hidden}"}
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


def flops_per_token(lm: Any) -> float:
    """Multiply-adds x 2 of one step of one sequence: every recurrent matrix and the head."""
    return 2.0 * sum(p.numel() for n, p in lm.named_parameters()
                     if p.dim() == 2 and not n.startswith("embed"))


def batched(cells: list[str], hidden: int, n: int, batches: list[int], repeats: int
            ) -> list[dict[str, Any]]:
    """Per-sequence chars/s at each batch size: `sample_batch` (fast) against the fused module
    and the hand loop on the same (B, .) batch, interleaved; total GFLOP/s of the fast path."""
    rows = []
    for cell in cells:
        lm = build(cell, hidden)
        conv = cell in CONV
        methods: dict[str, Callable[[Any, int, int], float]] = {"module_step": run_module,
                                                                "fast": run_fast_batch}
        if not conv:
            methods = {"nn_step": run_fused, "hand_loop": run_hand, "fast_addmm": run_fast_addmm,
                       "fast": run_fast_batch}
        for B in batches:
            for f in methods.values():
                f(lm, 5, B)
            times: dict[str, list[float]] = {k: [] for k in methods}
            for _ in range(repeats):
                for k, f in methods.items():
                    times[k].append(f(lm, n, B))
            row: dict[str, Any] = {"model": cell if conv else f"{cell} 2x{hidden}", "batch": B}
            for k, ts in times.items():
                row[f"{k}_per_seq"] = n / statistics.median(ts)
            row["total_chars_per_s"] = row["fast_per_seq"] * B
            for k in methods:
                if k != "fast":
                    row[f"fast_over_{k}"] = row["fast_per_seq"] / row[f"{k}_per_seq"]
            if not conv:
                row["gflops"] = row["total_chars_per_s"] * flops_per_token(lm) / 1e9
            rows.append(row)
            print(row, flush=True)
        first = next(r for r in rows if r["model"] == rows[-1]["model"])
        for r in rows:
            if r["model"] == first["model"]:
                r["per_seq_vs_batch1"] = r["fast_per_seq"] / first["fast_per_seq"]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cells", default="lstm,gru,rnn,wavenet,tcn")
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
        ("protocol_step", "protocol step", ",.0f"), ("module_step", "module step", ",.0f"),
        ("hand_loop", "hand loop", ",.0f"),
        ("fast_addmm", "fast, addmm", ",.0f"), ("fast", "fast", ",.0f"),
        ("fast_over_nn_step", "fast / nn.*", ".1f"), ("fast_over_hand_loop", "fast / hand", ".2f"),
        ("fast_over_module_step", "fast / module", ".1f"),
        ("fast_over_fast_addmm", "packed / addmm", ".2f"), ("bandwidth_GBps", "GB/s", ".0f"),
        ("bound_chars_per_s", "bound", ",.0f"), ("share_of_bound", "share", ".2f")]))
    print(markdown_table(rowsb, [
        ("model", "model", ""), ("batch", "batch", "d"),
        ("nn_step_per_seq", "nn.* per seq", ",.0f"), ("hand_loop_per_seq", "hand per seq", ",.0f"),
        ("module_step_per_seq", "module per seq", ",.0f"),
        ("fast_addmm_per_seq", "addmm per seq", ",.0f"), ("fast_per_seq", "fast per seq", ",.0f"),
        ("per_seq_vs_batch1", "fast vs batch 1", ".2f"),
        ("total_chars_per_s", "fast total", ",.0f"),
        ("fast_over_nn_step", "fast / nn.*", ".1f"), ("fast_over_hand_loop", "fast / hand", ".2f"),
        ("fast_over_module_step", "fast / module", ".1f"),
        ("fast_over_fast_addmm", "packed / addmm", ".2f"), ("gflops", "GFLOP/s", ".1f")]))
    write_results(Path(args.out), {"threads": args.threads, "tokens": args.tokens,
                                   "repeats": args.repeats, "quiet_at_start": quiet,
                                   "batch1": rows1, "batched": rowsb})


if __name__ == "__main__":
    main()
