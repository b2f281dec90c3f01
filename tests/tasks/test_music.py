"""The music task: its NLL against a hand computation, the autoregressive note layers'
normalisation, causality of every stack, the CLI round trip and exact reloading."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from seqlab import models
from seqlab.cli import main
from seqlab.errors import SeqlabError
from seqlab.models.music import MaskedNotes, MusicModel, NoteNADE
from seqlab.tasks import get
from seqlab.tasks.music import KEYS, LOW, make_batch, read_rolls

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

NAMES = ["music-lstm", "music-gru", "music-rnn", "music-tcn", "music-nade", "music-made"]
SMALL = {"recurrent": {"hidden": 8, "layers": 2}, "conv": {"channels": 8, "levels": 2},
         "nade_hidden": 6}


def small(name: str) -> MusicModel:
    torch.manual_seed(0)
    return models.build(name, None, SMALL)


def tiny_rolls(n: int, length: int, seed: int) -> list[list[list[int]]]:
    """Seeded chorale-like sequences: a rising triad on a random root, held two steps."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        root = int(rng.integers(48, 60))
        out.append([[root + (t // 2) % 5, root + 4 + (t // 2) % 5, root + 7] for t in
                    range(length)])
    return out


def test_nll_per_step_is_the_tcn_papers_figure() -> None:
    """Frames 1..T-1 of every sequence, each the sum over 88 keys of the binary cross-entropy,
    totalled over the split and divided by the number of those frames."""
    model = small("music-lstm")
    with torch.no_grad():
        for p in model.notes.parameters():
            p.zero_()
        model.notes.proj.bias[:] = math.log(0.2 / 0.8)  # every key sounds with p = 0.2
    rolls = [np.zeros((3, KEYS), np.uint8), np.zeros((2, KEYS), np.uint8)]
    rolls[0][1, [0, 5]] = 1  # frame 1: two keys
    rolls[0][2, 7] = 1  # frame 2: one key
    rolls[1][0, :] = 1  # frame 0 of a sequence is never scored
    p = 0.2
    hand = [-(2 * math.log(p) + 86 * math.log(1 - p)), -(math.log(p) + 87 * math.log(1 - p)),
            -88 * math.log(1 - p)]  # the three scored frames
    e = get("music").evaluate(model, rolls, split_name="test", name="x")
    assert e.frames == 3
    assert e.nll_per_step == pytest.approx(sum(hand) / 3, rel=1e-6)


@pytest.mark.parametrize("layer", [NoteNADE(3, 5, 4), MaskedNotes(3, 5, 9)],
                         ids=["nade", "made"])
def test_autoregressive_note_layers_sum_to_one_over_all_chords(layer: torch.nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    chords = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))  # (32, 5)
    for h in torch.randn(3, 3):
        with torch.no_grad():
            total = layer.log_prob(h.expand(len(chords), 3), chords).double().exp().sum()
        assert float(total) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_future_frames_do_not_change_earlier_outputs(name: str) -> None:
    model = small(name).eval()
    rng = np.random.default_rng(0)
    roll = (rng.random((20, KEYS)) < 0.1).astype(np.uint8)
    other = roll.copy()
    other[12:] = (rng.random((8, KEYS)) < 0.1)
    a = model.frame_log_prob(make_batch([roll]))[0]
    b = model.frame_log_prob(make_batch([other]))[0]
    assert torch.equal(a[:12], b[:12])  # frame 12 changed: its own score may change
    assert not torch.equal(a[12:], b[12:])


@pytest.mark.parametrize("name", ["music-lstm", "music-tcn", "music-made"])
def test_generation_keeps_the_prompt_and_is_seeded(name: str) -> None:
    model = small(name)
    prompt = np.zeros((5, KEYS), np.uint8)
    prompt[:, 40] = 1
    out = model.generate(prompt, 6, seed=3)
    assert out.shape == (11, KEYS) and np.array_equal(out[:5], prompt)
    assert np.array_equal(out, model.generate(prompt, 6, seed=3))


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": [[[60, 64]]', encoding="utf-8")
    with pytest.raises(SeqlabError, match=r"bad\.json"):
        read_rolls(bad)
    bad.write_text(json.dumps({"train": [[[60], [120]]]}), encoding="utf-8")
    with pytest.raises(SeqlabError, match=r"bad.json: train sequence 0, step 1: pitch 120"):
        read_rolls(bad)


def test_checkpoint_reload_scores_identically(tmp_path: Path) -> None:
    model = small("music-made")
    rolls = list(read_rolls_from(tiny_rolls(3, 9, 5)))
    model.save(tmp_path / "m.safetensors")
    again = models.load(tmp_path / "m.safetensors")
    task = get("music")
    a = task.evaluate(model, rolls, split_name="t", name="")
    b = task.evaluate(again, rolls, split_name="t", name="")
    assert a.nats == b.nats and a.frames == b.frames


def read_rolls_from(seqs: list[list[list[int]]]) -> np.ndarray:
    out = np.zeros((len(seqs), len(seqs[0]), KEYS), np.uint8)
    for i, s in enumerate(seqs):
        for t, step in enumerate(s):
            out[i, t, [p - LOW for p in step]] = 1
    return out


def test_cli_train_eval_sample_round_trip(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rolls.json"
    data.write_text(json.dumps({"train": tiny_rolls(24, 12, 0), "valid": tiny_rolls(4, 12, 1),
                                "test": tiny_rolls(4, 12, 2)}), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--model", "music-made", "--data", str(data), "--out", str(out),
                 "train.max_steps=30", "train.batch_size=8", "train.lr=1e-2",
                 "train.eval_interval=15", "train.progress=false", "train.precision=fp32",
                 "model.recurrent.hidden=16", "model.nade_hidden=16"]) == 0
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    test_logged = next(r for r in final if r.get("kind") == "final" and r["split"] == "test")
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["nll_per_step"] == test_logged["nll_per_step"]
    assert scored["nll_per_step"] < 88 * math.log(2)  # learned something: below coin flips
    assert main(["eval", str(out), "--data", str(data), "--json"]) == 0  # the file's test split
    assert json.loads(capsys.readouterr().out)["nll_per_step"] == scored["nll_per_step"]
    midi, png = tmp_path / "x.mid", tmp_path / "x.png"
    assert main(["music-sample", str(out), "--prompt-from", str(data), "--prompt-steps", "6",
                 "--steps", "10", "--out", str(midi)]) == 0
    notes = [m for m in mido.MidiFile(str(midi)).tracks[0] if m.type == "note_on"]
    assert notes and all(LOW <= m.note < LOW + KEYS for m in notes)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["music-sample", str(out), "--prompt-from", str(data), "--prompt-steps", "6",
                 "--steps", "10", "--out", str(tmp_path / "y")]) == 0  # no extension given
    assert (tmp_path / "y.mid").read_bytes() == midi.read_bytes() and (tmp_path / "y.png").exists()
    data.write_text(json.dumps({"train": [[[10]]]}), encoding="utf-8")
    assert main(["eval", str(out), "--data", str(data)]) == 2
    assert "rolls.json" in capsys.readouterr().err


