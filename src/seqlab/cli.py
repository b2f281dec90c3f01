"""Command line: a thin layer that parses arguments and calls the library.

    seqlab train --model NAME --data PATH --out RUN_DIR [--config FILE] [k.e.y=v ...]
    seqlab eval RUN_DIR [--data PATH | --split valid|test] [--json]
    seqlab predict RUN_DIR [--input FILE]           # the task's output per input line
    seqlab sample RUN_DIR [--prompt TEXT] ...       # language models (tasks add commands)
    seqlab demo

User errors print one line (``seqlab: error: ...``) and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from seqlab.errors import SeqlabError, TrainingDiverged, TrainingInterrupted

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
    for flag, (_, _, kind, text) in TRAIN_FLAGS.items():
        t.add_argument(flag, type=kind, help=text)
    t.add_argument("--out", help="run folder (default: runs/<model>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    t.add_argument("--nproc", type=int, help="train with N processes (DDP): starts torchrun")
    _add_override_help(t)

    e = sub.add_parser("eval", help="score a trained run with its task's metrics")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument("--data", help="score this file instead of the run's own split")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")

    r = sub.add_parser("predict", help="the task's output for each input line (stdin or file)")
    r.add_argument("run", help="run folder or checkpoint file")
    r.add_argument("--input", help="one input per line (default: standard input)")
    r.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")

    d = sub.add_parser("demo", help="train an n-gram and an LSTM on the built-in corpus, compare")
    d.add_argument("--minutes", type=float, default=2.5, help="LSTM training budget")
    d.add_argument("--out", help="folder for the two runs (default: runs/demo-<time>)")
    _register_plugins(sub)
    return p


def _version() -> str:
    from seqlab import __version__

    return f"seqlab {__version__}"


# The flags of `train` that set a config key: flag -> (section, key, type, help). Values go
# into the config dict as argparse typed them; nothing is turned into text and parsed back.
TRAIN_FLAGS: dict[str, tuple[str, str, type, str]] = {
    "--model": ("model", "name", str, "model name (ngram, lstm, seq2seq, kalman, ...; README)"),
    "--data": ("data", "path", str, "training data (default: the task's built-in data)"),
    "--valid": ("data", "valid", str, "separate validation file (default: part of --data)"),
    "--test": ("data", "test", str, "separate test file (default: part of --data)"),
    "--level": ("data", "level", str, "tokenisation level, where the task has one"),
    "--max-steps": ("train", "max_steps", int, "sets train.max_steps"),
    "--max-minutes": ("train", "max_minutes", float, "sets train.max_minutes; without a step "
                      "budget (--max-steps, train.max_steps) the clock alone ends the run"),
    "--seed": ("train", "seed", int, "sets train.seed"),
}


def cmd_train(args: argparse.Namespace) -> int:
    from seqlab.config import apply_overrides, load_file, merged
    from seqlab.experiment import resolve, stored_sections, train
    from seqlab.run import set_budget

    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        return _launch(args.nproc, args.argv)
    raw = apply_overrides(load_file(args.config) if args.config else {}, args.overrides)
    for flag, (section, key, _, _) in TRAIN_FLAGS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            node = raw.setdefault(section, {})
            if not isinstance(node, dict):
                raise SeqlabError(f"{section}: expected a section of key: value pairs, got "
                                  f"{node!r}")
            node[key] = value
    if not args.resume:  # a resumed run keeps its stored step budget
        set_budget(raw.get("train", {}), args.max_minutes, args.max_steps)
    elif args.out:  # the stored config, with what the command line gives laid over it
        raw = merged(stored_sections(args.out), raw)
    exp = resolve(raw)
    out = args.out or _default_out(exp.model_name)
    _, _, scores = train(exp, out, resume=args.resume, command=sys.argv)
    if os.environ.get("RANK", "0") == "0":  # one report from a multi-process run
        for e in scores:
            print(e.summary())
        print(f"run folder: {out}")
    return 0


def _launch(nproc: int, argv: list[str]) -> int:
    """``seqlab train --nproc N ...``: the same command under torchrun, N processes on this
    machine (for several machines, call torchrun yourself; see the README)."""
    import subprocess

    if nproc < 1:
        raise SeqlabError(f"--nproc: expected at least 1 process, got {nproc}")
    rest, skip = [], False
    for a in argv:  # drop --nproc N / --nproc=N; torchrun sets the world instead
        if skip or a.startswith("--nproc="):
            skip = False
            continue
        skip = a == "--nproc"
        if not skip:
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "seqlab", *rest]
    return subprocess.call(cmd)


def cmd_eval(args: argparse.Namespace) -> int:
    from seqlab.experiment import evaluate_run

    result = evaluate_run(args.run, data=args.data, split=args.split, device=args.device)
    print(json.dumps({**result.as_dict(), "run": str(args.run)}) if args.json else result.summary())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from seqlab.experiment import predict_run

    if args.input:
        from pathlib import Path

        lines = Path(args.input).read_text(encoding="utf-8").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    for output in predict_run(args.run, lines, device=args.device):
        print(output)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seqlab.demo import run_demo

    run_demo(minutes=args.minutes, out=args.out or _default_out("demo"))
    return 0


def _default_out(name: str) -> str:
    import time

    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "demo": cmd_demo,
}

# Modules adding subcommands: each has ``register(subparsers) -> {name: handler}``. Each task
# adds its own too (``sample`` for language models, ``translate`` for seq2seq).
PLUGINS = ("seqlab.leaderboard", "seqlab.diagnose", "seqlab.features", "seqlab.serve",
           "seqlab.inspect")


def _register_plugins(sub: Any) -> None:
    import importlib

    from seqlab import tasks

    for task in tasks.TASKS:
        COMMANDS.update(tasks.get(task).add_commands(sub))
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
    """Accept minGPT-style ``--section.key=value`` (or ``--section.key value``) overrides, and
    ``section.key=value`` ones that argparse left over because they came between options."""
    overrides, i = [], 0
    while i < len(extra):
        item = extra[i]
        key, eq, _ = item.removeprefix("--").partition("=")
        if "." not in key or not (item.startswith("--") or eq):
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    _split_overrides(parser, args, extra)
    args.argv = argv
    try:
        return COMMANDS[args.command](args)
    except TrainingDiverged as e:
        print(f"seqlab: error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as e:
        print(f"seqlab: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
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
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """End a torchrun process cleanly (a process group left open warns at exit).

    DDP's reducer holds the group; it is collected first, so no gloo thread outlives the group
    into interpreter shutdown.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def entry() -> Any:
    sys.exit(main())


if __name__ == "__main__":
    entry()
