"""Strict configs: unknown keys list the valid ones, strings from the CLI are coerced."""

from __future__ import annotations

import pytest

from seqlab.config import apply_overrides, from_dict, load_file
from seqlab.errors import SeqlabError
from seqlab.experiment import resolve
from seqlab.run import TrainConfig


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(SeqlabError, match=r"unknown config key train\.lrr; valid keys in train: "
                       r"max_steps, .*, lr, .*batch_size"):
        from_dict(TrainConfig, {"lrr": 1}, prefix="train.")


def test_strings_are_coerced_and_checked() -> None:
    cfg = from_dict(TrainConfig, {"lr": "3e-3", "max_steps": "10", "max_minutes": "none",
                                  "progress": "false", "schedule": "plateau"})
    assert (cfg.lr, cfg.max_steps, cfg.max_minutes, cfg.progress) == (3e-3, 10, None, False)
    with pytest.raises(SeqlabError, match=r"schedule: expected one of cosine, plateau, constant"):
        from_dict(TrainConfig, {"schedule": "linear"})
    with pytest.raises(SeqlabError, match=r"batch_size: expected int, got 'many'"):
        from_dict(TrainConfig, {"batch_size": "many"})


def test_overrides_and_sections() -> None:
    raw = apply_overrides({"model": {"name": "lstm"}}, ["model.hidden=32", "--train.lr=0.01"])
    exp = resolve(raw)
    assert exp.model.hidden == 32 and exp.train.lr == 0.01 and exp.model.cell == "lstm"
    with pytest.raises(SeqlabError, match=r"valid top-level keys: model, data, train, sample"):
        resolve({"modle": {}})
    with pytest.raises(SeqlabError, match=r"unknown model 'lstn'; valid models: ngram, rnn"):
        resolve({"model": {"name": "lstn"}})
    with pytest.raises(SeqlabError, match=r"valid keys in model: cell, hidden, layers, .*emb_dim"):
        resolve({"model": {"name": "lstm", "hiden": 3}})


def test_yaml_and_toml_files(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("model:\n  name: gru\n  hidden: 64\ntrain:\n  lr: 0.001\n")
    (tmp_path / "c.toml").write_text('[model]\nname = "gru"\nhidden = 64\n[train]\nlr = 0.001\n')
    assert load_file(tmp_path / "c.yaml") == load_file(tmp_path / "c.toml")
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(SeqlabError, match="expected a TOML config file"):
        load_file(tmp_path / "bad.toml")


def test_partial_nested_override_keeps_the_family_default() -> None:
    # music-tcn's conv section defaults to the TCN paper's (150 channels, kernel 5, 4 levels);
    # overriding two keys must keep the others from that default, not from ConvConfig's own.
    raw = apply_overrides({"model": {"name": "music-tcn"}},
                          ["model.conv.kernel_size=3", "model.conv.dropout=0.5"])
    conv = resolve(raw).model.conv
    assert (conv.kind, conv.channels, conv.levels) == ("tcn", 150, 4)
    assert (conv.kernel_size, conv.dropout) == (3, 0.5)
    with pytest.raises(SeqlabError, match=r"unknown config key model\.conv\.kernell"):
        resolve(apply_overrides({"model": {"name": "music-tcn"}}, ["model.conv.kernell=3"]))


def test_partial_nested_override_refines_the_preset() -> None:
    # parity-rnn's preset names an Elman cell of 32; changing only the width must keep the cell
    # (the section used to be rebuilt from StackConfig's defaults: an LSTM, silently).
    raw = apply_overrides({"model": {"name": "parity-rnn"}}, ["model.recurrent.hidden=16"])
    rec = resolve(raw).model.recurrent
    assert (rec.cell, rec.hidden) == ("rnn", 16)