@pytest.mark.data
def test_reads_the_shared_jsb_chorales() -> None:
    splits = read_rolls(SHARED_DATA / "music" / "jsb_chorales" / "jsb_chorales.json")
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [229, 76, 77]
    assert sum(len(r) for r in splits["train"]) == 13807


def test_compare_ranks_music_models_by_nll_per_step(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rolls.json"
    data.write_text(json.dumps({"train": tiny_rolls(16, 10, 0), "valid": tiny_rolls(4, 10, 1),
                                "test": tiny_rolls(4, 10, 2)}), encoding="utf-8")
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(data), "--models",
                 "music-gru,music-tcn",
                 "--max-steps", "4", "--out", str(out), "train.batch_size=4",
                 "train.progress=false", "train.eval_interval=2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert {r["metric"] for r in rows} == {"nll_per_step"}
    assert all(r["test_nll_per_step"] > 0 for r in rows)
    assert "nll/step" in (out / "leaderboard.md").read_text()


def test_size_overrides_keep_the_presets_cell() -> None:
    assert small("music-gru").stack.cfg.cell == "gru"  # SMALL replaces the recurrent section
    with pytest.raises(SeqlabError, match=r"model\.cell"):
        models.build("music-lstm", None, {"recurrent": {"cell": "gru"}})
