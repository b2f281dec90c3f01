"""Raw audio: WaveNet bits per sample on held-out espeak-ng speech, against FLAC.

    .venv/bin/python -m benchmarks.audio.run --stage data      # speech + compressor baselines
    /tmp/seqlab-slot .venv/bin/python -m benchmarks.audio.run --stage train --minutes 30
    .venv/bin/python -m benchmarks.audio.run --stage report    # results.json + the table

``data`` renders the seeded speech corpus (`seqlab audio-speech`: sentences from Python's
documentation, six espeak-ng accents x seven voice variants, 130-210 words per minute, pitch
25-75; about 240 s train, 30 s valid, 30 s test, disjoint sentences) into ``_work/speech`` and
codes its held-out splits with lossless compressors. ``train`` trains ``wavenet-audio`` through
the CLI with one thread and a wall-clock budget, scores it (``seqlab eval``) and writes a
listenable sample (``seqlab audio-sample``: one second of held-out speech, then two generated).
``report`` gathers everything into ``results.json`` and prints the Markdown table.

What is compared, on the same held-out audio: every coder codes the **same 8-bit mu-law codes**
at 8 kHz, losslessly, and its figure is its total size in bits over the number of samples.

* WaveNet: -log2 p of every code under the model (an arithmetic coder would get within a few
  bytes of it).
* FLAC (``flac -8 -e -p``, Debian's flac 1.4), two ways of handing it the codes: as 8-bit PCM
  (the codes themselves, centred) and as 16-bit linear PCM (each code expanded through the
  mu-law curve, a one-to-one map, so FLAC's linear predictor sees the waveform it was designed
  for). The better of the two is the bar. File sizes include FLAC's headers (no padding or
  seek table): a few dozen bytes over 240,000 samples.
* For context only: FLAC on the original 16-bit PCM at 8 kHz (more information than the codes:
  not comparable), xz and bzip2 on the code bytes, and the codes' own order-0 entropy.
"""

from __future__ import annotations

import argparse
import bz2
import json
import lzma
import resource
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine, markdown_table
from seqlab.data.audio import mu_decode, read_wav, wav_paths
from seqlab.io import read_json, write_json
from seqlab.tasks.audio import read_clips

