"""Raw audio: WaveNet on 8-bit mu-law samples, scored in bits per sample.

    seqlab audio-speech --out speech                 # espeak-ng sentences: train/valid/test
    seqlab train --model wavenet-audio --data speech/train --valid speech/valid \\
        --test speech/test --out R
    seqlab eval R --data other.wav --json            # bits_per_sample (and nats) of a file
    seqlab audio-sample R --seconds 2 --out x.wav    # generated one sample at a time

Data is WAV files (`seqlab.data.audio`): a file, a folder of ``*.wav`` or a glob, integer PCM
of any width, rate and channel count, averaged to mono, resampled to ``data.sample_rate`` and
mu-law encoded to 256 codes. Without ``--valid``/``--test``, the last ``valid_fraction`` and
``test_fraction`` of the audio (files in name order, cut by time) are held out.

The default rate is 8 kHz, not 16: speech keeps its intelligibility (it is the telephone band,
and 8-bit mu-law at 8 kHz is G.711's format), a receptive field of a given depth spans twice the
time, and a CPU's training budget sees twice the seconds of speech. ``data.sample_rate=16000``
works unchanged.

Training concatenates the training files into one stream and cuts shuffled windows of
``train.seq_len`` scored samples, each preceded by ``receptive_field - 1`` samples of context
that are read but not scored, so that every scored sample sees its full receptive field, as in
scoring and generation (the stream starts with that much silence). Scoring runs over each clip
whole (`WaveNetAudio.log_prob`, exact), its first sample conditioned on silence::

    bits_per_sample = -sum_t log2 p(q_t | q_<t) / N          (nats_per_sample: the same in nats)

over every sample of every clip of the split. It is directly comparable with a lossless coder's
compressed bits per sample on the same mu-law codes (see ``benchmarks/audio``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from seqlab.data.audio import SILENCE, AudioFormat, load_codes, mu_decode, wav_paths, write_wav
from seqlab.data.splits import Cursor, SplitConfig, Splits
from seqlab.distributed import World, shard
from seqlab.errors import SeqlabError
from seqlab.scoring import ScoreRow
from seqlab.tasks.base import JsonVocabFile, Metrics


@dataclass
class AudioDataConfig(SplitConfig):
    """WAV files (a file, a folder or a glob) and the rate the model works at."""

    path: str = ""  # the training audio; valid/test: separate audio, else the last fractions
    sample_rate: int = 8000  # Hz; every file is resampled to it

    def __post_init__(self) -> None:
        super().__post_init__()
        AudioFormat(self.sample_rate)  # checks the range


@dataclass
class Clips:
    """Mu-law codes of some clips; ``len`` is the number of samples, for tables."""

    codes: list[np.ndarray] = field(default_factory=list)  # (N_i,) uint8 each
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(c) for c in self.codes)


@dataclass
class AudioData(Splits[Clips]):
    context: int = 0  # receptive field - 1 of the model it was prepared for


def read_clips(spec: str, sample_rate: int) -> Clips:
    """Every WAV file `spec` names, resampled and encoded."""
    paths = wav_paths(spec)
    return Clips([load_codes(p, sample_rate) for p in paths], [str(p) for p in paths])


def hold_out(clips: Clips, n_valid: int, n_test: int) -> tuple[Clips, Clips, Clips]:
    """The last `n_test` samples (in file order) as test, the `n_valid` before them as valid,
    the rest as train; a file that straddles a boundary is cut there."""
    bounds = np.cumsum([0, *map(len, clips.codes)])
    total = int(bounds[-1])
    edges = (0, total - n_valid - n_test, total - n_test, total)
    out = []
    for a, b in pairwise(edges):
        part = Clips()
        for c, name, lo in zip(clips.codes, clips.names, bounds[:-1], strict=True):
            s, e = max(a - lo, 0), min(b - lo, len(c))
            if e > s:
                part.codes.append(c[s:e])
                part.names.append(f"{name}[{s}:{e}]")
        out.append(part)
    return out[0], out[1], out[2]


# --- batches ------------------------------------------------------------------------------------
class AudioBatcher(Cursor):
    """Shuffled windows of the concatenated training stream: inputs (B, C + T) are the codes
    before the targets (B, C + T), whose first C (the context) are -100, not scored. The window
    grid shifts by a seeded offset each epoch; the position is (epoch, index)."""

    def __init__(self, clips: Clips, batch_size: int, seq_len: int, context: int, seed: int
                 ) -> None:
        silence = np.full(context + 1, SILENCE, np.int64)
        self.stream = np.concatenate([silence, *[c.astype(np.int64) for c in clips.codes]])
        self.windows = (len(self.stream) - context - seq_len) // seq_len  # with any offset
        if self.windows < batch_size:
            raise SeqlabError(f"expected at least train.batch_size x train.seq_len = "
                              f"{batch_size} x {seq_len} training samples, got {len(clips)}; "
                              "lower them or add audio")
        self.batch_size, self.T, self.C, self.seed = batch_size, seq_len, context, seed

    def next(self) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        start = self.take(self.batch_size, self.windows)
        rng = np.random.default_rng([self.seed, self.epoch])
        offset = int(rng.integers(self.T)) if self.epoch else 0
        chosen = rng.permutation(self.windows)[start:start + self.batch_size]
        s = self.C + 1 + offset + chosen * self.T  # first target of each window
        idx = s[:, None] + np.arange(-self.C, self.T)[None, :]  # (B, C + T)
        x = torch.from_numpy(self.stream[idx - 1])
        y = torch.from_numpy(self.stream[idx].copy())
        y[:, :self.C] = -100
        return (x, y), True

    def next_epoch(self) -> int:
        return self.epoch

    def tokens_per_batch(self) -> int:
        return self.batch_size * self.T


# --- the metric ---------------------------------------------------------------------------------
@dataclass
class AudioEvaluation(ScoreRow):
    model: str
    split: str
    clips: int
    samples: int  # every sample of every clip is scored
    audio_seconds: float
    nats: float  # total negative log-likelihood
    nats_per_sample: float
    bits_per_sample: float  # nats / (samples ln 2): against a lossless coder's bits per sample
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: {self.bits_per_sample:.4f} bits/sample "
                f"({self.nats_per_sample:.4f} nats), {self.samples:,} samples "
                f"({self.audio_seconds:.1f} s) in {self.clips} clips")


# --- the task -----------------------------------------------------------------------------------
class RawAudio(JsonVocabFile, vocab=AudioFormat):
    """Next-sample prediction on 8-bit mu-law audio (the `Task` protocol)."""

    name: ClassVar[str] = "audio"
    DataConfig: ClassVar[type] = AudioDataConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {
        "wavenet-audio": ("audio", {}),  # 2 x 10 gated layers, 32 channels, 2047 samples
    }
    metric: ClassVar[str] = "bits_per_sample"
    metrics: ClassVar[tuple[str, ...]] = ("bits_per_sample", "nats_per_sample")
    mode: ClassVar[str] = "min"

    def prepare(self, cfg: AudioDataConfig, workdir: Path, vocab: AudioFormat | None = None,
                model: Any = None) -> AudioData:
        if not cfg.path:
            raise SeqlabError("data.path: expected a WAV file, folder or glob (--data), got none")
        if vocab is not None and vocab.sample_rate != cfg.sample_rate:
            raise SeqlabError(f"data.sample_rate={cfg.sample_rate} differs from the model's "
                              f"{vocab.sample_rate} Hz")
        main = read_clips(cfg.path, cfg.sample_rate)
        _, n_valid, n_test = cfg.split_sizes(len(main))
        train, valid, test = hold_out(main, n_valid, n_test)
        if cfg.valid:
            valid = read_clips(cfg.valid, cfg.sample_rate)
        if cfg.test:
            test = read_clips(cfg.test, cfg.sample_rate)
        if not len(train):
            raise SeqlabError(f"{cfg.path}: expected training audio after the held-out "
                              "fractions, got none")
        context = model.receptive_field - 1 if model is not None else 0
        return AudioData(vocab or AudioFormat(cfg.sample_rate), train, valid, test, context)

    def describe_data(self, data: AudioData) -> str:
        rate = data.vocab.sample_rate
        parts = [f"{len(data.split(s)) / rate:.1f} s {s}" for s in ("train", "valid", "test")]
        return f"{' / '.join(parts)} of 8-bit mu-law audio at {rate} Hz"

    def batches(self, data: AudioData, cfg: AudioDataConfig, train: Any, world: World) -> Any:
        return shard(AudioBatcher(data.train, train.batch_size, train.seq_len, data.context,
                                  train.seed), world)

    def estimator_inputs(self, data: AudioData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the audio task trains torch models only")

    def validate(self, model: Any, data: AudioData) -> Callable[[], Metrics] | None:
        if not len(data.valid):
            return None

        def run() -> Metrics:
            e = self.evaluate(model, data.valid, split_name="valid", name="")
            return {"bits_per_sample": e.bits_per_sample, "nats_per_sample": e.nats_per_sample}
        return run

    def evaluate(self, model: Any, split: Clips, *, split_name: str, name: str
                 ) -> AudioEvaluation:
        t0 = time.perf_counter()
        nats = -sum(float(model.log_prob(c).sum()) for c in split.codes)
        n = len(split)
        return AudioEvaluation(
            model=name, split=split_name, clips=len(split.codes), samples=n,
            audio_seconds=n / model.sample_rate, nats=nats,
            nats_per_sample=nats / n if n else float("nan"),
            bits_per_sample=nats / (n * math.log(2)) if n else float("nan"),
            seconds=time.perf_counter() - t0)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> Clips:
        return read_clips(path, model.sample_rate)

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        raise SeqlabError("the audio task writes WAV files: use seqlab audio-sample RUN --out "
                          "x.wav, not seqlab predict")

    def add_commands(self, sub: Any) -> dict[str, Callable[..., int]]:
        s = sub.add_parser("audio-sample", help="generate audio from a WaveNet run; write a WAV")
        s.add_argument("run", help="audio run folder or checkpoint file")
        s.add_argument("--seconds", type=float, default=2.0, help="audio to generate (default 2)")
        s.add_argument("--out", required=True, help="WAV file to write (16-bit PCM)")
        s.add_argument("--prompt", help="WAV file whose audio is continued (and kept in --out)")
        s.add_argument("--prompt-seconds", type=float,
                       help="keep only the prompt's first N seconds")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--temperature", type=float, default=1.0)
        g = sub.add_parser("audio-speech", help="render espeak-ng speech into train/valid/test "
                                                "folders of WAV files (seeded)")
        g.add_argument("--out", required=True, help="folder to write")
        g.add_argument("--seconds", default="240,30,30",
                       help="about this much speech for train,valid,test (default 240,30,30)")
        g.add_argument("--seed", type=int, default=0)
        g.add_argument("--sample-rate", type=int, default=8000)
        return {"audio-sample": cmd_audio_sample, "audio-speech": cmd_audio_speech}


def cmd_audio_sample(args: Any) -> int:
    """``seqlab audio-sample RUN --out x.wav``: sample, decode mu-law, write 16-bit PCM."""
    from seqlab.experiment import load_run, task_of

    if not args.seconds > 0 or not args.temperature > 0:
        raise SeqlabError("--seconds and --temperature must be > 0, got "
                          f"{args.seconds} and {args.temperature}")
    model, config = load_run(args.run)
    if not isinstance(task_of(model, config), RawAudio):
        raise SeqlabError(f"{args.run}: expected an audio run, got a {model.family} model")
    rate = model.sample_rate
    prompt = np.zeros(0, np.uint8)
    if args.prompt:
        prompt = load_codes(args.prompt, rate)
        if args.prompt_seconds is not None:
            prompt = prompt[:max(0, round(args.prompt_seconds * rate))]
    n = max(1, round(args.seconds * rate))
    t0 = time.perf_counter()
    codes = model.generate(n, prompt=prompt, seed=args.seed, temperature=args.temperature)
    wall = time.perf_counter() - t0
    write_wav(args.out, mu_decode(np.concatenate([prompt, codes])), rate)
    print(f"wrote {args.out}: {len(prompt)} prompt + {n} generated samples at {rate} Hz "
          f"({n / wall:,.0f} samples/s)")
    return 0


def cmd_audio_speech(args: Any) -> int:
    """``seqlab audio-speech --out DIR``: the seeded espeak-ng corpus; skipped without it."""
    from seqlab.data.audio import espeak, speech_corpus

    try:
        seconds = [float(v) for v in args.seconds.split(",")]
    except ValueError:
        seconds = []
    if len(seconds) != 3 or not all(v > 0 for v in seconds):
        raise SeqlabError(f"--seconds: expected three positive numbers train,valid,test, got "
                          f"{args.seconds!r}")
    if espeak() is None:
        print("skipped: espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        return 0
    done = speech_corpus(args.out, seconds, seed=args.seed, sample_rate=args.sample_rate)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v['seconds']:.1f} s in {v['utterances']} "
                                            "utterances" for k, v in done.items()))
    return 0
