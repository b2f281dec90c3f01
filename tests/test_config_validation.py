"""Every config value is checked where it is declared: a bad one is one line and exit 2.

The values the issue listed go through `seqlab.cli.main` in-process; each must leave no run
folder behind and change no file of an existing one. Two fuzzers then throw drawn values at every
key of every section: config resolution may succeed or raise a one-line `SeqlabError`, nothing
else, and a tiny training run through the CLI must exit 0, or 2 (or 3, diverged) with one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqlab import models
from seqlab.cli import main
from seqlab.config import apply_overrides, check_range
from seqlab.errors import SeqlabError
from seqlab.experiment import resolve
from seqlab.run import TrainConfig
from seqlab.sampling import SampleConfig

TINY_RNN = ["--model", "rnn", "model.hidden=8", "model.layers=1", "model.emb_dim=8",
            "train.max_steps=2", "train.batch_size=2", "train.seq_len=8", "train.eval_interval=1",
            "train.progress=false"]


# --- helpers ---------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (empty when it does not exist)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclasses.dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_cli(*args: object) -> Outcome:
    """`seqlab.cli.main` in-process, its stdout and stderr captured. An exception other than
    the CLI's own exits propagates: that is the traceback a user would see."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own usage errors
            code = e.code if isinstance(e.code, int) else 2
    return Outcome(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: Outcome, *mentions: str) -> None:
    lines = result.err.splitlines()
    assert result.code == 2, result
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: "), result.err
    assert "Traceback" not in result.err + result.out
    for word in mentions:
        assert word in lines[0], lines[0]


