"""Several processes with PyTorch's own engine (torchrun, DDP, gloo on CPU), and devices.

The DDP runs start real torchrun subprocesses through ``seqlab train --nproc 2``. Dropout is off,
so one process with the global batch and two processes with half of it each take the same steps
(up to the order of floating-point sums).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab import models
from seqlab.config import from_dict
from seqlab.distributed import World, resolve_device, shard
from seqlab.errors import SeqlabError
from seqlab.io import load_tensors
from seqlab.run import TrainConfig

KEYS = ["--model", "lstm", "model.hidden=16", "model.layers=1", "model.emb_dim=8",
        "model.dropout=0", "train.batch_size=4", "train.seq_len=16", "train.eval_interval=10",
        "train.progress=false", "train.threads=1"]


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("ddp") / "small.txt"
    p.write_text("".join(rng.choice(list("abcde \n"), 12_000)), encoding="utf-8")
    return p


def seqlab(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "seqlab", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_tensors(run / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


@pytest.fixture(scope="module")
def runs(text: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One process; two processes; two processes stopped at step 10 and resumed."""
    base = tmp_path_factory.mktemp("runs")
    out = {name: base / name for name in ("one", "two", "resumed")}
    common = ["--data", text, "--max-steps", 20, *KEYS]
    for name, extra in (("one", []), ("two", ["--nproc", 2]),
                        ("resumed", ["--nproc", 2, "train.stop_at_step=10"]),
                        ("resumed", ["--nproc", 2, "--resume"])):
        done = seqlab("train", "--out", out[name], *extra, *common)
        assert done.returncode == 0, done.stderr
    return out


def test_ddp_steps_equal_one_process_with_the_global_batch(runs: dict[str, Path]) -> None:
    one, two = weights(runs["one"]), weights(runs["two"])
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=0)
    records = [json.loads(x) for x in (runs["two"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [10, 20]  # rank 0 alone writes


def test_ddp_resume_equals_an_uninterrupted_ddp_run(runs: dict[str, Path]) -> None:
    two, resumed = weights(runs["two"]), weights(runs["resumed"])
    for k in two:
        assert torch.equal(two[k], resumed[k]), k
    _, meta = load_tensors(runs["resumed"] / "last.safetensors")
    assert meta["trainer"]["world_size"] == 2 and meta["trainer"]["progress"]["step"] == 20


def test_a_ddp_run_evaluates_and_resumes_in_one_process(runs: dict[str, Path], text: Path,
                                                        tmp_path: Path) -> None:
    done = seqlab("eval", runs["two"], "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert np.isfinite(json.loads(done.stdout)["bits_per_token"])
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["two"], copy)
    done = seqlab("train", "--out", copy, "--resume", "--data", text, "--max-steps", 24, *KEYS)
    assert done.returncode == 0, done.stderr
    _, meta = load_tensors(copy / "last.safetensors")
    assert meta["trainer"]["world_size"] == 1 and meta["trainer"]["progress"]["step"] == 24


def test_counting_models_refuse_several_processes(text: Path, tmp_path: Path) -> None:
    done = seqlab("train", "--nproc", 2, "--model", "ngram", "--data", text, "--out",
                  tmp_path / "ng")
    assert done.returncode != 0
    assert "fitted by counting or EM in one process" in done.stderr
    assert not (tmp_path / "ng" / "config.json").exists()


def test_sharded_sources_split_each_global_batch() -> None:
    from seqlab.data.stream import StreamBatcher
    from seqlab.tasks.parity import ParityBatcher, generate

    data = np.arange(400)
    whole = StreamBatcher(data, 4, 5).next()[0][0]
    parts = [StreamBatcher(data, 4, 5, rank=r, world=2).next()[0][0] for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)  # contiguous blocks of rows: state carries
    strings = generate(12, 2, 6, seed=1)
    whole = ParityBatcher(strings, 4, 0).next()[0][0]
    halves = [shard(ParityBatcher(strings, 4, 0), World(r, 2)).next()[0][0] for r in range(2)]
    assert torch.equal(halves[0], whole[0::2]) and torch.equal(halves[1], whole[1::2])
    with pytest.raises(SeqlabError, match="must divide among the 3 processes"):
        StreamBatcher(data, 4, 5, rank=0, world=3)


def test_devices_resolve_and_refuse_what_is_missing() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(SeqlabError, match="no CUDA device is available"):
            resolve_device("cuda")
    with pytest.raises(SeqlabError, match="expected one of auto, cpu, cuda"):
        from_dict(TrainConfig, {"device": "tpu"}, prefix="train.")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trained_on_the_gpu_loads_on_the_cpu(text: Path, tmp_path: Path) -> None:
    """Train a few steps on the GPU, then load on the CPU: the logits agree to 1e-4 in fp32."""
    out = tmp_path / "gpu"
    done = seqlab("train", "--out", out, "--data", text, "--max-steps", 5, *KEYS,
                  "train.device=cuda", "train.precision=fp32")
    assert done.returncode == 0, done.stderr
    cpu = models.load(out / "best.safetensors").eval()
    gpu = models.load(out / "best.safetensors").to("cuda").eval()
    x = torch.randint(0, len(cpu.vocab), (2, 30))
    with torch.no_grad():
        a, _ = cpu(x)
        b, _ = gpu(x.cuda())
    torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=1e-4)
    for command in (["eval", out, "--device", "cuda"], ["sample", out, "--device", "cuda",
                                                        "--length", 20]):
        done = seqlab(*command)
        assert done.returncode == 0, done.stderr
