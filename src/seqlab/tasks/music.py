"""Polyphonic music: piano-rolls in, the next step's set of sounding keys out.

    seqlab train --model music-lstm --data ../shared/data/music/jsb_chorales/jsb_chorales.json
    seqlab eval R --json                   # nll_per_step on the file's test split
    seqlab music-sample R --prompt-from song.json --steps 64 --out x.mid   # and x.png

Data (Boulanger-Lewandowski et al. 2012, as converted in ``../shared/data/music``): one JSON
object ``{"train": [...], "valid": [...], "test": [...]}``; a split is a list of sequences, a
sequence a list of time steps, a time step a list of the MIDI pitches sounding (21..108, the 88
piano keys; ``[]`` is silence). A bare list of sequences is read too (for ``seqlab eval --data``
and prompts). Bad input is a one-line error naming the file: malformed JSON, a missing split, a
pitch outside 21..108.

The model sees the roll shifted by one step: the input at step t is the roll at t - 1, with a
zero frame before the first step, and it outputs the probability of each of the 88 keys at t
(independent sigmoids, or an autoregressive note layer; `seqlab.models.music`).

The metric is scored as the TCN paper's code scores it (locuslab/TCN, ``poly_music/
music_test.py``, ``evaluate``): per predicted frame, the negative log-likelihood is the sum over
the 88 keys of the binary cross-entropy, in nats; the split's figure is the total over every
predicted frame of every sequence divided by the number of those frames (frame-weighted over the
whole split, not a mean of per-sequence means). That code feeds ``roll[:-1]`` and predicts
``roll[1:]``, so a sequence's first frame is never scored; nor is it here. Training does include
the first frame (predicted from the zero frame), so that generation without a prompt starts
sensibly.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from seqlab.data.splits import Cursor, Splits
from seqlab.distributed import World, shard
from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, write_json
from seqlab.scoring import ScoreRow
from seqlab.tasks.base import Metrics

LOW, KEYS = 21, 88  # MIDI pitch of the lowest piano key (A0), and the number of keys
SPLITS = ("train", "valid", "test")
Roll = np.ndarray  # (T, KEYS) uint8, 1 where the key sounds


@dataclass
class MusicDataConfig:
    """Where the piano-rolls are and how they are scored."""

    path: str = ""  # JSON file with train/valid/test splits of piano-rolls


# --- reading ----------------------------------------------------------------------------------
def _sequence(seq: Any, where: str) -> Roll:
    if not isinstance(seq, list):
        raise SeqlabError(f"{where}: expected a list of time steps, got {type(seq).__name__}")
    roll = np.zeros((len(seq), KEYS), dtype=np.uint8)
    for t, step in enumerate(seq):
        if not isinstance(step, list) or not all(isinstance(p, int) and not isinstance(p, bool)
                                                 for p in step):
            raise SeqlabError(f"{where}, step {t}: expected a list of MIDI pitches (ints), got "
                              f"{str(step)[:40]}")
        bad = [p for p in step if not LOW <= p < LOW + KEYS]
        if bad:
            raise SeqlabError(f"{where}, step {t}: pitch {bad[0]} is outside the piano's "
                              f"{LOW}..{LOW + KEYS - 1}")
        roll[t, [p - LOW for p in step]] = 1
    return roll


def read_rolls(path: str | Path) -> dict[str, list[Roll]]:
    """The splits of a piano-roll JSON file (a bare list of sequences is the ``test`` split)."""
    p = Path(path)
    if not p.is_file():
        raise SeqlabError(f"{p}: file not found")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SeqlabError(f"{p}: expected a piano-roll JSON file, got unreadable content ({e})"
                          ) from None
    if isinstance(obj, list):
        obj = {"test": obj}
    if not isinstance(obj, dict) or not set(obj) & set(SPLITS):
        raise SeqlabError(f"{p}: expected an object with train/valid/test lists of sequences "
                          "or a list of sequences")
    out = {}
    for name in SPLITS:
        seqs = obj.get(name, [])
        if not isinstance(seqs, list):
            raise SeqlabError(f"{p}: {name}: expected a list of sequences")
        out[name] = [_sequence(s, f"{p}: {name} sequence {i}") for i, s in enumerate(seqs)]
    return out


def roll_to_steps(roll: Roll) -> list[list[int]]:
    """A piano-roll (T, 88) back to lists of MIDI pitches."""
    return [[int(k) + LOW for k in np.flatnonzero(frame)] for frame in roll]


# --- batches ----------------------------------------------------------------------------------
@dataclass
class RollBatch:
    """Right-padded windows of piano-rolls; x is y shifted one step right."""

    x: torch.Tensor  # (B, T, 88) float: the roll at t - 1 (zeros before the first frame)
    y: torch.Tensor  # (B, T, 88) float: the roll at t, the target
    mask: torch.Tensor  # (B, T) bool: frames that count in the loss


def shifted(roll: Roll) -> np.ndarray:
    """The model's input for `roll` (T, 88): a zero frame, then roll[:-1]."""
    return np.concatenate([np.zeros((1, roll.shape[1]), roll.dtype), roll[:-1]])