HERE = Path(__file__).parent
WORK = HERE / "_work"
SPEECH = WORK / "speech"
RUN = WORK / "wavenet"
RATE = 8000
SECONDS = "240,30,30"
SEED = 0
SEQLAB = [sys.executable, "-m", "seqlab"]
FLAC_OPTS = ["-8", "-e", "-p"]  # the best compression flac offers within the subset format
TRAIN = ["train.threads=1", "train.precision=fp32", "train.batch_size=4", "train.seq_len=2048",
         "train.eval_interval=200", "train.log_interval=20", "train.progress=false",
         "train.seed=1"]


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    print("$ " + " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kw)


def missing_tools() -> str | None:
    for tool, package in (("espeak-ng", "espeak-ng"), ("flac", "flac")):
        if shutil.which(tool) is None:
            return f"skipped: {tool} is not installed (Debian: apt-get install -y {package})"
    return None


# --- the compressors ----------------------------------------------------------------------------
def _wav_bytes(path: Path, samples: np.ndarray, width: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def flac_bits(samples: np.ndarray, width: int, tmp: Path) -> int:
    """Bits of the FLAC file coding `samples` (uint8 for 8-bit PCM, int16 for 16-bit)."""
    _wav_bytes(tmp / "x.wav", samples, width)
    sh(["flac", "-s", "-f", "--no-padding", "--no-seektable", *FLAC_OPTS, "-o",
        tmp / "x.flac", tmp / "x.wav"])
    return (tmp / "x.flac").stat().st_size * 8


def baselines(split: str) -> dict[str, Any]:
    """Every compressor on the concatenated codes of `split` (files in name order)."""
    codes = np.concatenate(read_clips(str(SPEECH / split), RATE).codes)
    source = np.concatenate([np.clip(np.round(read_wav(p)[0] * 32768), -32768, 32767)
                             for p in wav_paths(str(SPEECH / split))]).astype("<i2")
    n = len(codes)
    tmp = WORK / "flac"
    tmp.mkdir(parents=True, exist_ok=True)
    linear = np.clip(np.round(mu_decode(codes) * 32768), -32768, 32767).astype("<i2")
    assert len(np.unique(linear)) == len(np.unique(codes))  # one-to-one on these codes
    p = np.bincount(codes, minlength=256) / n
    rows = {
        "flac_mulaw_8bit": flac_bits(codes, 1, tmp) / n,  # 8-bit WAV is offset binary
        "flac_mulaw_as_16bit_linear": flac_bits(linear, 2, tmp) / n,
        "flac_source_16bit_pcm": flac_bits(source, 2, tmp) / n,
        "xz_mulaw": len(lzma.compress(codes.tobytes(), preset=9 | lzma.PRESET_EXTREME)) * 8 / n,
        "bzip2_mulaw": len(bz2.compress(codes.tobytes(), 9)) * 8 / n,
        "order0_entropy_mulaw": float(-(p[p > 0] * np.log2(p[p > 0])).sum()),
    }
    return {"samples": n, "seconds": n / RATE, "bits_per_sample": rows,
            "flac_bar": min(rows["flac_mulaw_8bit"], rows["flac_mulaw_as_16bit_linear"])}


def stage_data() -> None:
    if not (SPEECH / "plan.json").exists():
        sh([*SEQLAB, "audio-speech", "--out", SPEECH, "--seconds", SECONDS, "--seed", SEED,
            "--sample-rate", RATE])
    flac_version = sh(["flac", "--version"], capture_output=True).stdout.strip()
    espeak_version = sh(["espeak-ng", "--version"], capture_output=True).stdout.strip()
    out = {"plan": {k: v for k, v in read_json(SPEECH / "plan.json").items()
                    if k != "utterances"},
           "tools": {"flac": flac_version, "espeak-ng": espeak_version,
                     "flac_options": FLAC_OPTS},
           "valid": baselines("valid"), "test": baselines("test")}
    write_json(WORK / "baselines.json", out)
    print(json.dumps(out["test"], indent=2))


# --- WaveNet ------------------------------------------------------------------------------------
def stage_train(minutes: float, max_steps: int) -> None:
    t0, before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if not (RUN / "best.safetensors").exists():
        sh([*SEQLAB, "train", "--model", "wavenet-audio", "--data", SPEECH / "train",
            "--valid", SPEECH / "valid", "--test", SPEECH / "test", "--out", RUN,
            f"train.max_minutes={minutes}", f"train.max_steps={max_steps}", *TRAIN])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    train_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    scores = {}
    for split in ("valid", "test"):
        done = sh([*SEQLAB, "eval", RUN, "--split", split, "--json"], capture_output=True)
        scores[split] = json.loads(done.stdout.strip().splitlines()[-1])
    sample = HERE / "sample.wav"
    prompt = sorted((SPEECH / "test").glob("*.wav"))[0]
    done = sh([*SEQLAB, "audio-sample", RUN, "--prompt", prompt, "--prompt-seconds", 1,
               "--seconds", 2, "--seed", 0, "--out", sample], capture_output=True)
    write_json(WORK / "wavenet.json", {
        "scores": scores, "train_cpu_seconds": train_cpu, "wall_seconds": time.time() - t0,
        "sample": {"file": sample.name, "prompt": str(prompt.relative_to(WORK)),
                   "prompt_seconds": 1, "generated_seconds": 2, "log": done.stdout.strip()}})
    print(json.dumps(scores, indent=2))


# --- the report ---------------------------------------------------------------------------------
def _training(run: Path) -> dict[str, Any]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    evals = [r for r in records if r.get("kind") == "eval"]
    steps = max((r.get("step", 0) for r in records), default=0)
    from seqlab import models

    config = read_json(run / "config.json")
    return {"steps": steps, "evals": [(r["step"], r.get("bits_per_sample")) for r in evals],
            "config": config["model"], "train": config["train"],
            "parameters": models.load(run / "best.safetensors").num_parameters()}


def stage_report() -> None:
    base = read_json(WORK / "baselines.json")
    net = read_json(WORK / "wavenet.json")
    test, valid = net["scores"]["test"], net["scores"]["valid"]
    training = _training(RUN)
    bar = base["test"]["flac_bar"]
    names = {
        "flac_mulaw_8bit": "FLAC -8ep, mu-law codes as 8-bit PCM",
        "flac_mulaw_as_16bit_linear": "FLAC -8ep, mu-law codes expanded to 16-bit linear PCM",
        "xz_mulaw": "xz -9e on the code bytes",
        "bzip2_mulaw": "bzip2 -9 on the code bytes",
        "order0_entropy_mulaw": "order-0 entropy of the test codes (their own histogram)",
        "flac_source_16bit_pcm": "FLAC -8ep on the 16-bit source PCM (more information: "
                                 "not comparable)",
    }
    rows = [{"coder": "wavenet-audio (this run)", "valid": valid["bits_per_sample"],
             "test": test["bits_per_sample"], "vs": test["bits_per_sample"] - bar}]
    for key, label in names.items():
        rows.append({"coder": label, "valid": base["valid"]["bits_per_sample"][key],
                     "test": base["test"]["bits_per_sample"][key],
                     "vs": base["test"]["bits_per_sample"][key] - bar})
    table = markdown_table(rows, [("coder", "coder (same 8-bit mu-law codes, 8 kHz)", "s"),
                                  ("valid", "valid bits/sample", ".3f"),
                                  ("test", "test bits/sample", ".3f"),
                                  ("vs", "test minus FLAC bar", "+.3f")])
    results = {
        "machine": machine(), "sample_rate": RATE, "data": base["plan"], "tools": base["tools"],
        "wavenet": {"valid": valid, "test": test, "training": training,
                    "train_cpu_seconds": net["train_cpu_seconds"], "sample": net["sample"]},
        "baselines": {"valid": base["valid"], "test": base["test"]},
        "flac_bar_test": bar, "below_flac": test["bits_per_sample"] < bar, "table": table,
    }
    write_json(HERE / "results.json", results)
    print(table)
    print(f"\nWaveNet {test['bits_per_sample']:.3f} vs FLAC bar {bar:.3f} bits/sample on "
          f"{test['samples']:,} test samples; {training['steps']} steps, "
          f"{net['train_cpu_seconds'] / 60:.1f} CPU minutes of training (with its validation)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("data", "train", "report", "all"), default="all")
    ap.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    ap.add_argument("--max-steps", type=int, default=1500, help="step budget (the schedule's)")
    args = ap.parse_args()
    why = missing_tools()
    if why:
        print(why)
        return 0
    if args.stage in ("data", "all"):
        stage_data()
    if args.stage in ("train", "all"):
        stage_train(args.minutes, args.max_steps)
    if args.stage in ("report", "all"):
        stage_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
