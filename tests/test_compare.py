"""``seqlab compare``: the issue's command shape, rows that agree with ``seqlab eval``, a family
that is neither neural nor an n-gram, resuming, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import torch

from seqlab import models
from seqlab.cli import main
from seqlab.data.vocab import Vocab
from seqlab.experiment import evaluate_run
from seqlab.io import load_tensors, save_tensors
from seqlab.models.base import TokenModel
from seqlab.run import Run
from seqlab.tasks.lm import LanguageModeling

TINY = ["train.batch_size=4", "train.seq_len=16", "train.progress=false",
        "train.eval_interval=3", "train.log_interval=2"]


def _json_tail(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def test_issue_command_shape_and_rows(tmp_path: Path, tiny_text: Path, capsys) -> None:
    valid = tmp_path / "valid.txt"
    valid.write_text("the cat sat on the log.\n" * 5, encoding="utf-8")
    out = tmp_path / "cmp"
    code = main(["compare", "--data", str(tiny_text), "--valid", str(valid), "--models",
                 "ngram,window:hidden=16,lstm:hidden=16:emb_dim=8,tcn:channels=8:levels=2",
                 "--max-minutes", "0.01", "--out", str(out), "--json", *TINY])
    assert code == 0
    captured = capsys.readouterr()
    result = _json_tail(captured.out)
    rows = {r["model"]: r for r in result["rows"]}
    # A budget this small ranks warm-ups, and compare says so for each trained family.
    warned = [line.split()[1] for line in captured.err.splitlines()
              if line.startswith("warning: ") and "too short to rank" in line]
    assert warned == ["window:hidden=16", "lstm:hidden=16:emb_dim=8", "tcn:channels=8:levels=2"]
    assert "no --max-minutes" not in captured.err
    assert list(rows) == ["ngram", "window:hidden=16", "lstm:hidden=16:emb_dim=8",
                          "tcn:channels=8:levels=2"]
    for name, row in rows.items():
        run = Path(row["run"])
        # The same number `seqlab eval` gives, through the protocol alone.
        assert row["bits_per_token"] == pytest.approx(evaluate_run(run).bits_per_token, 1e-9)
        assert row["valid_bits_per_token"] == pytest.approx(
            evaluate_run(run, split="valid").bits_per_token, 1e-9)
        tensors, _ = load_tensors(run / "best.safetensors")
        assert row["parameters"] == sum(t.numel() for t in tensors.values()), name
        assert row["tokens_per_sec"] == pytest.approx(row["tokens"] / row["train_seconds"])
    lstm = models.load(Path(rows["lstm:hidden=16:emb_dim=8"]["run"]) / "best.safetensors")
    assert rows["lstm:hidden=16:emb_dim=8"]["parameters"] == lstm.num_parameters()
    assert rows["lstm:hidden=16:emb_dim=8"]["tokens"] == rows["lstm:hidden=16:emb_dim=8"][
        "steps"] * 4 * 16
    assert rows["ngram"]["steps"] is None and rows["ngram"]["tokens"] > 0
    board = json.loads((out / "leaderboard.json").read_text())
    bits = [r["bits_per_token"] for r in board["rows"]]
    assert bits == sorted(bits) and board["data"]["valid"] == str(valid)
    md = (out / "leaderboard.md").read_text()
    assert all(f"| {name} |" in md for name in rows)
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


# --- a family that is neither neural nor an n-gram ---------------------------------------------
def _unigram_config() -> type:
    from dataclasses import dataclass

    @dataclass
    class Config:
        smoothing: float = 1.0  # add-k

    return Config


class UnigramLM(TokenModel):
    """Add-one unigram: the smallest thing that follows the protocol (no trainer, no logs)."""

    family = "unigram"
    Config = _unigram_config()

    def __init__(self, config: Any, vocab: Vocab) -> None:
        self.config, self.vocab = config, vocab

    def fit(self, X: np.ndarray, lengths: list[int] | None = None, *,
            valid: np.ndarray | None = None, run: Run | None = None) -> Self:
        counts = np.bincount(np.asarray(X), minlength=len(self.vocab)) + self.config.smoothing
        self.logp_ = np.log(counts / counts.sum())
        if run is not None and run.best_path is not None:
            self.save(run.best_path)
        return self

    def log_prob(self, X: np.ndarray, lengths: list[int] | None = None) -> np.ndarray:
        return self.logp_[np.asarray(X, dtype=np.int64)]

    def initial_state(self) -> None:
        return None

    def step(self, token: int, state: None) -> tuple[torch.Tensor, None]:
        return torch.from_numpy(self.logp_), None

    def save(self, path: str | Path) -> None:
        save_tensors(path, {"logp": self.logp_}, self.describe())

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        model = cls(cls.config_from(meta), Vocab.from_json(meta["vocab"]))
        model.logp_ = tensors["logp"].numpy()
        return model


def test_any_protocol_family_joins(tmp_path: Path, tiny_text: Path, capsys,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.FAMILIES, "unigram", "tests.test_compare:UnigramLM")
    monkeypatch.setitem(LanguageModeling.models, "unigram", ("unigram", {}))
    families = "unigram,ngram:order=2,hmm"
    code = main(["compare", "--data", str(tiny_text), "--models", families,
                 "--out", str(tmp_path / "c"), "--json", "train.max_steps=5"])
    assert code == 0
    captured = capsys.readouterr()
    rows = {r["model"]: r for r in _json_tail(captured.out)["rows"]}
    assert list(rows) == families.split(",")
    # A budget given as train.max_steps: no note; counting and EM families get no warning.
    assert "no --max-minutes" not in captured.err and "warning:" not in captured.err
    for row in rows.values():  # the same number `seqlab eval` gives, whatever the family
        assert row["bits_per_token"] == pytest.approx(
            evaluate_run(Path(row["run"])).bits_per_token, 1e-9)
    assert (tmp_path / "c" / "learning_curves.png").exists()
    uni = rows["unigram"]
    model = models.load(Path(uni["run"]) / "best.safetensors")
    assert uni["parameters"] == len(model.vocab)  # its one stored array
    assert uni["steps"] is None and uni["tokens"] > 0  # one pass over the training split
    assert uni["bits_per_token"] > rows["ngram:order=2"]["bits_per_token"]


def test_resume_keeps_finished_models(tmp_path: Path, tiny_text: Path, capsys) -> None:
    out = tmp_path / "c"
    args = ["compare", "--data", str(tiny_text), "--max-steps", "4", "--out", str(out), *TINY]
    assert main([*args, "--models", "ngram,gru:hidden=8:emb_dim=4"]) == 0
    before = (out / "gru-hidden-8-emb_dim-4" / "metrics.jsonl").read_bytes()
    assert main([*args, "--models", "ngram,gru:hidden=8:emb_dim=4,rnn:hidden=8", "--resume",
                 "--json"]) == 0
    rows = _json_tail(capsys.readouterr().out)["rows"]
    assert [r["model"] for r in rows] == ["ngram", "gru:hidden=8:emb_dim=4", "rnn:hidden=8"]
    assert (out / "gru-hidden-8-emb_dim-4" / "metrics.jsonl").read_bytes() == before
    assert main([*args, "--models", "ngram"]) == 2  # without --resume, nothing is overwritten
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(("models_arg", "extra", "message"), [
    ("ngram,lstn", [], "unknown model 'lstn'; valid models: ngram, rnn, lstm"),
    ("lstm,lstm", [], "--models lists 'lstm' twice"),
    ("lstm:hiden=3", [], "unknown config key model.hiden; valid keys in model: cell"),
    ("lstm:hidden", [], "--models: expected name:key=value, got 'lstm:hidden'"),
    ("gru:peepholes=true", [], "model.peepholes applies to the lstm cell only"),
    ("lstm", ["model.hidden=3"], "seqlab compare takes data.* and train.* overrides"),
    ("seq2seq", [], "tiny.txt:1: expected source<TAB>target"),  # its own task's data
    ("seq2seq,lstm", [], "seqlab compare ranks models of one task on the same data"),
])
def test_bad_input_is_one_line(models_arg: str, extra: list[str], message: str, tmp_path: Path,
                               tiny_text: Path, capsys) -> None:
    out = tmp_path / "c"
    code = main(["compare", "--data", str(tiny_text), "--models", models_arg, "--out", str(out),
                 *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not out.exists()


def test_default_budget_is_stated(tmp_path: Path, tiny_text: Path, capsys) -> None:
    """Without a budget flag every model trains train.max_steps steps, and compare says so."""
    assert main(["compare", "--data", str(tiny_text), "--models", "ngram",
                 "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "every model trained train.max_steps=2000 steps" in err and "warning:" not in err