def make_batch(rolls: Sequence[Roll], score_first: bool = True,
               starts: Sequence[int] | None = None, length: int | None = None) -> RollBatch:
    """Windows ``roll[s : s + length]`` (whole sequences by default) with their shifted inputs.
    The first frame of a sequence counts only with `score_first`."""
    starts = starts or [0] * len(rolls)
    parts = [(shifted(r)[s:s + length] if length else shifted(r)[s:],
              r[s:s + length] if length else r[s:], s) for r, s in zip(rolls, starts,
                                                                       strict=True)]
    B, T = len(parts), max(len(p[1]) for p in parts)
    x, y = torch.zeros(B, T, KEYS), torch.zeros(B, T, KEYS)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (xi, yi, s) in enumerate(parts):
        x[b, :len(xi)], y[b, :len(yi)] = torch.from_numpy(xi), torch.from_numpy(yi)
        mask[b, :len(yi)] = True
        if s == 0 and not score_first:
            mask[b, 0] = False
    return RollBatch(x, y, mask)


class RollBatcher(Cursor):
    """Shuffled windows of at most `length` frames (longer sequences are cut into consecutive
    windows, each starting from a fresh state with the true previous frame as input); the
    position is (epoch, index)."""

    def __init__(self, rolls: list[Roll], batch_size: int, length: int, seed: int) -> None:
        self.windows = [(i, s) for i, r in enumerate(rolls) for s in range(0, len(r), length)]
        if len(self.windows) < batch_size:
            raise SeqlabError(f"expected at least train.batch_size = {batch_size} training "
                              f"windows of train.seq_len = {length} frames, got "
                              f"{len(self.windows)}")
        self.rolls, self.batch_size, self.length, self.seed = rolls, batch_size, length, seed
        self._frames = 0

    def next(self) -> tuple[RollBatch, bool]:
        start = self.take(self.batch_size, len(self.windows))
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.windows))
        chosen = [self.windows[i] for i in order[start:start + self.batch_size]]
        batch = make_batch([self.rolls[i] for i, _ in chosen], True, [s for _, s in chosen],
                           self.length)
        self._frames = int(batch.mask.sum())
        return batch, True

    def next_epoch(self) -> int:
        return self.epoch

    def tokens_per_batch(self) -> int:
        return self._frames  # frames of the last batch


# --- the metric -------------------------------------------------------------------------------
@dataclass
class MusicEvaluation(ScoreRow):
    model: str
    split: str
    sequences: int
    frames: int  # frames scored
    nats: float  # total negative log-likelihood
    nll_per_step: float  # nats / frames: the TCN paper's figure
    seconds: float

    def summary(self) -> str:
        return (f"{self.model} on {self.split}: {self.nll_per_step:.4f} NLL per step, "
                f"{self.frames:,} frames in {self.sequences} sequences")


