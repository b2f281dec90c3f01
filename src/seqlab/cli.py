"""Command line: a thin layer that parses arguments and calls the library.

    seqlab train --model ngram|rnn|lstm|gru --data PATH --out RUN_DIR [--config FILE] [k.e.y=v ...]
    seqlab eval RUN_DIR [--data PATH | --split valid|test] [--json]
    seqlab sample RUN_DIR [--prompt TEXT] [--length N] [--temperature T] [--top-k K] ...
    seqlab demo

User errors print one line (``seqlab: error: ...``) and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from seqlab.errors import SeqlabError, TrainingDiverged

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


def _add_override_help(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="dotted config overrides, e.g. train.lr=3e-3 model.hidden=512")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqlab", description="Train, score, sample and compare sequence models.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model into a run folder")
    t.add_argument("--config", help="YAML or TOML config file")
    t.add_argument("--model", help="model name (ngram, rnn, lstm, gru, ...); sets model.name")
    t.add_argument("--data", help="training text (default: Python's documentation, built in)")
    t.add_argument("--valid", help="separate validation file (default: a fraction of --data)")
    t.add_argument("--test", help="separate test file (default: a fraction of --data)")
    t.add_argument("--level", choices=["char", "byte", "word"], help="tokenisation level")
    t.add_argument("--cell", choices=["fused", "reference"],
                   help="recurrent models: PyTorch's fused kernels or the hand-written reference "
                        "cells (sets model.impl)")
    t.add_argument("--out", help="run folder (default: runs/<model>-<time>)")
    t.add_argument("--max-steps", type=int, help="sets train.max_steps")
    t.add_argument("--max-minutes", type=float, help="sets train.max_minutes")
    t.add_argument("--seed", type=int, help="sets train.seed")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    _add_override_help(t)

    e = sub.add_parser("eval", help="bits per token of a trained run")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument("--data", help="score this file instead of the run's own split")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("sample", help="generate text from a trained run")
    s.add_argument("run", help="run folder or checkpoint file")
    s.add_argument("--prompt", help="text to continue")
    s.add_argument("--length", type=int, help="tokens per sample")
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-k", type=int)
    s.add_argument("--top-p", type=float)
    s.add_argument("--greedy", action="store_true", default=None)
    s.add_argument("--num-samples", type=int)
    s.add_argument("--seed", type=int)
    _add_override_help(s)

    d = sub.add_parser("demo", help="train an n-gram and an LSTM on the built-in corpus, compare")
    d.add_argument("--minutes", type=float, default=2.5, help="LSTM training budget")
    d.add_argument("--out", help="folder for the two runs (default: runs/demo-<time>)")
    _register_plugins(sub)
    return p


def _version() -> str:
    from seqlab import __version__

    return f"seqlab {__version__}"


def _flag_overrides(args: argparse.Namespace, mapping: dict[str, str]) -> list[str]:
    return [f"{key}={getattr(args, attr)}" for attr, key in mapping.items()
            if getattr(args, attr, None) is not None]


def cmd_train(args: argparse.Namespace) -> int:
    from seqlab import models
    from seqlab.config import apply_overrides, load_file
    from seqlab.experiment import resolve

    raw = load_file(args.config) if args.config else {}
    flags = _flag_overrides(args, {
        "model": "model.name", "data": "data.path", "valid": "data.valid", "test": "data.test",
        "level": "data.level", "cell": "model.impl", "max_steps": "train.max_steps",
        "max_minutes": "train.max_minutes", "seed": "train.seed"})
    exp = resolve(apply_overrides(raw, [*args.overrides, *flags]))
    out = args.out or _default_out(exp.model_name)
    task = models.task_module(models.resolve(exp.model_name)[0])
    _, _, scores = task.train(exp, out, resume=args.resume, command=sys.argv)
    for e in scores:
        print(e.summary())
    print(f"run folder: {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from seqlab.experiment import task_for_run

    result = task_for_run(args.run).evaluate_run(args.run, data=args.data, split=args.split)
    print(json.dumps({**result.as_dict(), "run": str(args.run)}) if args.json else result.summary())
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from seqlab.config import apply_overrides, from_dict
    from seqlab.experiment import load_run
    from seqlab.protocol import LanguageModel
    from seqlab.sampling import SampleConfig, sample_text

    model, config = load_run(args.run)
    if not isinstance(model, LanguageModel):
        raise SeqlabError(f"{args.run}: expected a language model run, got a {model.family} "
                          "model; use the command for its task (e.g. seqlab translate)")
    raw = {"sample": dict(config.get("sample", {}))}
    flags = _flag_overrides(args, {
        "prompt": "sample.prompt", "length": "sample.length", "temperature": "sample.temperature",
        "top_k": "sample.top_k", "top_p": "sample.top_p", "greedy": "sample.greedy",
        "num_samples": "sample.num_samples", "seed": "sample.seed"})
    raw = apply_overrides(raw, [*args.overrides, *flags])
    if set(raw) != {"sample"}:
        raise SeqlabError(f"sample accepts only sample.* overrides, got {sorted(raw)}")
    if args.prompt is not None:
        raw["sample"]["prompt"] = args.prompt  # verbatim: no YAML parsing of the prompt
    cfg = from_dict(SampleConfig, raw["sample"], prefix="sample.")
    for i, pieces in enumerate(sample_text(model, cfg)):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seqlab.demo import run_demo

    run_demo(minutes=args.minutes, out=args.out or _default_out("demo"))
    return 0


def _default_out(name: str) -> str:
    import time

    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "demo": cmd_demo,
}

# Modules adding subcommands: each has ``register(subparsers) -> {name: handler}``.
PLUGINS = ("seqlab.compare", "seqlab.diagnose", "seqlab.seq2seq.cli")


def _register_plugins(sub: Any) -> None:
    import importlib

    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue  # that feature is not part of this build
            raise
        COMMANDS.update(module.register(sub))


def _split_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     extra: list[str]) -> None:
    """Accept minGPT-style ``--section.key=value`` (or ``--section.key value``) overrides."""
    overrides, i = [], 0
    while i < len(extra):
        item = extra[i]
        key = item.removeprefix("--").partition("=")[0]
        if not item.startswith("--") or "." not in key:
            parser.error(f"unrecognized argument: {item}")
        if "=" not in item and i + 1 < len(extra):
            item, i = f"{item}={extra[i + 1]}", i + 1
        overrides.append(item)
        i += 1
    if overrides and not hasattr(args, "overrides"):
        parser.error(f"{args.command} takes no config overrides, got {overrides[0]}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    _split_overrides(parser, args, extra)
    try:
        return COMMANDS[args.command](args)
    except TrainingDiverged as e:
        print(f"seqlab: error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except SeqlabError as e:
        print(f"seqlab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"seqlab: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("seqlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def entry() -> Any:
    sys.exit(main())


if __name__ == "__main__":
    entry()
