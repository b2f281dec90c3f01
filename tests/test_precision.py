"""train.precision: ``auto`` follows a one-time bf16 probe, ``fp32`` always runs, and an
explicit ``bf16`` the machine cannot run is a one-line error.

The subprocess tests cap oneDNN and ATen at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2``), which makes oneDNN's bf16 LSTM unavailable on any x86-64 CPU: they
check the fallback and the error on every machine, with or without AVX-512. The caps are read
when oneDNN first runs, so they need a fresh process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqlab import precision
from seqlab.config import from_dict
from seqlab.errors import SeqlabError
from seqlab.precision import autocast, resolve_precision
from seqlab.run import TrainConfig

AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _seqlab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m seqlab.cli ARGS`` with the AVX2 caps, capturing stdout and stderr."""
    env = {**os.environ, **AVX2_ENV, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "seqlab.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


# --- in this process: whatever this CPU is ----------------------------------------------------
def test_auto_is_bf16_exactly_when_explicit_bf16_resolves() -> None:
    auto = resolve_precision("auto")
    assert auto in ("bf16", "fp32") and resolve_precision("auto") == auto  # cached: one answer
    if auto == "bf16":
        assert resolve_precision("bf16") == "bf16"
        return
    with pytest.raises(SeqlabError) as info:
        resolve_precision("bf16")
    msg = str(info.value)
    assert "\n" not in msg and "train.precision=auto" in msg and "fp32" in msg


def test_fp32_always_resolves_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe() -> str | None:
        raise AssertionError("fp32 must not run the bf16 probe")

    monkeypatch.setattr(precision, "bf16_failure", no_probe)
    assert resolve_precision("fp32") == "fp32"
    assert TrainConfig(precision="fp32").precision == "fp32"


def test_unknown_precision_names_the_choices() -> None:
    with pytest.raises(SeqlabError, match="auto, fp32, bf16, fp16"):
        resolve_precision("fp8")
    with pytest.raises(SeqlabError, match=r"train\.precision"):
        from_dict(TrainConfig, {"precision": "fp8"}, prefix="train.")


def test_fp16_is_for_gpus() -> None:
    with pytest.raises(SeqlabError, match="fp16 is for CUDA GPUs"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(SeqlabError, match="fp16 is for CUDA GPUs"):
        from_dict(TrainConfig, {"precision": "fp16", "device": "cpu"}, prefix="train.")


def test_unrunnable_bf16_is_one_line_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "the CPU lacks avx512_bf16 and amx_bf16; the kernel said: no LSTM primitive"
    monkeypatch.setattr(precision, "bf16_failure", lambda: reason)
    assert resolve_precision("auto") == "fp32"
    with pytest.raises(SeqlabError) as info:
        resolve_precision("bf16")
    msg = str(info.value)
    assert "\n" not in msg and reason in msg and "train.precision=auto" in msg
    with pytest.raises(SeqlabError, match="lacks avx512_bf16"):
        TrainConfig(precision="bf16")  # refused when the config is built, before any run folder


def test_probe_leaves_rng_grad_mode_and_onednn_flag_alone() -> None:
    precision.bf16_failure.cache_clear()  # run the probe again, here
    was = torch.backends.mkldnn.enabled
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    try:
        torch.backends.mkldnn.enabled = False  # as during batch-1 generation
        with torch.no_grad():
            under_no_grad = precision.bf16_failure()
        assert torch.backends.mkldnn.enabled is False
    finally:
        torch.backends.mkldnn.enabled = was
    assert torch.equal(torch.rand(3), expected)  # the probe drew from its own RNG stream
    precision.bf16_failure.cache_clear()
    assert precision.bf16_failure() == under_no_grad  # no_grad and mkldnn off change nothing


def test_cpu_summary_names_flags_and_isa_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx", "avx2", "fma"})
    for k in AVX2_ENV:
        monkeypatch.delenv(k, raising=False)
    assert precision._cpu_summary() == "the CPU lacks avx512_bf16 and amx_bf16 (AVX2 only)"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision._cpu_summary() == "the CPU has avx512_bf16, capped by ONEDNN_MAX_CPU_ISA=AVX2"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: None)
    assert precision._cpu_summary().startswith("CPU flags unknown")


def test_autocast_is_bf16_only_for_bf16() -> None:
    a = torch.ones(2, 2)
    with autocast("bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32"):
        assert (a @ a).dtype == torch.float32


# --- capped at AVX2, in fresh processes -------------------------------------------------------
def test_auto_picks_fp32_under_avx2_caps() -> None:
    env = {**os.environ, **AVX2_ENV}
    code = "from seqlab.precision import resolve_precision as r; print(r('auto'), r('fp32'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["fp32", "fp32"]


def test_explicit_bf16_under_avx2_caps_is_one_line_exit_2(tmp_path: Path,
                                                          tiny_text: Path) -> None:
    out = tmp_path / "run"
    res = _seqlab("train", "--model", "lstm", "--data", str(tiny_text), "--out", str(out),
                  "model.hidden=8", "model.emb_dim=4", "train.max_steps=2", "train.batch_size=2",
                  "train.seq_len=8", "train.progress=false", "train.precision=bf16")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("seqlab: error: train.precision=bf16 cannot run here")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in lines[0] and "train.precision=auto" in lines[0]
    assert not out.exists()  # refused before the run folder was made


def test_demo_completes_under_avx2_caps(tmp_path: Path) -> None:
    """The README's first command, on a CPU that cannot run bf16 LSTMs (a short budget: the
    splits' evaluation dominates, ~20 s on two cores)."""
    res = _seqlab("demo", "--minutes", "0.02", "--out", str(tmp_path / "demo"), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| ngram:order=6 |" in res.stdout and "| lstm:" in res.stdout
    runs = sorted(p.name for p in (tmp_path / "demo").iterdir() if (p / "config.json").exists())
    assert [r.split("-")[0] for r in runs] == ["lstm", "ngram"]
    assert all((tmp_path / "demo" / r / "best.safetensors").exists() for r in runs)