def frame_nll(model: Any, rolls: Sequence[Roll], score_first: bool = False,
              batch_frames: int = 16384) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of the scored frames of `rolls`, and their count.
    Sequences are scored whole, in batches of similar length."""
    order = sorted(range(len(rolls)), key=lambda i: len(rolls[i]))
    nats, frames, i = 0.0, 0, 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j - i + 1) * len(rolls[order[j]]) <= batch_frames:
            j += 1
        batch = make_batch([rolls[k] for k in order[i:j]], score_first)
        lp = model.frame_log_prob(batch)  # (B, T)
        nats -= float(lp[batch.mask].double().sum())
        frames += int(batch.mask.sum())
        i = j
    return nats, frames


# --- the task ---------------------------------------------------------------------------------
MusicData = Splits[list[Roll]]


class PolyphonicMusic:
    """Polyphonic music modelling on piano-rolls (the `Task` protocol)."""

    name: ClassVar[str] = "music"
    DataConfig: ClassVar[type] = MusicDataConfig
    models: ClassVar[dict[str, tuple[str, dict[str, Any]]]] = {  # an LSTM of 200 by default
        "music-lstm": ("music", {"cell": "lstm"}),
        "music-gru": ("music", {"cell": "gru"}),
        "music-rnn": ("music", {"cell": "rnn"}),
        "music-tcn": ("music", {"stack": "conv"}),  # Bai et al.: k=5, 4 levels, 150 channels
        "music-nade": ("music", {"output": "nade"}),  # LSTM + NADE over the keys
        "music-made": ("music", {"output": "made", "nade_hidden": 300}),  # LSTM + MADE
    }
    metric: ClassVar[str] = "nll_per_step"
    metrics: ClassVar[tuple[str, ...]] = ("nll_per_step",)
    mode: ClassVar[str] = "min"

    def prepare(self, cfg: MusicDataConfig, workdir: Path, vocab: Any = None, model: Any = None
                ) -> MusicData:
        if not cfg.path:
            raise SeqlabError("data.path: expected a piano-roll JSON file (--data), got none")
        splits = read_rolls(cfg.path)
        if not splits["train"]:
            raise SeqlabError(f"{cfg.path}: expected training sequences, got none")
        return Splits(None, splits["train"], splits["valid"], splits["test"])

    def save_vocab(self, vocab: Any, path: Path) -> None:
        write_json(path, {"low": LOW, "keys": KEYS})  # the fixed 88-key range

    def load_vocab(self, path: Path) -> Any:
        return None

    def describe_data(self, data: MusicData) -> str:
        return " / ".join(f"{len(s)} sequences ({sum(map(len, s)):,} frames) {n}"
                          for n, s in zip(SPLITS, (data.train, data.valid, data.test),
                                          strict=True))

    def batches(self, data: MusicData, cfg: MusicDataConfig, train: Any, world: World) -> Any:
        return shard(RollBatcher(data.train, train.batch_size, train.seq_len, train.seed),
                     world)

    def estimator_inputs(self, data: MusicData) -> tuple[Any, Any, Any]:
        raise SeqlabError("the music task trains torch models only")

    def validate(self, model: Any, data: MusicData) -> Callable[[], Metrics] | None:
        if not data.valid:
            return None
        return lambda: {"nll_per_step": self.evaluate(model, data.valid, split_name="valid",
                                                      name="").nll_per_step}

    def evaluate(self, model: Any, split: list[Roll], *, split_name: str, name: str
                 ) -> MusicEvaluation:
        t0 = time.perf_counter()
        nats, frames = frame_nll(model, split)
        return MusicEvaluation(model=name, split=split_name, sequences=len(split), frames=frames,
                               nats=nats, nll_per_step=nats / frames if frames else float("nan"),
                               seconds=time.perf_counter() - t0)

    def read_eval_file(self, model: Any, path: str, workdir: Path) -> list[Roll]:
        rolls = read_rolls(path)["test"]
        if not rolls:
            raise SeqlabError(f"{path}: expected a test split to score, got none")
        return rolls

    def predict(self, model: Any, inputs: Sequence[str], **options: Any) -> list[str]:
        """For each line, a JSON list of time steps (a prompt): a JSON list of ``steps``
        (default 16) sampled continuation steps."""
        steps, seed = int(options.get("steps") or 16), int(options.get("seed") or 0)
        out = []
        for n, line in enumerate(inputs):
            try:
                prompt = _sequence(json.loads(line), f"input line {n + 1}")
            except json.JSONDecodeError as e:
                raise SeqlabError(f"input line {n + 1}: expected a JSON list of time steps ({e})"
                                  ) from None
            cont = model.generate(prompt, steps, seed=seed)[len(prompt):]
            out.append(json.dumps(roll_to_steps(cont), separators=(",", ":")))
        return out

    def add_commands(self, sub: Any) -> dict[str, Callable[..., int]]:
        s = sub.add_parser("music-sample", help="continue a piano-roll; write MIDI and a PNG")
        s.add_argument("run", help="music run folder or checkpoint file")
        s.add_argument("--prompt-from", help="piano-roll JSON: a data file or a list of steps")
        s.add_argument("--prompt-split", default="test", choices=SPLITS,
                       help="split of a data file to take the prompt from (default: test)")
        s.add_argument("--prompt-index", type=int, default=0, help="which sequence (default 0)")
        s.add_argument("--prompt-steps", type=int, help="keep only its first N steps")
        s.add_argument("--steps", type=int, default=64, help="steps to generate (default 64)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--temperature", type=float, default=1.0)
        s.add_argument("--step-seconds", type=float, default=0.25,
                       help="duration of one time step in the MIDI file (default 0.25)")
        s.add_argument("--out", required=True, help="MIDI file to write (.mid added if missing)")
        s.add_argument("--png", help="piano-roll picture (default: --out with .png)")
        return {"music-sample": cmd_music_sample}


# --- output: MIDI and a picture ---------------------------------------------------------------
def write_midi(roll: Roll, path: str | Path, step_seconds: float = 0.25) -> None:
    """A piano-roll as a one-track MIDI file (atomic); a key held over consecutive steps is one
    note, as the roll cannot tell a held note from a repeated one."""
    import mido

    tpb = 480  # ticks per beat; at 120 bpm a beat is 0.5 s
    step = max(1, round(step_seconds / 0.5 * tpb))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    frames = np.concatenate([np.zeros((1, KEYS), np.uint8), roll, np.zeros((1, KEYS), np.uint8)])
    last = 0  # tick of the last event
    for t in range(1, len(frames)):
        change = frames[t].astype(int) - frames[t - 1].astype(int)
        tick = (t - 1) * step
        for k in np.flatnonzero(change < 0):
            track.append(mido.Message("note_off", note=int(k) + LOW, velocity=0, time=tick - last))
            last = tick
        for k in np.flatnonzero(change > 0):
            track.append(mido.Message("note_on", note=int(k) + LOW, velocity=80, time=tick - last))
            last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=tpb, tracks=[track])
    buf = io.BytesIO()
    midi.save(file=buf)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())


def draw_roll(roll: Roll, path: str | Path, prompt_steps: int = 0, title: str = "") -> None:
    """A piano-roll picture (PNG, atomic): time across, pitch up; the prompt is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, len(roll) / 16), 4))
    ax.imshow(roll.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
              extent=(0, len(roll), LOW - 0.5, LOW + KEYS - 0.5))
    if prompt_steps:
        ax.axvline(prompt_steps, color="tab:red", lw=1, label="end of prompt")
        ax.legend(loc="upper right")
    ax.set(xlabel="time step", ylabel="MIDI pitch", title=title)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _prompt(args: Any) -> Roll:
    if not args.prompt_from:
        return np.zeros((0, KEYS), np.uint8)
    rolls = read_rolls(args.prompt_from)
    split = rolls[args.prompt_split] or rolls["test"]
    if not 0 <= args.prompt_index < len(split):
        raise SeqlabError(f"{args.prompt_from}: --prompt-index must be in [0, {len(split)}), "
                          f"got {args.prompt_index}")
    roll = split[args.prompt_index]
    return roll[:args.prompt_steps] if args.prompt_steps is not None else roll


def cmd_music_sample(args: Any) -> int:
    """``seqlab music-sample RUN``: continue a prompt, write MIDI and a piano-roll PNG."""
    from seqlab.experiment import load_run, task_of

    if args.steps < 1 or args.temperature <= 0 or args.step_seconds <= 0:
        raise SeqlabError("--steps must be >= 1, --temperature and --step-seconds > 0, got "
                          f"{args.steps}, {args.temperature}, {args.step_seconds}")
    model, config = load_run(args.run)
    if not isinstance(task_of(model, config), PolyphonicMusic):
        raise SeqlabError(f"{args.run}: expected a music run")
    prompt = _prompt(args)
    roll = model.generate(prompt, args.steps, seed=args.seed, temperature=args.temperature)
    midi = Path(args.out)
    if midi.suffix.lower() not in (".mid", ".midi"):  # players go by the extension
        midi = midi.with_name(midi.name + ".mid")
    png = args.png or str(midi.with_suffix(".png"))
    write_midi(roll, str(midi), args.step_seconds)
    draw_roll(roll, png, len(prompt), f"{model.name}: {len(prompt)} prompt + {args.steps} steps")
    print(f"wrote {midi} and {png} ({len(prompt)} prompt steps, {args.steps} generated)")
    return 0
