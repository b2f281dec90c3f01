"""The raw-audio task: mu-law, WAV input and output, resampling, the WaveNet's queue generation
against its full pass, the CLI round trip and bad input."""

from __future__ import annotations

import json
import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab import models
from seqlab.cli import main
from seqlab.data import audio
from seqlab.data.audio import (
    MU,
    SILENCE,
    mu_compress,
    mu_decode,
    mu_encode,
    read_wav,
    resample,
    write_wav,
)
from seqlab.errors import SeqlabError
from seqlab.tasks.audio import AudioBatcher, Clips, hold_out

TINY = {"emb_dim": 6, "channels": 8, "skip_channels": 8, "levels": 4, "blocks": 2}
FAST = ["train.max_steps=4", "train.eval_interval=2", "train.batch_size=2",
        "train.seq_len=64", "train.progress=false", *[f"model.{k}={v}" for k, v in TINY.items()]]


def run(*args: object) -> int:
    return main([str(a) for a in args])


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def tone(path: Path, seconds: float = 1.0, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """A 220 Hz sine plus a little noise, written as 16-bit PCM; the samples written."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(len(t))
    write_wav(path, x, rate)
    return x


# --- mu-law -------------------------------------------------------------------------------------
def test_mu_law_golden_values() -> None:
    """The textbook law F(x) = sign(x) ln(1 + 255|x|) / ln 256, quantised to 256 codes."""
    assert mu_compress(np.array([0.5]))[0] == pytest.approx(math.log(128.5) / math.log(256))
    assert mu_compress(np.array([-0.01]))[0] == pytest.approx(-math.log(3.55) / math.log(256))
    x = np.array([-1.0, -0.5, -0.01, 0.0, 0.01, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(mu_encode(x), [0, 16, 98, 128, 157, 239, 255, 255])
    np.testing.assert_allclose(mu_decode(np.array([0, 255])), [-1.0, 1.0])
    # code q decodes to y = 2q/255 - 1 expanded: ((1 + 255)^|y| - 1) / 255
    np.testing.assert_allclose(mu_decode(np.array([239])), [(256 ** (223 / 255) - 1) / 255])
    assert mu_decode(np.array([SILENCE]))[0] == pytest.approx((256 ** (1 / 255) - 1) / 255)


def test_mu_law_round_trip_is_within_the_quantisation_step() -> None:
    x = np.concatenate([np.linspace(-1, 1, 20001), np.random.default_rng(0).uniform(-1, 1, 5000)])
    q = mu_encode(x)
    back = mu_decode(q)
    # in the companded domain the error is at most half a step (1/255 of 2/255)
    assert np.abs(mu_compress(back) - mu_compress(x)).max() <= 1 / MU + 1e-12
    # in the linear domain, at most the width of the code's own bin
    lo = np.sign(2 * (q - 0.5) / MU - 1) * np.expm1(np.abs(2 * (q - 0.5) / MU - 1)
                                                     * math.log1p(MU)) / MU
    hi = np.sign(2 * (q + 0.5) / MU - 1) * np.expm1(np.abs(2 * (q + 0.5) / MU - 1)
                                                     * math.log1p(MU)) / MU
    assert np.all(np.abs(back - x) <= (hi - lo) + 1e-12)
    np.testing.assert_array_equal(mu_encode(mu_decode(np.arange(256))), np.arange(256))


# --- WAV and resampling -------------------------------------------------------------------------
def test_wav_round_trip(tmp_path: Path) -> None:
    x = tone(tmp_path / "a.wav", 0.25, 16000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and back.shape == x.shape
    assert np.abs(back - x).max() <= 0.5 / 32768 + 1e-12


@pytest.mark.parametrize("width", [1, 3, 4])
def test_other_widths_and_stereo_read_as_mono_floats(tmp_path: Path, width: int) -> None:
    ref = np.array([0.0, 0.5, -0.5, 0.25])
    scale = 1 << (8 * width - 1)
    ints = np.round(ref * scale).astype(np.int64)
    left, right = ints, -ints // 2  # stereo: the mean of the two channels
    frames = np.stack([left, right], 1).ravel()
    if width == 1:
        raw = (frames + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in frames)
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(raw)
    x, rate = read_wav(tmp_path / "s.wav")
    assert rate == 8000
    np.testing.assert_allclose(x, (left + right) / 2 / scale, atol=1e-12)


def test_resample_keeps_a_tone_and_its_duration() -> None:
    t = np.arange(22050) / 22050
    y = resample(0.5 * np.sin(2 * np.pi * 440 * t), 22050, 8000)
    assert len(y) == 8000
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    assert np.abs(y - ref)[100:-100].max() < 1e-3  # away from the zero-padded edges
    up = resample(y, 8000, 16000)
    assert len(up) == 16000
    np.testing.assert_allclose(up[::2][100:-100], y[100:-100], atol=1e-3)


# --- the model ----------------------------------------------------------------------------------
def _tiny() -> object:
    torch.manual_seed(0)
    return models.build("wavenet-audio", None, TINY)


def test_queue_generation_equals_the_full_forward_pass() -> None:
    """Stepping one code at a time through the queues gives the full pass's log-probs; a
    sampled sequence scores the same both ways."""
    model = _tiny()
    codes = np.random.default_rng(1).integers(0, 256, 150)
    full = model.log_prob(codes)  # one chunked pass
    stepped, state = [], None
    logits, state = model.step(SILENCE, state)
    for c in codes:
        stepped.append(float(torch.log_softmax(logits.double(), -1)[c]))
        logits, state = model.step(int(c), state)
    np.testing.assert_allclose(stepped, full, atol=1e-5)
    model.eval_chunk = 16  # chunked scoring is exact too
    np.testing.assert_allclose(model.log_prob(codes), full, atol=1e-5)
    a = model.generate(60, seed=3)
    assert np.array_equal(a, model.generate(60, seed=3)) and a.dtype == np.uint8
    # the fast stepper `generate` uses draws what stepping the model itself draws
    gen, ref_codes = torch.Generator().manual_seed(3), []
    logits, state = model.prime(np.zeros(0))
    for _ in range(60):
        ref_codes.append(int(torch.multinomial(logits.float().softmax(-1), 1, generator=gen)))
        logits, state = model.step(ref_codes[-1], state)
    assert a.tolist() == ref_codes
    assert not np.array_equal(a, model.generate(60, seed=4))
    # a prompt is the same as having generated it
    b = model.generate(20, prompt=a[:40], seed=9)
    logits, _ = model.prime(a[:40])
    ref, state = model.step(SILENCE, None)
    for c in a[:40]:
        ref, state = model.step(int(c), state)
    np.testing.assert_allclose(logits, ref, atol=1e-5)
    assert b.shape == (20,)


def test_training_windows_carry_the_receptive_field_and_resume(tmp_path: Path) -> None:
    stream = np.arange(1000) % 256
    batcher = AudioBatcher(Clips([stream.astype(np.uint8)], ["s"]), 2, 8, 5, seed=0)
    (x, y), _ = batcher.next()
    assert x.shape == y.shape == (2, 13)
    assert torch.all(y[:, :5] == -100)
    np.testing.assert_array_equal(x[:, 6:], y[:, 5:-1])  # inputs are the previous codes
    position = batcher.state_dict()
    again = batcher.next()[0]
    batcher.load_state_dict(position)
    assert all(torch.equal(a, b) for a, b in zip(again, batcher.next()[0], strict=True))


def test_hold_out_cuts_the_last_fractions_by_time() -> None:
    clips = Clips([np.zeros(10, np.uint8), np.ones(6, np.uint8)], ["a", "b"])
    train, valid, test = hold_out(clips, 4, 3)
    assert (len(train), len(valid), len(test)) == (9, 4, 3)
    assert valid.names == ["a[9:10]", "b[0:3]"] and test.names == ["b[3:6]"]


# --- the CLI ------------------------------------------------------------------------------------
def test_train_eval_sample_round_trip(tmp_path: Path, capsys) -> None:
    tone(tmp_path / "tone.wav", 1.0, 16000)  # resampled to the task's 8 kHz
    out = tmp_path / "R"
    assert run("train", "--model", "wavenet-audio", "--data", tmp_path / "tone.wav",
               "--out", out, *FAST) == 0
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    result = last_json(capsys.readouterr().out)
    assert result["model"] == "wavenet-audio" and result["samples"] == 400
    assert result["bits_per_sample"] == pytest.approx(result["nats_per_sample"] / math.log(2))
    assert 0 < result["bits_per_sample"] < 9
    other = tmp_path / "other.wav"
    tone(other, 0.1, 8000, seed=1)
    assert run("eval", out / "best.safetensors", "--data", other, "--json") == 0
    assert last_json(capsys.readouterr().out)["samples"] == 800
    assert run("audio-sample", out, "--seconds", 0.01, "--out", tmp_path / "x.wav",
               "--prompt", other, "--prompt-seconds", 0.005) == 0
    x, rate = read_wav(tmp_path / "x.wav")
    assert rate == 8000 and len(x) == 40 + 80 and np.abs(x).max() <= 1


def test_in_compare_with_its_own_metric(tmp_path: Path, capsys) -> None:
    tone(tmp_path / "tone.wav", 0.5)
    extra = [a for a in FAST if a.startswith("train.")]
    assert run("compare", "--models", "wavenet-audio:levels=2,wavenet-audio:levels=3",
               "--data", tmp_path / "tone.wav", "--out", tmp_path / "c", "--json",
               *extra) == 0
    rows = last_json(capsys.readouterr().out)["rows"]
    assert {r["metric"] for r in rows} == {"bits_per_sample"}
    assert all(0 < r["test_bits_per_sample"] < 9 for r in rows)


def _header(bits: int) -> bytes:
    """A RIFF/WAVE header for 4 bytes of PCM data with `bits` bits per sample."""
    width = (bits + 7) // 8
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000 * width, width, bits)
    data = b"\0" * 4
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + \
        struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(("content", "expected"), [
    (b"hello, not a wav file\n" * 4, "expected an integer PCM WAV file"),
    (_header(40), "expected 8-, 16-, 24- or 32-bit samples, got 40-bit"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path: Path, capsys,
                                                          content: bytes, expected: str) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    out = tmp_path / "R"
    assert run("train", "--model", "wavenet-audio", "--data", bad, "--out", out, *FAST) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and str(bad) in err and len(err.splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    with pytest.raises(SeqlabError, match="expected"):
        read_wav(bad)


def test_an_empty_folder_and_a_bad_rate_are_errors(tmp_path: Path, capsys) -> None:
    assert run("train", "--model", "wavenet-audio", "--data", tmp_path, "--out",
               tmp_path / "R", *FAST) == 2
    assert "expected a folder of .wav files" in capsys.readouterr().err
    tone(tmp_path / "t.wav", 0.2)
    assert run("train", "--model", "wavenet-audio", "--data", tmp_path / "t.wav", "--out",
               tmp_path / "R", "data.sample_rate=10", *FAST) == 2
    assert "sample rate in 1000..192000 Hz, got 10" in capsys.readouterr().err


# --- the speech generator -----------------------------------------------------------------------
def test_speech_plan_is_seeded_and_its_splits_share_no_sentence() -> None:
    a, b = audio.plan((60, 10, 10), seed=0), audio.plan((60, 10, 10), seed=0)
    assert a == b and a != audio.plan((60, 10, 10), seed=1)
    texts = {k: {u.text for u in v} for k, v in a.items()}
    assert not texts["train"] & (texts["valid"] | texts["test"])
    assert not texts["valid"] & texts["test"]
    assert len({u.voice for u in a["train"]}) > 3


def test_speech_generator_skips_cleanly_without_espeak(tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    monkeypatch.setattr(audio, "espeak", lambda: None)
    assert run("audio-speech", "--out", tmp_path / "s") == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("skipped: espeak-ng") and len(out.splitlines()) == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(audio.espeak() is None, reason="espeak-ng is not installed")
def test_speech_generator_writes_wav_folders(tmp_path: Path) -> None:
    done = audio.speech_corpus(tmp_path, (2, 1, 1), seed=0, sample_rate=8000)
    assert set(done) == {"train", "valid", "test"}
    for split in ("train", "valid", "test"):
        files = sorted((tmp_path / split).glob("*.wav"))
        assert files and read_wav(files[0])[1] == 8000
    x, _ = read_wav(sorted((tmp_path / "train").glob("*.wav"))[0])
    assert np.abs(x).max() > 0.05  # speech, not silence
