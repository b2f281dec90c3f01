"""Raw audio for the WaveNet task: WAV files in and out, resampling, 8-bit mu-law, and a seeded
speech generator built on ``espeak-ng``.

* **Reading.** `read_wav` reads integer PCM WAV files (8-bit unsigned, 16-, 24- or 32-bit signed,
  any number of channels, averaged to mono) with Python's `wave` module into floats in [-1, 1].
  `wav_paths` expands a file, a folder (its ``*.wav``, sorted) or a glob. Anything else is a
  one-line `SeqlabError` naming the file: not a WAV, compressed or float samples, an odd sample
  width, a truncated data chunk.
* **Resampling.** `resample` is band-limited interpolation with a Hann-windowed sinc (16 zero
  crossings each side, cut-off at 95% of the lower Nyquist frequency), in numpy: exact positions
  from integer arithmetic, no scipy. espeak-ng speaks at 22,050 Hz; the task works at 8 kHz.
* **mu-law.** The continuous companding law of ITU-T G.711 and WaveNet (van den Oord et al.
  2016), mu = 255, quantised to 256 codes::

      F(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)           x in [-1, 1]
      q    = floor((F(x) + 1) / 2 * mu + 1/2)               q in 0..255
      x'   = sign(y) ((1 + mu)^|y| - 1) / mu,  y = 2 q / mu - 1

  (G.711 itself uses a 14-bit segmented approximation with inverted bits; the continuous law is
  what WaveNet and most audio toolkits mean by 8-bit mu-law.) Code 128 is silence.
* **Speech.** `speech_corpus` renders sentences taken from Python's own documentation
  (``pydoc_data.topics``) with several espeak-ng voices, speeds and pitches, drawn from a seed,
  into train/valid/test folders of WAV files; the held-out folders hold different sentences.
"""

from __future__ import annotations

import glob
import io
import math
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqlab.errors import SeqlabError
from seqlab.io import atomic_write

MU = 255  # the companding constant: 256 codes
CODES = MU + 1
SILENCE = 128  # the code of x = 0


# --- mu-law -------------------------------------------------------------------------------------
def mu_compress(x: np.ndarray) -> np.ndarray:
    """F(x) for x in [-1, 1] (clipped first): the companded value in [-1, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    return np.sign(x) * np.log1p(MU * np.abs(x)) / math.log1p(MU)


def mu_encode(x: np.ndarray) -> np.ndarray:
    """Samples in [-1, 1] -> mu-law codes 0..255 (uint8)."""
    q = np.floor((mu_compress(x) + 1.0) / 2.0 * MU + 0.5)
    return np.clip(q, 0, MU).astype(np.uint8)


def mu_decode(q: np.ndarray) -> np.ndarray:
    """Codes 0..255 -> samples in [-1, 1] (float64)."""
    y = 2.0 * np.asarray(q, dtype=np.float64) / MU - 1.0
    return np.sign(y) * np.expm1(np.abs(y) * math.log1p(MU)) / MU


# --- the audio "vocabulary": what a model's codes mean -------------------------------------------
@dataclass(frozen=True)
class AudioFormat:
    """A model's codes: 8-bit mu-law at `sample_rate` Hz (stored in checkpoints and runs)."""

    sample_rate: int = 8000
    mu: int = MU

    def __post_init__(self) -> None:
        if self.mu != MU:
            raise SeqlabError(f"audio format: expected mu = {MU} (8-bit mu-law), got {self.mu}")
        if not 1000 <= self.sample_rate <= 192_000:
            raise SeqlabError("audio format: expected a sample rate in 1000..192000 Hz, got "
                              f"{self.sample_rate}")

    def to_json(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "mu": self.mu, "codes": CODES}

    @classmethod
    def from_json(cls, obj: Any) -> AudioFormat:
        if not isinstance(obj, dict) or not isinstance(obj.get("sample_rate"), int):
            raise SeqlabError(f"expected an audio format {{'sample_rate': int, 'mu': 255}}, got "
                              f"{str(obj)[:60]}")
        return cls(int(obj["sample_rate"]), int(obj.get("mu", MU)))


