"""``seqlab train/eval --model seq2seq`` and ``seqlab translate`` end to end, and bad input: one
line naming the file or line, exit status 2, nothing overwritten."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from tests.conftest import char_vocab
from tests.seq2seq.conftest import reversal_pairs, write_tsv
from tests.test_cli import snapshot

from seqlab import models
from seqlab.cli import main
from seqlab.io import load_tensors

TINY = ["model.hidden=32", "model.emb_dim=16", "train.batch_size=16", "train.eval_interval=10",
        "train.progress=false", "train.warmup_steps=5", "train.lr=0.005"]


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def train(data: Path, out: Path, steps: int, *extra: str) -> int:
    return cli("train", "--model", "seq2seq", "--data", data, "--out", out, "--max-steps", steps,
               *TINY, *extra)


@pytest.fixture
def run(tmp_path: Path, reversal_tsv: Path) -> Path:
    assert train(reversal_tsv, tmp_path / "run", 30) == 0
    return tmp_path / "run"


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_train_eval_translate(run: Path, reversal_tsv: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
                              ) -> None:
    for name in ("config.json", "vocab.json", "best.safetensors", "last.safetensors",
                 "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["model"]["name"] == "seq2seq"
    capsys.readouterr()

    assert cli("eval", run, "--data", reversal_tsv, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 400 and 0 <= result["exact_match"] <= 1
    assert 0 < result["token_accuracy"] <= 1 and 0 <= result["bleu"] <= 100
    assert cli("eval", run, "--split", "valid") == 0
    assert "exact match" in capsys.readouterr().out

    _stdin(monkeypatch, "1 2 3\n4 5\n")
    assert cli("translate", run, "--greedy") == 0
    best = capsys.readouterr().out.splitlines()
    assert len(best) == 2 and all(set(line.split()) <= set("012345") for line in best)

    _stdin(monkeypatch, "1 2 3\n4 5\n")
    assert cli("translate", run, "--beam-size", 3, "--n-best", 2) == 0
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines()]
    assert [ln[0] for ln in lines] == ["1", "1", "2", "2"]
    assert float(lines[0][1]) >= float(lines[1][1])

    src = tmp_path / "src.txt"
    src.write_text("1 2 3\n4 5\n0 1 2 3 4\n")
    png = tmp_path / "att.png"
    assert cli("translate", run, "--input", src, "--output", tmp_path / "out.txt", "--json",
               "--attention-plot", png, "--plot-lines", "1,3") == 0
    objs = [json.loads(ln) for ln in (tmp_path / "out.txt").read_text().splitlines()]
    assert [o["line"] for o in objs] == [1, 2, 3] and "target" in objs[0]["hypotheses"][0]
    for name in ("att-1.png", "att-3.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_max_minutes_and_resume(tmp_path: Path, reversal_tsv: Path) -> None:
    assert train(reversal_tsv, tmp_path / "timed", 100_000, "--max-minutes", "0.003") == 0
    _, meta = load_tensors(tmp_path / "timed" / "last.safetensors")
    assert 0 < meta["trainer"]["progress"]["step"] < 100_000

    assert train(reversal_tsv, tmp_path / "straight", 20) == 0
    assert train(reversal_tsv, tmp_path / "resumed", 20, "train.stop_at_step=10") == 0
    assert train(reversal_tsv, tmp_path / "resumed", 20, "--resume") == 0
    a = load_tensors(tmp_path / "straight" / "last.safetensors")[0]
    b = load_tensors(tmp_path / "resumed" / "last.safetensors")[0]
    for k in a:
        if k.startswith("model."):
            assert torch.equal(a[k], b[k]), k


def _fails(capsys: pytest.CaptureFixture, *args: object, match: str) -> None:
    capsys.readouterr()
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err


def test_bad_training_data_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture
                                                 ) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("1 2\t2 1\n3 4 5\n")
    _fails(capsys, "train", "--model", "seq2seq", "--data", bad, "--out", tmp_path / "r",
           match=f"{bad}:2: expected source<TAB>target, got a line without a tab")
    assert not (tmp_path / "r").exists()
    bad.write_text("1 2\t2 1\n3 4\t\n")
    _fails(capsys, "train", "--model", "seq2seq", "--data", bad, "--out", tmp_path / "r",
           match=f"{bad}:2: expected a non-empty target")
    long = write_tsv(tmp_path / "long.tsv", reversal_pairs(20, max_len=9, seed=3))
    _fails(capsys, "train", "--model", "seq2seq", "--data", long, "--out", tmp_path / "r",
           "model.max_src_len=3", match="more than the maximum model.max_src_len = 3")
    assert not (tmp_path / "r").exists()


def test_bad_input_to_a_trained_run_changes_nothing(run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(run)
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\t1\n2 2\n")
    _fails(capsys, "train", "--model", "seq2seq", "--data", bad, "--out", run, "--resume",
           *TINY, match="holds a different run: data.path")  # checked before reading the data
    _fails(capsys, "eval", run, "--data", bad, match=f"{bad}:2: expected source<TAB>target")

    out = tmp_path / "out.txt"
    out.write_text("keep me\n")
    _stdin(monkeypatch, "1 2\n\n3\n")
    _fails(capsys, "translate", run, "--output", out,
           match="<stdin>:2: expected a non-empty source, got an empty one")
    _stdin(monkeypatch, "1 2\n" + "3 " * 300 + "\n")
    _fails(capsys, "translate", run, "--output", out,
           match="<stdin>:2: source has 300 tokens, more than the maximum model.max_src_len")
    _stdin(monkeypatch, "1 2\n")
    _fails(capsys, "translate", run, "--attention-plot", tmp_path / "a.png", "--plot-lines", "4",
           match="--plot-lines: expected line numbers in 1..1")
    assert out.read_text() == "keep me\n" and not (tmp_path / "a.png").exists()
    assert snapshot(run) == before

    _fails(capsys, "sample", run, match="expected a language model run, got a seq2seq model")


def test_translate_rejects_a_language_model(tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    lm = models.build("lstm", char_vocab("ab"), {"hidden": 8, "emb_dim": 4})
    lm.save(tmp_path / "lm.safetensors")
    _fails(capsys, "translate", tmp_path / "lm.safetensors",
           match="lm.safetensors: expected a seq2seq run, got a recurrent model")
    _fails(capsys, "translate", tmp_path / "missing", match="missing: run folder not found")