@contextlib.contextmanager
def torch_threads_kept() -> Iterator[None]:
    """`train.threads` sets torch's process-wide thread count: put it back afterwards."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


def write_text(folder: Path) -> Path:
    """About 6 KB of text with some variety, so every split gets tokens."""
    words = ["the", "cat", "sat", "on", "a", "mat", "while", "one", "dog", "ran", "to", "the",
             "log", "and", "ate", "some", "fish", "near", "two", "old", "trees", "by", "river"]
    lines = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(8)) + "."
             for i in range(150)]
    path = folder / "tiny.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, text: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "rnn"
    with torch_threads_kept():
        result = run_cli("train", "--data", text, "--out", out, *TINY_RNN)
    assert result.code == 0, result
    return out


# --- the values the issue listed -------------------------------------------------------------
# (overrides, what the message must name)
BAD_TRAIN = {
    "negative clip_norm": (["train.clip_norm=-1"], "train.clip_norm"),
    "negative clip_value": (["train.clip_value=-1"], "train.clip_value"),
    "min_lr above lr": (["train.lr=0.01", "train.min_lr=0.1"], "train.min_lr"),
    "negative warmup_steps": (["train.warmup_steps=-1"], "train.warmup_steps"),
    "max_vocab 0": (["data.max_vocab=0"], "data.max_vocab"),
    "max_vocab 1": (["data.max_vocab=1"], "data.max_vocab"),
    "threads -1": (["train.threads=-1"], "train.threads"),
    "beta1 2": (["train.beta1=2"], "train.beta1"),
    "section replaced by a value": (["train=5"], "section.key=value"),
    "nan lr": (["train.lr=nan"], "train.lr"),
    "infinite clip_norm": (["train.clip_norm=inf"], "train.clip_norm"),
    "beta2 1": (["train.beta2=1"], "train.beta2"),
    "negative seed": (["train.seed=-1"], "train.seed"),
    "nan init_scale": (["model.init_scale=nan"], "model.init_scale"),
}


@pytest.mark.parametrize(("overrides", "mention"), BAD_TRAIN.values(), ids=BAD_TRAIN.keys())
def test_bad_value_new_out(overrides: list[str], mention: str, text: Path,
                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("train", "--data", text, "--out", out, *TINY_RNN, *overrides)
    assert_one_line_error(result, mention)
    assert not out.exists()


@pytest.mark.parametrize(("overrides", "mention"), BAD_TRAIN.values(), ids=BAD_TRAIN.keys())
def test_bad_value_empty_out(overrides: list[str], mention: str, text: Path,
                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    result = run_cli("train", "--data", text, "--out", out, *TINY_RNN, *overrides)
    assert_one_line_error(result, mention)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(("overrides", "mention"), BAD_TRAIN.values(), ids=BAD_TRAIN.keys())
def test_bad_value_on_resume_changes_nothing(overrides: list[str], mention: str, text: Path,
                                             trained: Path) -> None:
    before = snapshot(trained)
    result = run_cli("train", "--data", text, "--out", trained, "--resume", *TINY_RNN,
                     *overrides)
    assert_one_line_error(result, mention)
    assert snapshot(trained) == before


@pytest.mark.parametrize("config", ["model: 5\n", "train: [1, 2]\n", "data: some text\n",
                                    "sample: 0.5\n", "train:\n  lr: [0.1]\n"])
def test_config_file_section_not_a_mapping(config: str, text: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config, encoding="utf-8")
    out = tmp_path / "run"
    result = run_cli("train", "--config", path, "--data", text, "--out", out, *TINY_RNN)
    assert_one_line_error(result)
    assert not out.exists()


@pytest.mark.parametrize(("flag", "value"), [
    ("--temperature", "nan"), ("--temperature", "inf"), ("--temperature", "-1"),
    ("--top-p", "nan"), ("--top-k", "0"), ("--num-samples", "0"), ("--seed", "-1")])
def test_sample_bad_value(flag: str, value: str, trained: Path) -> None:
    before = snapshot(trained)
    result = run_cli("sample", trained, "--length", 5, flag, value)
    assert_one_line_error(result, "sample." + flag[2:].replace("-", "_"))
    assert result.out == ""
    assert snapshot(trained) == before


def test_messages_say_expected_and_got() -> None:
    with pytest.raises(SeqlabError, match=r"^train\.clip_norm must be > 0 or null, got -1\.0$"):
        TrainConfig(clip_norm=-1.0)
    with pytest.raises(SeqlabError, match=r"^train\.lr must be finite and > 0, got nan$"):
        TrainConfig(lr=math.nan)
    with pytest.raises(SeqlabError, match=r"^train\.min_lr must be <= train\.lr \(0\.01\), "
                       r"got 0\.1$"):
        TrainConfig(lr=0.01, min_lr=0.1)
    with pytest.raises(SeqlabError, match=r"^sample\.top_p must be in \(0, 1\] or null, got 0$"):
        SampleConfig(top_p=0)
    check_range("x", 1, "in [0, 1]")
    check_range("x", None, "> 0", null=True)
    with pytest.raises(SeqlabError, match=r"^x must be in \[0, 1\), got 1$"):
        check_range("x", 1, "in [0, 1)")
    with pytest.raises(SeqlabError, match=r"^x must be finite, got inf$"):
        check_range("x", math.inf, "finite")


# --- every key of every section ----------------------------------------------------------------
def model_names() -> list[str]:
    """Names users can pass to --model, from the registry (`models.names()` since the tasks
    declare them, the `models.MODELS` table before)."""
    names = getattr(models, "names", None)
    return sorted(names() if names is not None else models.MODELS)


@functools.cache
def section_classes(name: str) -> dict[str, type]:
    """The dataclass of each section for model `name`, as config resolution picks them."""
    exp = resolve({"model": {"name": name}})
    return {s: type(getattr(exp, s)) for s in ("model", "data", "train", "sample")}


def dotted_keys(cls: type, prefix: str) -> list[str]:
    """Every settable key of dataclass `cls`, nested dataclasses as dotted paths."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += dotted_keys(typing.cast(type, tp), f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


@functools.cache
def all_keys(name: str) -> list[str]:
    """Every key `seqlab train --model name` accepts."""
    return [key for section, cls in section_classes(name).items()
            for key in dotted_keys(cls, f"{section}.")]


