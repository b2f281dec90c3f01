"""Training precision: ``train.precision`` is ``auto``, ``fp32`` or ``bf16``.

bf16 autocast roughly doubles matmul throughput on CPUs with AVX512-BF16 or AMX, but oneDNN
cannot build a bf16 LSTM without AVX-512 (e.g. AMD EPYC with AVX2 only, or any CPU under
``ONEDNN_MAX_CPU_ISA=AVX2``). So ``auto`` asks the machine once per process: a tiny fused
RNN/LSTM/GRU forward and backward plus a matmul under bf16 autocast. If they run, ``auto`` is
bf16; if not, fp32. An explicit ``bf16`` the machine cannot run is a one-line `SeqlabError`.
"""

from __future__ import annotations

import functools
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from seqlab.errors import SeqlabError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# CPU features that give oneDNN native bf16 kernels (Zen 4 / Cooper Lake; Sapphire Rapids).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Environment variables that cap what oneDNN and ATen dispatch to, whatever the CPU has.
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def resolve_precision(requested: str, device_type: str = "cpu") -> str:
    """``auto`` -> ``bf16`` or ``fp32`` by the probe; ``fp32`` as is; ``bf16`` if it runs.

    On a CUDA device ``auto`` is bf16 where the GPU supports it and fp16 (with a gradient
    scaler, in the trainer) where it does not; fp16 is for GPUs only. On MPS ``auto`` is fp32.
    Raises `SeqlabError` (one line, naming the CPU flags and the kernel error) when ``bf16`` was
    asked for and the probe failed, and for a value that is not one of `PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise SeqlabError(f"train.precision must be one of {', '.join(PRECISIONS)}, "
                          f"got {requested!r}")
    if requested == "fp32":
        return "fp32"  # never probe: fp32 needs nothing from the CPU
    if device_type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "bf16" and not bf16:
            raise SeqlabError("train.precision=bf16 cannot run here: this GPU has no bf16; "
                              "use train.precision=auto (fp16 with loss scaling) or fp32")
        return ("bf16" if bf16 else "fp16") if requested == "auto" else requested
    if requested == "fp16":
        raise SeqlabError(f"train.precision=fp16 is for CUDA GPUs (with loss scaling), got "
                          f"device type {device_type}; use auto, fp32 or bf16")
    if device_type == "mps":
        return "fp32" if requested == "auto" else requested
    failure = bf16_failure()
    if failure is None:
        return "bf16"
    if requested == "auto":
        return "fp32"
    raise SeqlabError(f"train.precision=bf16 cannot run here: {failure}; "
                      "use train.precision=auto (bf16 where it runs) or fp32")


def autocast(precision: str, device_type: str = "cpu") -> AbstractContextManager[Any]:
    """Autocast to a resolved ``bf16`` or ``fp16`` on `device_type`; a no-op for ``fp32``."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type, dtype=dtype)
    return nullcontext()


@functools.cache
def bf16_failure() -> str | None:
    """None when the bf16 probe runs; else a one-line account of why not (cached per process:
    the ISA environment is read once by oneDNN, so the answer cannot change later)."""
    try:
        _probe()
    except RuntimeError as e:
        # oneDNN's first sentence names the primitive; the rest is a generic ONEDNN_VERBOSE hint.
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        return f"{_cpu_summary()}; the kernel said: {first.rstrip('.')[:200]}"
    return None


def _probe() -> None:
    # Own RNG stream: the probe must not shift a seeded run's weights or batches. Grad and
    # oneDNN forced on, so a caller under no_grad or with mkldnn off (batch-1 generation)
    # still probes the kernels that training uses.
    mkldnn = torch.backends.mkldnn
    was = mkldnn.enabled  # set by hand: mkldnn.flags() warns about TF32 on every call
    mkldnn.enabled = True  # type: ignore[assignment]  # torch types the flag as a ContextProp
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            _run_kernels()
    finally:
        mkldnn.enabled = was


def _run_kernels() -> None:
    """The kernels bf16 training uses: fused RNN/LSTM/GRU and a matmul, fwd + bwd."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, requires_grad=True)  # (B, T, I)
    for cls in (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU):
        rnn = cls(4, 8, batch_first=True)
        with autocast("bf16"):
            out, _ = rnn(x)  # (B, T, H)
        out.float().sum().backward()
    w = torch.randn(4, 4, requires_grad=True)
    with autocast("bf16"):
        y = x @ w  # (B, T, 4), bf16
    y.float().sum().backward()


def _cpu_summary() -> str:
    """What the machine offers: the bf16 CPU flags (from /proc/cpuinfo when readable) and any
    ISA caps set in the environment."""
    parts = []
    flags = _cpu_flags()
    if flags is None:
        parts.append("CPU flags unknown (no /proc/cpuinfo)")
    else:
        have = [f for f in BF16_FLAGS if f in flags]
        parts.append(f"the CPU has {' and '.join(have)}" if have
                     else f"the CPU lacks {' and '.join(BF16_FLAGS)}"
                     + (" (AVX2 only)" if "avx2" in flags and "avx512f" not in flags else ""))
    caps = [f"{k}={os.environ[k]}" for k in ISA_ENV if os.environ.get(k)]
    if caps:
        parts.append("capped by " + " ".join(caps))
    return ", ".join(parts)


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None
