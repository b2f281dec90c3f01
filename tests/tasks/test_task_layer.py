"""The task layer: every task runs through the one pipeline and CLI, and a new task needs only
its module and one registry line (shown by the parity example task)."""

from __future__ import annotations

import ast
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from seqlab import models, tasks
from seqlab.cli import main
from seqlab.tasks.base import BatchSource, Task
from seqlab.tasks.parity import generate, parity

PARITY = ["--model", "parity-rnn", "train.max_steps=200", "train.eval_interval=100",
          "train.batch_size=16", "train.progress=false", "train.lr=1e-2", "data.examples=400",
          "model.recurrent.hidden=16"]


def run(*args: object) -> int:
    return main([str(a) for a in args])


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_every_registered_task_follows_the_protocol() -> None:
    for name in tasks.TASKS:
        task = tasks.get(name)
        assert isinstance(task, Task), name
        assert task.name == name and task.mode in ("min", "max") and task.models


def test_the_example_task_is_one_module_plus_one_registry_line() -> None:
    """Nothing outside seqlab/tasks/parity.py names the parity task, except its registry line."""
    src = Path(tasks.__file__).resolve().parents[1]
    mentions = [p.relative_to(src) for p in src.rglob("*.py")
                if "parity" in p.read_text(encoding="utf-8") and p.name != "parity.py"]
    assert mentions == [Path("tasks/__init__.py")]
    registry = ast.parse(Path(tasks.__file__).read_text(encoding="utf-8"))
    lines = [n for n in ast.walk(registry) if isinstance(n, ast.Constant)
             and isinstance(n.value, str) and "parity" in n.value]
    assert len({n.lineno for n in lines}) == 1


def test_parity_generator_is_seeded_and_tags_are_running_xor() -> None:
    a, b = generate(20, 2, 9, seed=3), generate(20, 2, 9, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, generate(20, 2, 9, seed=4),
                                                         strict=False))
    np.testing.assert_array_equal(parity(np.array([0, 1, 1, 0, 1])), [0, 1, 0, 0, 1])