def render(value: Any) -> str:
    """A drawn value as the user would type it after ``key=``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)  # nan, inf, -inf, 1e+300
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return str(value)


SPECIAL = ["nan", "inf", "-inf", "-0.0", "1e400", "-1e-300", "none", "~", "", "[]", "1,2,3",
           "[1, [2]]", "{a: 1}", "yes", "0x10", "1_000", "2001-01-01", "9" * 400, "-" + "9" * 400]


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(-3, 3), st.integers(-(2**70), 2**70),
        st.sampled_from([2**31 - 1, 2**32, 2**63, 2**64]),
        st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
        st.text(max_size=8))


def values() -> st.SearchStrategy[str]:
    return st.one_of(scalars().map(render),
                     st.lists(scalars(), max_size=4).map(render),
                     st.sampled_from(SPECIAL))


def resolves_or_one_line_error(overrides: list[str]) -> None:
    """The property: resolution succeeds or says what is wrong in one line."""
    try:
        resolve(apply_overrides({}, overrides))
    except SeqlabError as e:
        msg = str(e)
        assert msg and "\n" not in msg, (overrides, msg)


def swept_keys(name: str) -> list[str]:
    """The keys the sweep tries for model `name`: all its model.* keys, and the keys of each
    other section whose dataclass no earlier model name used (they share TrainConfig, ...)."""
    earlier = model_names()[: model_names().index(name)]
    seen = {cls for n in earlier for s, cls in section_classes(n).items() if s != "model"}
    return [key for section, cls in section_classes(name).items()
            if section == "model" or cls not in seen for key in dotted_keys(cls, f"{section}.")]


@pytest.mark.parametrize("name", model_names())
def test_every_key_every_special_value(name: str) -> None:
    """Deterministic sweep: each key alone, each hand-picked nasty value."""
    for key in swept_keys(name):
        for raw in [*SPECIAL, "-1", "0", "1", "2", str(2**64), "0.5", "-0.5", "true", "abc"]:
            resolves_or_one_line_error([f"model.name={name}", f"{key}={raw}"])


@functools.cache
def fuzzable_names() -> list[str]:
    """Names whose defaults resolve; the sweep above reports any other (as a failure)."""
    ok = []
    for name in model_names():
        with contextlib.suppress(Exception):
            section_classes(name)
            ok.append(name)
    return ok


@st.composite
def override_sets(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(fuzzable_names()))
    keys = draw(st.lists(st.sampled_from(all_keys(name)), min_size=1, max_size=4, unique=True))
    return [f"model.name={name}", *(f"{k}={draw(values())}" for k in keys)]


@settings(max_examples=250, deadline=None, derandomize=True)
@given(overrides=override_sets())
def test_fuzz_resolution(overrides: list[str]) -> None:
    resolves_or_one_line_error(overrides)


# The CLI fuzz trains for real, so it leaves out what would make a run long or read arbitrary
# files (budgets, paths) and draws only small integers (a huge width would try to allocate it).
CLI_SKIP = {"train.max_steps", "train.max_minutes", "data.path", "data.valid", "data.test"}


def cli_values() -> st.SearchStrategy[str]:
    small = st.one_of(st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
                      st.booleans(), st.none(), st.text(max_size=6))
    return st.one_of(small.map(render), st.lists(small, max_size=3).map(render),
                     st.sampled_from(["nan", "inf", "-1", "0", "", "none", "1,2"]))


@st.composite
def cli_override_sets(draw: st.DrawFn) -> list[str]:
    keys = [k for k in all_keys("rnn") if k not in CLI_SKIP]
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
    return [f"{k}={draw(cli_values())}" for k in chosen]


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(overrides=cli_override_sets())
def test_fuzz_cli_train(overrides: list[str], text: Path,
                        tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    with torch_threads_kept():
        result = run_cli("train", "--data", text, "--out", out, *TINY_RNN,
                         "train.max_steps=1", *overrides)
    assert "Traceback" not in result.err + result.out, result
    if result.code != 0:  # 2: a user error; 3: training diverged (lr=1e300 is allowed)
        assert result.code in (2, 3), (overrides, result)
        lines = result.err.splitlines()
        assert lines and lines[-1].startswith("seqlab: error: "), (overrides, result.err)
        if result.code == 2:  # refused before anything was written
            assert len(lines) == 1, (overrides, result.err)
            assert not out.exists(), overrides


@st.composite
def sample_override_sets(draw: st.DrawFn) -> list[str]:
    keys = dotted_keys(SampleConfig, "sample.")
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
    return [f"{k}={draw(cli_values())}" for k in chosen]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(overrides=sample_override_sets())
def test_fuzz_cli_sample(overrides: list[str], trained: Path) -> None:
    result = run_cli("sample", trained, *overrides)
    assert "Traceback" not in result.err + result.out, result
    if result.code != 0:
        assert_one_line_error(result)


# Values that only the task can judge (found by the CLI fuzz): refused before any run folder.
@pytest.mark.parametrize("override", [
    pytest.param("train.batch_size=1000", id="batches larger than data"),
    pytest.param("train.select_metric=nope", id="unknown metric"),
])
def test_refused_before_the_run_starts(override: str, text: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("train", "--data", text, "--out", out, *TINY_RNN, override)
    assert_one_line_error(result, override.partition("=")[0].removeprefix("train."))
    assert not out.exists()
