"""``seqlab features``: line features equal the state the sampler's stepping path reaches,
batching changes nothing, clamping holds a unit, and the CLI writes .npy + unit names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab import features, models
from seqlab.cli import main
from seqlab.data.vocab import Vocab

LINES = ["a good film.", "a bad film!", "", "good, not bad.", "xyz", "a good film?"]


@pytest.fixture(scope="module", params=["lstm", "gru", "rnn"])
def lm(request: pytest.FixtureRequest) -> object:
    torch.manual_seed(0)
    vocab = Vocab("char", ["<unk>", "\n", *sorted(set("".join(LINES)) - {"x", "z"})])
    model = models.build(request.param, vocab, {"hidden": 12, "layers": 2, "emb_dim": 6})
    return model.double().eval()


def test_final_features_are_the_stepped_state(lm) -> None:
    got = features.line_features(lm, LINES, "final", batch_size=2)
    assert got.shape == (len(LINES), len(features.state_names(lm)))
    for row, line in zip(got, LINES, strict=True):
        _, state = lm.prime(lm.vocab.encode(line))  # end-of-line, then the line: as sampled
        np.testing.assert_allclose(row, features.flat(state)[0].numpy(), rtol=1e-5, atol=1e-6)
    # Batched with other lines of the same length, or alone: the same numbers.
    alone = np.concatenate([features.line_features(lm, [x], "final") for x in LINES])
    np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-6)


def test_mean_pool_is_the_mean_top_output(lm) -> None:
    got = features.line_features(lm, LINES, "both")
    names = features.feature_names(lm, "both")
    assert got.shape[1] == len(names) and names[-1] == "mean2.11"
    line = LINES[0]
    x = torch.tensor([[lm.vocab.eos_id, *lm.vocab.encode(line)]])
    with torch.no_grad():
        top, _ = lm.stack(lm.embed(x), lm.initial_state(1))
    np.testing.assert_allclose(got[0, -12:], top[0, 1:].mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_unit_trace_and_clamping(lm) -> None:
    unit = len(features.state_names(lm)) - 1  # the last unit of the last state tensor
    trace = features.unit_trace(lm, LINES[0], unit)
    assert trace[-1] == pytest.approx(features.line_features(lm, LINES[:1])[0, unit], abs=1e-6)
    held = features.clamp(lm.prime([])[1], unit, 0.75)
    assert features.flat(held)[0, unit] == 0.75
    high = features.clamped_sample(lm, unit, 1.0, 40, seed=3)
    assert high == features.clamped_sample(lm, unit, 1.0, 40, seed=3)  # seeded
    assert high != features.clamped_sample(lm, unit, -1.0, 40, seed=3)  # the unit matters
    assert len(high) == 40


def test_cli_writes_features_and_names(tmp_path: Path, tiny_text: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--model", "lstm", "--data", str(tiny_text), "--out", str(run),
                 "--max-steps", "3", "model.hidden=8", "model.emb_dim=4", "train.batch_size=4",
                 "train.seq_len=16", "train.progress=false"]) == 0
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat sat.\nthe dog.\n", encoding="utf-8")
    out = tmp_path / "f.npy"
    assert main(["features", str(run), "--data", str(lines), "--out", str(out),
                 "--pool", "both"]) == 0
    feats = np.load(out, allow_pickle=False)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert feats.shape == (2, 2 * 2 * 8 + 8) == (meta["lines"], len(meta["units"]))
    assert meta["units"][0] == "h1.0" and "c2.7" in meta["units"]
    capsys.readouterr()
    assert main(["features", str(run), "--data", str(lines), "--out", str(tmp_path / "f.txt")]
                ) == 2
    assert "expected a .npy file name" in capsys.readouterr().err
    ngram = tmp_path / "ng"
    assert main(["train", "--model", "ngram", "--data", str(tiny_text), "--out", str(ngram)]
                ) == 0
    capsys.readouterr()
    assert main(["features", str(ngram), "--data", str(lines), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recurrent language model's state" in err[0]
    assert np.load(out).shape == (2, 40)  # the earlier file is untouched