def test_parity_trains_evaluates_predicts_and_reloads(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p"
    assert run("train", *PARITY, "--out", out) == 0
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    result = last_json(capsys.readouterr().out)
    assert result["model"] == "parity-rnn" and 0.5 < result["token_accuracy"] <= 1
    # a heads run reloads through the registry, and its scores are the pipeline's
    model = models.load(out / "best.safetensors")
    assert model.family == "head" and model.name == "parity-rnn"
    assert run("eval", out / "best.safetensors", "--data", _bits(tmp_path), "--json") == 0
    assert last_json(capsys.readouterr().out)["strings"] == 3
    assert run("predict", out, "--input", _bits(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [len(x) for x in lines] == [4, 1, 6] and set("".join(lines)) <= {"0", "1"}


def _bits(tmp_path: Path) -> Path:
    p = tmp_path / "bits.txt"
    p.write_text("0110\n1\n101010\n", encoding="utf-8")
    return p


def test_parity_in_compare_with_its_own_metric(tmp_path: Path, capsys) -> None:
    assert run("compare", "--models", "parity-rnn,parity-lstm", "--out", tmp_path / "c",
               "--max-steps", 30, "--json", "train.batch_size=16", "train.progress=false",
               "data.examples=200", "train.eval_interval=15") == 0
    rows = last_json(capsys.readouterr().out)["rows"]
    assert {r["metric"] for r in rows} == {"token_accuracy"}
    assert all(0 < r["test_token_accuracy"] <= 1 for r in rows)
    board = json.loads((tmp_path / "c" / "leaderboard.json").read_text())
    scores = [r["token_accuracy"] for r in board["rows"]]
    assert scores == sorted(scores, reverse=True)  # higher is better for accuracy
    capsys.readouterr()
    assert run("compare", "--models", "parity-rnn,lstm", "--out", tmp_path / "d") == 2
    assert "one task" in capsys.readouterr().err


def test_kalman_run_through_the_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "k"
    assert run("train", "--model", "kalman", "--out", out, "data.steps=300",
               "model.n_iter=5") == 0
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    result = last_json(capsys.readouterr().out)
    assert result["model"] == "kalman" and np.isfinite(result["nats_per_step"])
    assert models.load(out / "best.safetensors").family == "kalman"
    series = tmp_path / "s.txt"
    series.write_text("0.1 0.2\n0.3 0.1\n\n1.0 2.0\n1.1 2.1\n1.2 2.2\n", encoding="utf-8")
    assert run("eval", out / "best.safetensors", "--data", series, "--json") == 0
    assert last_json(capsys.readouterr().out)["steps"] == 5


def _tiny_wavs(tmp_path: Path) -> Path:
    """A folder of two 0.1 s 16-bit mono tones at 8 kHz, written with the stdlib's wave."""
    folder = tmp_path / "good"
    folder.mkdir()
    t = np.arange(800) / 8000
    for i, hz in enumerate((220, 330)):
        pcm = np.round(0.4 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
        with wave.open(str(folder / f"{i}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm.tobytes())
    return folder


TASK_ARGS = {  # model, good data (a text file's contents, or a maker of --data), overrides
    "music": ("music-lstm", json.dumps({"train": [[[60, 64], [62], []]] * 8,
                                        "valid": [[[60], [64]]]}),
              ["train.max_steps=2", "train.batch_size=4", "model.recurrent.hidden=8"]),
    "lm": ("ngram", "the cat sat on the mat.\n" * 40, ["model.order=2"]),
    "seq2seq": ("seq2seq", "a b\tb a\nc d e\te d c\n" * 30,
                ["train.max_steps=2", "model.hidden=8", "model.emb_dim=4"]),
    "parity": ("parity-rnn", "0110\n1011\n111\n" * 20, ["train.max_steps=2",
                                                       "train.batch_size=4"]),
    "series": ("kalman", "0.1 0.2\n0.2 0.3\n0.4 0.1\n" * 20, ["model.n_iter=2"]),
    "tagging": ("bilstm-crf", "a O\nbb B-X\nc I-X\n\nd O\n\n" * 20,
                ["train.max_steps=2", "train.batch_size=4", "model.word_dim=4",
                 "model.char_dim=4", "model.char_hidden=4", "model.recurrent.hidden=4"]),
    "tree": ("tree-lstm", "(1 (0 a) (1 b))\n(0 (0 c) (1 b))\n" * 20,
             ["train.max_steps=2", "train.batch_size=4", "model.hidden=8", "model.emb_dim=4"]),
    # Generated data or a folder of WAVs: the retry's --data is "generate" or that folder.
    "memory": ("ntm", lambda tmp: "generate",
               ["train.max_steps=2", "train.batch_size=2", "model.controller=8",
                "model.memory_n=8", "model.memory_m=4", "data.task=copy", "data.min_len=2",
                "data.max_len=4", "data.valid_sequences=4", "data.test_sequences=4"]),
    "image2seq": ("im2latex", lambda tmp: "generate",
                  ["train.max_steps=2", "train.batch_size=4", "data.n_train=8",
                   "data.n_valid=2", "data.n_test=2", "data.max_tokens=12",
                   "model.hidden=8", "model.channels=8", "model.emb_dim=4",
                   "model.decode.beam_size=1", "model.max_tgt_len=14"]),
    "audio": ("wavenet-audio", _tiny_wavs,
              ["train.max_steps=2", "train.batch_size=2", "train.seq_len=32", "model.levels=3",
               "model.blocks=1", "model.channels=4", "model.skip_channels=4",
               "model.emb_dim=4"]),
}


@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_missing_data_leaves_nothing_so_the_retry_succeeds(task: str, tmp_path: Path,
                                                           capsys) -> None:
    """The issue's must-show: ``train --data missing.txt --out D`` then ``train --data good
    --out D`` succeeds, for every task."""
    assert task in TASK_ARGS, "add a case for the new task"
    model, data, extra = TASK_ARGS[task]
    if isinstance(data, str):
        good: Path | str = tmp_path / "good.txt"
        good.write_text(data, encoding="utf-8")
    else:
        good = data(tmp_path)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "run"
    assert run("train", "--model", model, "--data", tmp_path / "missing.txt", "--out", out,
               "train.progress=false", *extra) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert not out.exists() and sorted(tmp_path.iterdir()) == before
    assert run("train", "--model", model, "--data", good, "--out", out,
               "train.progress=false", *extra) == 0
    assert (out / "config.json").is_file() and (out / "best.safetensors").is_file()


def test_batch_sources_follow_the_protocol() -> None:
    import torch

    from seqlab.data.stream import StreamBatcher
    from seqlab.seq2seq.data import PairBatcher, Pairs, PairVocab, build_vocab
    from seqlab.synthetic import TaskBatcher
    from seqlab.tasks.parity import ParityBatcher

    vocab = build_vocab([["a", "b"]], "word")
    pairs = Pairs.encode([(["a"], ["b"]), (["b"], ["a"])], PairVocab(vocab, vocab))
    sources = [StreamBatcher(np.arange(100), 2, 4), PairBatcher(pairs, 2),
               TaskBatcher(torch.zeros(4, 3), torch.zeros(4, 1), 2),
               ParityBatcher(generate(4, 2, 5, 0), 2, 0)]
    for source in sources:
        assert isinstance(source, BatchSource), source
        source.next()
        position = source.state_dict()
        batch, _ = source.next()
        source.load_state_dict(position)  # the position alone says what comes next
        again, _ = source.next()
        flat = lambda b: [t for t in (b if isinstance(b, tuple) else (b.src, b.tgt_out))]  # noqa: E731
        assert all(torch.equal(x, y) for x, y in zip(flat(batch), flat(again), strict=True))


def test_estimators_neither_accept_nor_store_trainer_keys(tmp_path: Path, capsys) -> None:
    """train.seq_len, train.lr, ... mean nothing to a counting model: refused, not stored, and
    so never compared on --resume."""
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat.\n" * 40, encoding="utf-8")
    assert run("train", "--model", "ngram", "--data", text, "--out", tmp_path / "a",
               "train.seq_len=64") == 2
    assert "train.seq_len has no effect on ngram" in capsys.readouterr().err
    assert run("train", "--model", "ngram", "--data", text, "--out", tmp_path / "b") == 0
    stored = json.loads((tmp_path / "b" / "config.json").read_text())["train"]
    assert "max_steps" in stored and not {"seq_len", "batch_size", "lr"} & set(stored)
