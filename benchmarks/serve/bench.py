"""Load on `seqlab serve`: concurrent streaming clients against a real uvicorn server.

    python -m benchmarks.serve.bench                       # trains a 2 x 512 LSTM first
    python -m benchmarks.serve.bench --run runs/my-lstm --clients 32 --seconds 60

The server runs in its own process (``seqlab serve RUN --port 0``), the clients in this one:
plain asyncio sockets speaking HTTP/1.1, each posting ``/generate`` (``max_tokens`` tokens,
its own seed) again and again and reading the event stream to its ``done`` event. Two phases
on the same server: one client (the batch-1 rate), then `--clients` clients for `--seconds`.
Reported: errors (non-200, or a stream without its ``done`` event), request latency p50/p99,
time to first token p50/p99, total tokens/s, the server's RSS growth from second 10 to the end,
and aggregate tokens/s at N clients over the single-client rate (what batching buys).
Writes ``results.json`` beside this file and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import check_quiet, markdown_table, write_results

HERE = Path(__file__).parent
TOKEN = re.compile(rb'data: \{"index": \d')


@dataclass
class Phase:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # request -> done event
    first_token: list[float] = field(default_factory=list)  # request -> first token
    tokens: int = 0
    errors: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (second, bytes)

    def row(self) -> dict[str, Any]:
        lat, ttft = sorted(self.latencies), sorted(self.first_token)
        early = [r for t, r in self.rss if t >= 10] or [r for _, r in self.rss]
        return {"clients": self.clients, "seconds": self.seconds,
                "requests": len(self.latencies), "errors": self.errors,
                "tokens": self.tokens, "tokens_per_s": self.tokens / self.seconds,
                "p50_ms": 1e3 * pct(lat, 50), "p99_ms": 1e3 * pct(lat, 99),
                "ttft_p50_ms": 1e3 * pct(ttft, 50), "ttft_p99_ms": 1e3 * pct(ttft, 99),
                "rss_start_mb": early[0] / 2**20 if early else None,
                "rss_end_mb": early[-1] / 2**20 if early else None,
                "rss_growth": early[-1] / early[0] - 1 if early else None}


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


async def one_request(port: int, body: bytes, phase: Phase) -> None:
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        phase.errors += 1
        return
    writer.write(b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    data, first = b"", None
    while chunk := await reader.read(65536):
        if first is None and TOKEN.search(data + chunk):
            first = time.perf_counter() - start
        data += chunk
    writer.close()
    ok = data.startswith(b"HTTP/1.1 200") and b"event: done" in data
    if not ok:
        phase.errors += 1
        return
    phase.latencies.append(time.perf_counter() - start)
    phase.first_token.append(first if first is not None else float("nan"))
    phase.tokens += len(TOKEN.findall(data))


async def client(port: int, phase: Phase, end: float, index: int, max_tokens: int,
                 stagger: float) -> None:
    # Clients start spread over one request's duration, as independent users would; started
    # together they would finish together and arrive in waves.
    await asyncio.sleep(index * stagger)
    n = 0
    while time.perf_counter() < end:
        body = json.dumps({"prompt": "The ", "max_tokens": max_tokens, "temperature": 1.0,
                           "seed": 1000 * index + n}).encode()
        await one_request(port, body, phase)
        n += 1


async def run_phase(port: int, pid: int, clients: int, seconds: float, max_tokens: int,
                    request_seconds: float = 0.0) -> Phase:
    import psutil

    phase, proc = Phase(clients, seconds), psutil.Process(pid)
    start = time.perf_counter()
    end = start + seconds

    async def sample_rss() -> None:
        while time.perf_counter() < end:
            phase.rss.append((time.perf_counter() - start, proc.memory_info().rss))
            await asyncio.sleep(1.0)

    stagger = request_seconds / clients
    await asyncio.gather(sample_rss(), *(client(port, phase, end, i, max_tokens, stagger)
                                         for i in range(clients)))
    phase.seconds = time.perf_counter() - start  # the last requests finish after `end`
    return phase


def train_run(out: Path, hidden: int, layers: int) -> Path:
    import seqlab

    seqlab.train("lstm", out=out, model={"hidden": hidden, "layers": layers, "emb_dim": 64},
                 train={"max_steps": 20, "eval_interval": 20, "progress": False,
                        "batch_size": 16, "seq_len": 64},
                 data_config={"valid_fraction": 0.01, "test_fraction": 0.01})
    return out


def model_ceiling(run: Path, clients: int, threads: int | None) -> dict[str, float]:
    """The model's own batching gain on this machine, measured in this run: tokens/s of the
    fused stepper alone (no server) at batch 1 and at batch `clients`, and at batch `clients`
    with plain ``addmm`` products instead of the weights packed once (what packing buys)."""
    import torch

    from seqlab.experiment import load_run
    from seqlab.fast_sampling import RecurrentStepper

    if threads:
        torch.set_num_threads(threads)
    model, _ = load_run(run)
    out = {}
    for name, B, packed in (("batch_1", 1, True), (f"batch_{clients}", clients, True),
                            (f"batch_{clients}_addmm", clients, False)):
        st, x = RecurrentStepper(model, B, packed=packed), torch.zeros(B, dtype=torch.long)
        for _ in range(20):
            st.step(x)
        n, t = 300, time.perf_counter()
        for _ in range(n):
            st.step(x)
        out[name] = B * n / (time.perf_counter() - t)
    out["ratio"] = out[f"batch_{clients}"] / out["batch_1"]
    out["ratio_addmm"] = out[f"batch_{clients}_addmm"] / out["batch_1"]
    return out


def start_server(run: Path, clients: int, threads: int | None
                 ) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "seqlab", "serve", str(run), "--port", "0",
           "--limit", f"max_streams={max(64, clients)}",
           *(["--threads", str(threads)] if threads else [])]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r":(\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
    return proc, int(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a trained LSTM run (default: train a small one)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--single-seconds", type=float, default=20.0)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, help="torch threads of the server")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()
    check_quiet()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train_run(Path(tmp) / "lstm", args.hidden,
                                                         args.layers)
        ceiling = model_ceiling(run, args.clients, args.threads)
        proc, port = start_server(run, args.clients, args.threads)
        try:
            asyncio.run(run_phase(port, proc.pid, 1, 3.0, args.max_tokens))  # warm-up
            single = asyncio.run(run_phase(port, proc.pid, 1, args.single_seconds,
                                           args.max_tokens))
            alone = single.row()["p50_ms"] / 1e3
            many = asyncio.run(run_phase(port, proc.pid, args.clients, args.seconds,
                                         args.max_tokens, alone * args.clients / 4))
        finally:
            proc.terminate()
            proc.wait(10)
    rows = [single.row(), many.row()]
    ratio = rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]
    table = markdown_table(rows, [
        ("clients", "clients", "d"), ("seconds", "s", ".0f"), ("requests", "requests", ","),
        ("errors", "errors", "d"), ("tokens_per_s", "tokens/s", ",.0f"),
        ("p50_ms", "latency p50 ms", ".0f"), ("p99_ms", "latency p99 ms", ".0f"),
        ("ttft_p50_ms", "first token p50 ms", ".1f"), ("ttft_p99_ms", "first token p99 ms", ".1f"),
        ("rss_growth", "RSS growth 10 s-end", "+.1%")])
    print(table)
    print(f"aggregate at {args.clients} clients / single client: {ratio:.1f}x; the model alone "
          f"(fused stepper, no server): {ceiling['batch_1']:,.0f} tokens/s at batch 1, "
          f"{ceiling[f'batch_{args.clients}']:,.0f} at batch {args.clients} "
          f"({ceiling['ratio']:.1f}x; with plain addmm "
          f"{ceiling[f'batch_{args.clients}_addmm']:,.0f}, {ceiling['ratio_addmm']:.1f}x)")
    write_results(Path(args.out), {
        "model": {"run": args.run, "hidden": args.hidden, "layers": args.layers,
                  "cell": "lstm"},
        "max_tokens": args.max_tokens, "rows": rows, "throughput_ratio": ratio,
        "model_alone_tokens_per_s": ceiling, "server_threads": args.threads,
        "rss_samples": {"single": single.rss, "many": many.rss}})


if __name__ == "__main__":
    main()