# --- WAV files ----------------------------------------------------------------------------------
def wav_paths(spec: str) -> list[Path]:
    """The WAV files a data path names: a file, a folder (its ``*.wav``, sorted) or a glob."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix.lower() == ".wav" and q.is_file())
        if not files:
            raise SeqlabError(f"{p}: expected a folder of .wav files, found none")
        return files
    if p.is_file():
        return [p]
    if glob.has_magic(spec):
        files = sorted(Path(q) for q in glob.glob(spec) if Path(q).is_file())
        if not files:
            raise SeqlabError(f"{spec}: expected the pattern to match WAV files, matched none")
        return files
    raise SeqlabError(f"{p}: file not found")


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file as mono float64 samples in [-1, 1] and its sample rate."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            n = w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise SeqlabError(f"{path}: expected an integer PCM WAV file, got unreadable content "
                          f"({e})") from None
    except OSError as e:
        raise SeqlabError(f"{path}: cannot read ({e.strerror or e})") from None
    if width not in (1, 2, 3, 4):
        raise SeqlabError(f"{path}: expected 8-, 16-, 24- or 32-bit samples, got "
                          f"{8 * width}-bit")
    if channels < 1 or rate < 1:
        raise SeqlabError(f"{path}: expected at least one channel and a positive sample rate, "
                          f"got {channels} channels at {rate} Hz")
    frame = width * channels
    if len(raw) < n * frame:
        raise SeqlabError(f"{path}: expected {n} frames of {frame} bytes, got "
                          f"{len(raw) // frame} (a truncated file)")
    return _pcm_to_float(raw, width, channels), rate


def _pcm_to_float(raw: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned, 128 = 0
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 3:  # little-endian 24-bit, sign-extended through the top byte
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float64) / float(1 << 23)
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        x = np.frombuffer(raw, dtype).astype(np.float64) / float(1 << (8 * width - 1))
    return x.reshape(-1, channels).mean(axis=1)  # (frames,): channels averaged


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file (atomic)."""
    x = np.asarray(samples, np.float64) * 32768  # the scale `read_wav` divides by
    pcm = np.clip(np.round(x), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    atomic_write(path, buf.getvalue())


def load_codes(path: str | Path, sample_rate: int) -> np.ndarray:
    """A WAV file resampled to `sample_rate` and mu-law encoded: codes (N,) uint8."""
    x, rate = read_wav(path)
    return mu_encode(resample(x, rate, sample_rate))


# --- resampling ---------------------------------------------------------------------------------
def resample(x: np.ndarray, src: int, dst: int, zeros: int = 16, rolloff: float = 0.95,
             chunk: int = 1 << 15) -> np.ndarray:
    """Band-limited resampling of `x` from `src` to `dst` Hz with a Hann-windowed sinc.

    Output sample n sits at input position p = n src / dst (exact, in integers); it is
    sum_k x[k] h(p - k) with h the low-pass at ``rolloff`` of the lower Nyquist frequency,
    `zeros` zero crossings each side. Samples outside `x` count as zeros."""
    x = np.asarray(x, dtype=np.float64)
    if src == dst or len(x) == 0:
        return x.copy()
    g = math.gcd(src, dst)
    up, down = dst // g, src // g  # p = n * down / up input samples
    n_out = (len(x) * up) // down
    fc = 0.5 * min(1.0, dst / src) * rolloff  # cut-off, cycles per input sample
    half = math.ceil(zeros / (2 * fc))  # taps each side, in input samples
    taps = np.arange(-half + 1, half + 1)  # (K,)
    padded = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
    out = np.empty(n_out)
    for s in range(0, n_out, chunk):
        n = np.arange(s, min(s + chunk, n_out))
        base = (n * down) // up  # floor(p)
        frac = (n * down - base * up) / up  # p - floor(p), in [0, 1)
        t = frac[:, None] - taps[None, :]  # (n, K): p - k for k = base + taps
        h = 2 * fc * np.sinc(2 * fc * t) * (0.5 + 0.5 * np.cos(np.pi * t / half))
        out[s:s + len(n)] = (padded[base[:, None] + taps[None, :] + half] * h).sum(axis=1)
    return out


# --- espeak-ng speech ---------------------------------------------------------------------------
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
VARIANTS = ("", "+m1", "+m3", "+m7", "+f1", "+f2", "+f4")
SPLITS = ("train", "valid", "test")


def espeak() -> str | None:
    """The espeak-ng executable, or None where the Debian package is not installed."""
    return shutil.which("espeak-ng")


def sentences(min_chars: int = 40, max_chars: int = 160) -> list[str]:
    """Plain English sentences from Python's documentation (``pydoc_data.topics``), in a fixed
    order, without code, markup or duplicates."""
    from pydoc_data.topics import topics

    seen: set[str] = set()
    out = []
    for key in sorted(topics):
        text = re.sub(r"\s+", " ", topics[key])
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
            s = s.strip()
            if (min_chars <= len(s) <= max_chars and re.fullmatch(r"[A-Za-z ,;'()-]+[.!?]", s)
                    and s not in seen):
                seen.add(s)
                out.append(s)
    return out


@dataclass
class Utterance:
    """One rendered sentence: what was said, and how."""

    text: str
    voice: str
    speed: int  # words per minute
    pitch: int  # espeak-ng's 0..99


def speak(u: Utterance, sample_rate: int, exe: str) -> np.ndarray:
    """One utterance rendered by espeak-ng and resampled: float samples in [-1, 1]."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "u.wav"
        cmd = [exe, "-v", u.voice, "-s", str(u.speed), "-p", str(u.pitch), "-w", str(wav),
               u.text]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not wav.exists():
            raise SeqlabError(f"espeak-ng failed on voice {u.voice}: "
                              f"{(done.stderr or 'no output').strip().splitlines()[0]}")
        x, rate = read_wav(wav)
    return resample(x, rate, sample_rate)


def plan(seconds: Sequence[float], seed: int) -> dict[str, list[Utterance]]:
    """Which sentences each split says, with which voice, speed and pitch: about `seconds`
    (train, valid, test) of speech each, from disjoint sentences (seeded)."""
    rng = np.random.default_rng(seed)
    pool = sentences()
    order = rng.permutation(len(pool))
    out: dict[str, list[Utterance]] = {}
    i = 0
    for name, budget in zip(SPLITS, seconds, strict=True):
        out[name], total = [], 0.0
        while total < budget:
            if i >= len(order):
                raise SeqlabError(f"expected enough sentences for {sum(seconds):.0f} s of "
                                  f"speech, ran out after {i}")
            text = pool[order[i]]
            i += 1
            speed = int(rng.integers(130, 211))
            out[name].append(Utterance(
                text, str(rng.choice(VOICES)) + str(rng.choice(VARIANTS)), speed,
                int(rng.integers(25, 76))))
            total += len(text.split()) / speed * 60 + 0.4  # a rough duration, for the budget
    return out


def speech_corpus(out: str | Path, seconds: Sequence[float] = (240, 30, 30), *,
                  seed: int = 0, sample_rate: int = 8000, per_file: int = 8) -> dict[str, Any]:
    """Render `plan(seconds, seed)` into ``out/{train,valid,test}/NNN.wav`` (16-bit PCM at
    `sample_rate`, `per_file` utterances a file) and ``out/plan.json``; what was written."""
    from seqlab.io import write_json

    exe = espeak()
    if exe is None:
        raise SeqlabError("espeak-ng not found; install the Debian package espeak-ng")
    root = Path(out)
    utterances = plan(seconds, seed)
    written: dict[str, Any] = {}
    for name, utts in utterances.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        samples = 0
        for f, s in enumerate(range(0, len(utts), per_file)):
            audio = np.concatenate([speak(u, sample_rate, exe) for u in utts[s:s + per_file]])
            write_wav(folder / f"{f:03d}.wav", audio, sample_rate)
            samples += len(audio)
        written[name] = {"utterances": len(utts), "samples": samples,
                         "seconds": samples / sample_rate}
    write_json(root / "plan.json", {"seed": seed, "sample_rate": sample_rate, **written,
                                    "utterances": {k: [vars(u) for u in v]
                                                   for k, v in utterances.items()}})
    return written
