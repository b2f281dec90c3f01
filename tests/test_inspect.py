"""`seqlab.inspect`: tokenize ground truth, activations from the stepped cells, correlations
that find a planted unit, gate saturation, and the CLI's files and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.conftest import char_vocab

from seqlab.cli import main
from seqlab.inspect import (
    activations,
    best_units,
    code_features,
    correlations,
    features,
    gate_saturation,
    text_features,
    unit_correlations,
)
from seqlab.models.recurrent import RecurrentConfig, RecurrentLM

SNIPPET = 'x = (1, "a#b")  # c\ndef f():\n    return [x,\n            f(2)]\n'


def test_code_features_from_tokenize() -> None:
    f = code_features(SNIPPET)
    at = SNIPPET.index
    a, hash_in_str, comment = at("a#"), at("#b"), at("# c")
    assert f["in_string"][[at('"a'), a, hash_in_str, at('b"') + 1]].tolist() == [1, 1, 1, 1]
    assert f["in_string"][[at("x ="), at("1"), comment]].tolist() == [0, 0, 0]
    assert f["in_comment"][[comment, comment + 2, hash_in_str, at(")")]].tolist() == [1, 1, 0, 0]
    assert f["bracket_depth"][[at("x ="), at("("), at("1"), a, at(")"), at(")") + 1]].tolist() \
        == [0, 0, 1, 1, 0, 0]
    two = at("2)")
    assert f["bracket_depth"][[at("[x"), two, two + 1, two + 2]].tolist() == [0, 2, 1, 0]
    assert f["indent"][[at("def"), at("return"), two]].tolist() == [0, 1, 1]
    assert f["column"][[at("x ="), at("def"), at("return"), two, at("\ndef")]].tolist() == \
        [0, 0, 4, 14, 19]


def test_text_features_and_auto_kind() -> None:
    text = 'He said "hi there" ok\n'
    f = text_features(text)
    inside = [i for i, v in enumerate(f["in_quotes"]) if v]
    assert "".join(text[i] for i in inside) == '"hi there"'
    assert features(text)[0] == "text"  # an unterminated string: not Python
    assert features(SNIPPET)[0] == "code"


def test_correlation_finds_a_planted_unit() -> None:
    rng = np.random.default_rng(0)
    feat = code_features(SNIPPET)["bracket_depth"]
    acts = rng.normal(size=(len(feat), 16))
    acts[:, 11] = -3 * feat + 2  # unit 11 is (minus) the bracket depth
    acts[:, 5] = 1.0  # a constant unit correlates 0, not NaN
    r = correlations(acts, {"depth": feat})["depth"]
    assert r[11] == pytest.approx(-1.0) and r[5] == 0.0
    layers = {"cell": "gru", "layers": [{"h": rng.normal(size=acts.shape)}, {"h": acts}]}
    best = best_units(unit_correlations(layers, {"depth": feat}), k=2)["depth"]
    assert (best[0]["layer"], best[0]["signal"], best[0]["unit"]) == (2, "h", 11)
    assert best[0]["r"] == pytest.approx(-1.0) and abs(best[1]["r"]) < 1


def test_gate_saturation_fractions() -> None:
    g = np.array([[0.05, 0.5], [0.95, 0.5], [0.05, 0.99], [0.5, 0.01]])  # (T=4, H=2)
    sat = gate_saturation({"cell": "gru", "layers": [{"r": g, "z": 1 - g}]})
    assert sat[0]["r"]["left"].tolist() == [0.5, 0.25]
    assert sat[0]["r"]["right"].tolist() == [0.25, 0.25]
    assert sat[0]["z"]["left"].tolist() == [0.25, 0.25]


def _lm(cell: str) -> RecurrentLM:
    torch.manual_seed(0)
    cfg = RecurrentConfig(cell=cell, emb_dim=6, hidden=8, layers=2, residual=cell == "rnn")
    return RecurrentLM(cfg, char_vocab("abcdefx =()\"#:[],12r"))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_activations_equal_the_models_forward(cell: str) -> None:
    lm = _lm(cell)
    text = "ab(c)\nx = 1\n" * 3
    acts = activations(lm, text, chunk=7)  # chunks carry the state
    ids = torch.as_tensor(np.asarray(lm.vocab.encode("\n" + text[:-1]), dtype=np.int64))
    with torch.no_grad():
        logits, _ = lm(ids[None])
        out, _ = lm.stack(lm.embed(ids[None]))
    top = acts["layers"][-1]["h"] + (acts["layers"][0]["h"] if cell == "rnn" else 0)  # residual
    np.testing.assert_allclose(top, out[0].numpy(), atol=1e-5)
    lp = logits[0].log_softmax(-1).gather(1, torch.as_tensor(
        np.asarray(lm.vocab.encode(text), dtype=np.int64))[:, None])[:, 0]
    np.testing.assert_allclose(acts["surprise_bits"], -lp.numpy() / np.log(2), atol=1e-4)
    names = {"lstm": {"i", "f", "g", "o", "c", "h"}, "gru": {"r", "z", "n", "h"},
             "rnn": {"h"}}[cell]
    assert set(acts["layers"][0]) == names
    assert acts["layers"][1]["h"].shape == (len(text), 8)


def test_cli_writes_png_and_json(tmp_path, capsys) -> None:
    ckpt = tmp_path / "m.safetensors"
    _lm("lstm").save(ckpt)
    data = tmp_path / "code.py"
    data.write_text(SNIPPET * 5)
    out = tmp_path / "out"
    assert main(["inspect", str(ckpt), "--data", str(data), "--out", str(out)]) == 0
    rep = json.loads((out / "inspect.json").read_text())
    assert rep["kind"] == "code" and rep["tokens"] == len(SNIPPET) * 5
    assert set(rep["best_units"]) == {"in_string", "in_comment", "bracket_depth", "indent",
                                      "column"}
    assert len(rep["saturation"]) == 2 and set(rep["saturation"][0]) == {"i", "f", "o"}
    for png in ("inspect_saturation.png", "inspect_units.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["inspect.json", "inspect_saturation.png",
                                                     "inspect_units.png"]  # no temporaries
    capsys.readouterr()


@pytest.mark.parametrize("bad", ["missing", "empty", "binary"])
def test_bad_data_is_a_one_line_error(tmp_path, capsys, bad: str) -> None:
    ckpt = tmp_path / "m.safetensors"
    _lm("gru").save(ckpt)
    data = tmp_path / "d.txt"
    if bad != "missing":
        data.write_bytes(b"\n \n" if bad == "empty" else b"ok\xff\xfe")
    assert main(["inspect", str(ckpt), "--data", str(data), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlab: error: --data") and err.count("\n") == 1
    assert not (tmp_path / "inspect.json").exists()
