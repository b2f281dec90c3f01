"""The CLI end to end on tiny data, and every bad-input case: one line, non-zero, nothing lost."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqlab.cli import main

TINY_LSTM = ["model.hidden=16", "model.emb_dim=8", "train.batch_size=2", "train.seq_len=16",
             "train.eval_interval=5", "train.progress=false"]


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(tmp_path: Path, tiny_text: Path) -> Path:
    out = tmp_path / "run"
    assert run_cli("train", "--model", "lstm", "--data", tiny_text, "--out", out,
                   "--max-steps", 10, *TINY_LSTM) == 0
    return out


def test_train_eval_sample(trained: Path, tiny_text: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("config.json", "vocab.json", "best.safetensors", "last.safetensors",
                 "metrics.jsonl"):
        assert (trained / name).is_file(), name
    config = json.loads((trained / "config.json").read_text())
    assert config["format_version"] == 1 and config["model"]["name"] == "lstm"
    capsys.readouterr()

    assert run_cli("eval", trained, "--data", tiny_text, "--json") == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"] == "lstm" and result["tokens"] == len(tiny_text.read_text())
    assert 0 < result["bits_per_token"] < 8 and result["unk_tokens"] == 0

    assert run_cli("sample", trained, "--prompt", "the ", "--length", 40, "--seed", 7) == 0
    first = capsys.readouterr().out
    assert run_cli("sample", trained, "--prompt", "the ", "--length", 40, "--seed", 7) == 0
    assert capsys.readouterr().out == first and first.startswith("the ")
    assert len(first) == len("the ") + 40 + 1


def test_eval_counts_unknown_characters(trained: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other.txt"
    other.write_text("the cat ate the £€ fish\n", encoding="utf-8")
    capsys.readouterr()
    assert run_cli("eval", trained, "--data", other, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unk_tokens"] == 4  # '£', '€', 'f', 'i': scored as <unk>, counted, not dropped
    assert result["tokens"] == len("the cat ate the £€ fish\n")


def test_ngram_train_and_word_level(tmp_path: Path, tiny_text: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ng"
    assert run_cli("train", "--model", "ngram", "--data", tiny_text, "--out", out, "--level",
                   "word", "model.order=3") == 0
    capsys.readouterr()
    assert run_cli("eval", out, "--split", "valid", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "ngram" and result["perplexity"] > 1


def test_max_minutes_alone_is_the_budget(tmp_path: Path, tiny_text: Path) -> None:
    """``--max-minutes M`` without a step budget trains for M minutes, not for the default
    train.max_steps; with one, the first budget reached ends the run."""
    from seqlab.run import CLOCK_ONLY

    def train_cfg(out: Path) -> dict:
        return json.loads((out / "config.json").read_text())["train"]

    assert run_cli("train", "--model", "lstm", "--data", tiny_text, "--out", tmp_path / "a",
                   "--max-minutes", 0.005, *TINY_LSTM) == 0
    cfg = train_cfg(tmp_path / "a")
    assert cfg["max_minutes"] == 0.005 and cfg["max_steps"] == CLOCK_ONLY
    steps = [json.loads(line).get("step", 0) for line in
             (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert 0 < max(steps) < CLOCK_ONLY  # the clock ended it
    assert run_cli("train", "--model", "lstm", "--data", tiny_text, "--out", tmp_path / "b",
                   "--max-minutes", 5, "--max-steps", 7, *TINY_LSTM) == 0
    assert train_cfg(tmp_path / "b")["max_steps"] == 7


def test_resume_continues(trained: Path, tiny_text: Path) -> None:
    assert run_cli("train", "--model", "lstm", "--data", tiny_text, "--out", trained,
                   "--max-steps", 15, "--resume", *TINY_LSTM) == 0
    steps = [json.loads(line).get("step") for line in
             (trained / "metrics.jsonl").read_text().splitlines()]
    assert 15 in steps


def test_resume_a_run_written_before_a_config_key_existed(trained: Path, tiny_text: Path) -> None:
    """A key added to seqlab since the run was written compares by its default on --resume."""
    config = json.loads((trained / "config.json").read_text())
    del config["train"]["select_metric"]
    (trained / "config.json").write_text(json.dumps(config))
    assert run_cli("train", "--model", "lstm", "--data", tiny_text, "--out", trained,
                   "--max-steps", 12, "--resume", *TINY_LSTM) == 0
    steps = [json.loads(line).get("step") for line in
             (trained / "metrics.jsonl").read_text().splitlines()]
    assert max(s for s in steps if s is not None) == 12  # it continued from step 10 to 12


def test_resume_needs_only_the_folder_and_the_new_budget(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """--resume starts from the stored config: a tree run with non-default keys continues from
    `train --out R --resume --max-steps N` alone, and a key given again must agree."""
    data = tmp_path / "t.txt"
    data.write_text("(1 (0 a) (1 b))\n(0 (0 c) (1 b))\n" * 20, encoding="utf-8")
    out = tmp_path / "r"
    assert run_cli("train", "--model", "tree-lstm", "--data", data, "--out", out,
                   "--max-steps", 4, "train.batch_size=4", "train.eval_interval=2",
                   "train.progress=false", "model.hidden=8", "model.emb_dim=4") == 0
    config = json.loads((out / "config.json").read_text())
    del config["data"]["labels"]  # as if written before data.labels existed
    (out / "config.json").write_text(json.dumps(config))
    assert run_cli("train", "--out", out, "--resume", "--max-steps", 6) == 0
    steps = [json.loads(line).get("step") for line in
             (out / "metrics.jsonl").read_text().splitlines()]
    assert max(s for s in steps if s is not None) == 6
    capsys.readouterr()
    before = snapshot(out)
    expect_error(capsys, ["train", "--out", out, "--resume", "--max-steps", 8, "model.hidden=16"],
                 "holds a different run: model.hidden is 8 there, 16 now")
    assert snapshot(out) == before


# --- bad input ---------------------------------------------------------------------------
def expect_error(capsys: pytest.CaptureFixture, args: list, pattern: str) -> None:
    capsys.readouterr()
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("seqlab: error: "), err
    assert pattern in err, err


def test_bad_data_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"\x00\x01\xff\xfe" * 50)
    base = ["train", "--model", "ngram", "--out"]
    expect_error(capsys, [*base, tmp_path / "a", "--data", tmp_path / "nope.txt"], "file not found")
    expect_error(capsys, [*base, tmp_path / "b", "--data", empty], "empty file")
    expect_error(capsys, [*base, tmp_path / "c", "--data", binary], "data.level=byte")
    assert run_cli(*base, tmp_path / "d", "--data", binary, "--level", "byte") == 0


def test_unknown_config_key(tmp_path: Path, tiny_text: Path, capsys: pytest.CaptureFixture) -> None:
    expect_error(capsys, ["train", "--data", tiny_text, "--out", tmp_path / "x", "train.lrate=1"],
                 "valid keys in train: max_steps")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: gru\n  hidden_size: 8\n")
    expect_error(capsys, ["train", "--config", cfg, "--data", tiny_text, "--out", tmp_path / "y"],
                 "unknown config key model.hidden_size")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_corrupt_checkpoint(trained: Path, capsys: pytest.CaptureFixture, damage: str) -> None:
    for name in ("best.safetensors", "last.safetensors"):
        ckpt = trained / name
        if damage == "truncate":
            ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
        elif damage == "garbage":
            ckpt.write_bytes(b"not a checkpoint at all" * 10)
        else:
            ckpt.unlink()
    pattern = {"truncate": "corrupt or truncated", "garbage": "corrupt or truncated",
               "missing": "best.safetensors"}[damage]
    expect_error(capsys, ["eval", trained, "--json"], pattern)
    expect_error(capsys, ["sample", trained], pattern)


def test_unknown_prompt_characters(trained: Path, capsys: pytest.CaptureFixture) -> None:
    expect_error(capsys, ["sample", trained, "--prompt", "the Ωmega"], "'Ω'")


def test_out_folder_with_another_run_is_left_alone(trained: Path, tiny_text: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    before = snapshot(trained)
    expect_error(capsys, ["train", "--model", "gru", "--data", tiny_text, "--out", trained],
                 "already holds a run")
    expect_error(capsys, ["train", "--model", "gru", "--data", tiny_text, "--out", trained,
                          "--resume", *TINY_LSTM], "holds a different run: model.name")
    assert snapshot(trained) == before


def test_user_errors_have_no_traceback(tmp_path: Path) -> None:
    """The installed entry point: exit status 2 and one stderr line, no traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "seqlab.cli", "eval", str(tmp_path / "none")],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"seqlab: error: {tmp_path / 'none'}: run folder not found"
