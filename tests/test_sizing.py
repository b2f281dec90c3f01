"""``seqlab compare --params N --seeds K``: the width solver lands within 5% of N for every
sized family, and the leaderboard reports mean and standard deviation over seeds."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest

from seqlab import models, sizing, tasks
from seqlab.cli import main
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError

CHARS = Vocab("char", ["<unk>", "\n", *string.printable[:63]])


def _sized_lm_models() -> list[str]:
    return [m for m, (task, _, _) in tasks.model_table().items()
            if task == "lm" and sizing.width_key(m) is not None]


@pytest.mark.parametrize("target", [500_000, 2_000_000])
@pytest.mark.parametrize("name", _sized_lm_models())
def test_every_lm_family_lands_within_5_percent(name: str, target: int) -> None:
    overrides, count = sizing.solve(name, CHARS, target)
    assert abs(count - target) <= 0.05 * target, (name, overrides, count)
    # The count is the built model's trainable parameters, with the depth of the default.
    model = models.build(name, CHARS, overrides)
    assert sizing.trainable_parameters(model) == count
    default = models.make_config(name)
    for key in ("layers", "levels", "blocks"):
        if hasattr(default, key):
            assert getattr(model.config, key) == getattr(default, key)


@pytest.mark.parametrize("target", [500_000, 2_000_000])
@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_transformer_widths_move_by_two_with_a_head_count_that_fits(positions: str,
                                                                     target: int) -> None:
    """The width is not tied to a multiple of the default's heads: the step is 2 (rotary) or
    1 (learned) and the head count is re-chosen to divide the width."""
    overrides, count = sizing.solve("transformer", CHARS, target, {"positions": positions})
    assert abs(count - target) <= 0.05 * target
    dim, heads = overrides["dim"], overrides["heads"]
    assert dim % heads == 0 and (positions == "learned" or (dim // heads) % 2 == 0)
    assert overrides["positions"] == positions


def test_transformer_head_choice() -> None:
    cfg = models.make_config("transformer")  # 4 heads
    pick = lambda width: models.resolve("transformer")[0].resize(  # noqa: E731
        {"dim": width}, width, cfg)["heads"]
    assert pick(128) == 4  # the default fits: kept
    assert pick(100) == 5  # 100 / 4 = 25 is odd; 5 heads of 20
    assert pick(102) == 3  # 102 = 2 * 3 * 17: 3 heads of 34
    assert pick(106) == 1  # 2 * 53: one head of 106
    learned = models.make_config("transformer", {"positions": "learned"})
    assert models.resolve("transformer")[0].resize({"dim": 100}, 100, learned)["heads"] == 4
    # heads set by the spec: kept, and the width moves in multiples of 2 * heads
    overrides, _ = sizing.solve("transformer", CHARS, 500_000, {"heads": 8})
    assert overrides["heads"] == 8 and overrides["dim"] % 16 == 0
    with pytest.raises(SeqlabError, match="even width"):
        models.resolve("transformer")[0].resize({"dim": 7}, 7, cfg)


def test_the_solver_keeps_other_overrides_and_refuses_to_fight_over_the_width() -> None:
    overrides, count = sizing.solve("lstm", CHARS, 300_000, {"layers": 1, "emb_dim": 16})
    assert overrides["layers"] == 1 and overrides["emb_dim"] == 16
    assert abs(count - 300_000) <= 0.05 * 300_000
    with pytest.raises(SeqlabError, match="drop hidden="):
        sizing.solve("lstm", CHARS, 300_000, {"hidden": 64})
    with pytest.raises(SeqlabError, match="no width"):
        sizing.solve("ngram", CHARS, 300_000)


def test_nested_width_keys() -> None:
    assert sizing.width_key("bilstm-crf") == "recurrent.hidden"
    assert sizing.with_width({"recurrent": {"layers": 2}}, "recurrent.hidden", 7) == {
        "recurrent": {"layers": 2, "hidden": 7}}
    assert sizing.lookup({"recurrent": {"hidden": 7}}, "recurrent.hidden") == 7
    assert sizing.lookup({"recurrent": {}}, "recurrent.hidden") is None


def test_compare_with_params_and_seeds(tmp_path: Path, tiny_text: Path, capsys) -> None:
    out = tmp_path / "cmp"
    code = main(["compare", "--data", str(tiny_text), "--models", "ngram,rnn,lstm",
                 "--params", "20k", "--seeds", "2", "--max-steps", "6", "--out", str(out),
                 "--json", "train.batch_size=4", "train.seq_len=16", "train.progress=false",
                 "train.eval_interval=3"])
    assert code == 0
    captured = capsys.readouterr()
    rows = {r["model"]: r for r in json.loads(captured.out.strip().splitlines()[-1])["rows"]}
    assert "ngram: not sized" in captured.err
    for name in ("rnn", "lstm"):
        row = rows[name]
        seeds = row["seeds"]
        assert len(seeds) == 2 and {Path(s["run"]).name for s in seeds} == {"seed-0", "seed-1"}
        scores = [s["test_bits_per_token"] for s in seeds]
        assert scores[0] != scores[1]  # different initial weights and batches
        assert row["test_bits_per_token"] == pytest.approx(np.mean(scores))
        assert row["test_bits_per_token_sd"] == pytest.approx(np.std(scores, ddof=1))
        assert abs(row["parameters"] - 20_000) <= 0.05 * 20_000  # counted in the checkpoint
        assert row["steps"] == 6
        cfg = json.loads((Path(seeds[1]["run"]) / "config.json").read_text())
        assert cfg["train"]["seed"] == cfg_seed(seeds[0]) + 1
    md = (out / "leaderboard.md").read_text()
    assert "±" in md and "2 seeds" in md
    assert (out / "learning_curves.png").stat().st_size > 0


def cfg_seed(row: dict) -> int:
    return json.loads((Path(row["run"]) / "config.json").read_text())["train"]["seed"]


def test_bad_params_is_one_line(tmp_path: Path, tiny_text: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["compare", "--data", str(tiny_text), "--models", "lstm", "--params", "lots",
              "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert "expected a count such as 500k or 2M, got 'lots'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
