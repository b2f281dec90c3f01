"""The unknown-token warning: one line on stderr when more than 5% of a split's tokens are
<unk>, naming the level that would fix it (the digit-string seq2seq case of issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from seqlab.cli import main
from seqlab.data.unknown import singleton_share, unknown_warning
from seqlab.data.vocab import Vocab
from seqlab.tasks.lm import LanguageModeling

TINY_SEQ2SEQ = ["model.hidden=16", "model.emb_dim=8", "train.batch_size=16",
                "train.eval_interval=2", "train.progress=false", "--max-steps", "2"]
WARNING = re.compile(r"^warning: (\d+)% of source tokens in (valid|test) are <unk> at word "
                     r"level \(most words are seen once\); try data\.level=char$", re.M)


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    """Unspaced digit strings and their reversal: one word per side at word level."""
    rng = np.random.default_rng(0)
    path = tmp_path / "digits.tsv"
    lines = []
    for _ in range(300):
        s = "".join(map(str, rng.integers(0, 10, size=rng.integers(4, 7))))
        lines.append(f"{s}\t{s[::-1]}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_digit_strings_warn_at_word_level_and_not_at_char_level(
        digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    word = tmp_path / "word"
    assert main(["train", "--model", "seq2seq", "--data", str(digits), "--out", str(word),
                 *TINY_SEQ2SEQ]) == 0
    err = capsys.readouterr().err
    found = WARNING.findall(err)
    assert found and all(int(pct) > 5 for pct, _ in found), err
    assert "target tokens" in err and "try data.tgt_level=char" in err  # the other side too

    assert main(["eval", str(word), "--split", "test"]) == 0
    assert WARNING.search(capsys.readouterr().err)  # eval warns as well

    char = tmp_path / "char"
    assert main(["train", "--model", "seq2seq", "--data", str(digits), "--out", str(char),
                 "--level", "char", *TINY_SEQ2SEQ]) == 0
    assert "warning:" not in capsys.readouterr().err


def test_suggestions() -> None:
    never = lambda: 0.1  # noqa: E731  # most training words recur: a long tail of rare words
    mostly = lambda: 0.9  # noqa: E731
    assert unknown_warning({"valid": (5, 100)}, "word", never, levels=("word",)) is None
    line = unknown_warning({"valid": (6, 100), "test": (9, 100)}, "word", never,
                           levels=("char", "word", "bpe"))
    assert line == ("warning: 9% of tokens in test are <unk> at word level (rare words); "
                    "try data.level=bpe")
    line = unknown_warning({"valid": (50, 100)}, "word", mostly, levels=("char", "word", "bpe"))
    assert line is not None and line.endswith("(most words are seen once); try data.level=char")
    line = unknown_warning({"valid": (50, 100)}, "char", never, levels=("char", "word"))
    assert line is not None and "try" not in line  # no level of the task would fix it


def test_language_model_warning_and_singletons() -> None:
    vocab = Vocab("word", ["<unk>", "<eos>", "a", "b", "c"])
    train = np.array([2, 2, 3, 3, 4, 1], dtype=np.uint8)  # only "c" and <eos> seen once
    assert singleton_share(train, len(vocab)) == pytest.approx(2 / 6)
    valid = np.array([0, 2, 3, 1] * 5, dtype=np.uint8)  # 25% unknown
    lm = LanguageModeling()
    assert lm.unknown_warnings(vocab, {"valid": valid}, train) == [
        "warning: 25% of tokens in valid are <unk> at word level (rare words); "
        "try data.level=bpe"]
    assert lm.unknown_warnings(vocab, {"valid": valid[1:4]}, train) == []
    assert lm.unknown_warnings(Vocab("byte", [f"<0x{b:02X}>" for b in range(256)]),
                               {"valid": valid}) == []
