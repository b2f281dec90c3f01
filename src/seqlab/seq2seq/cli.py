"""``seqlab translate RUN_DIR``: decode source lines with a trained seq2seq run (CLI plugin).

    seqlab translate RUN [--input FILE] [--output FILE] [--beam-size K] [--n-best N]
                         [--length-penalty A] [--greedy | --sample --temperature T --top-k K]
                         [--attention-plot OUT.png --plot-lines 1,3] [--scores] [--json]

Sources come one per line from ``--input`` or standard input; every line is checked (non-empty,
within ``model.max_src_len``) before anything is decoded or written, and the output file is
written atomically, so a bad line changes nothing. Without ``--n-best``/``--scores``/``--json``
the output is one target per line; ``--n-best N`` writes N lines per source as
``LINE<TAB>SCORE<TAB>TARGET``; ``--json`` writes one object per source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seqlab.config import from_dict, to_dict
from seqlab.errors import SeqlabError


def register(sub: Any) -> dict[str, Any]:
    t = sub.add_parser("translate", help="decode source lines with a trained seq2seq run")
    t.add_argument("run", help="seq2seq run folder or checkpoint file")
    t.add_argument("--input", help="source lines (default: standard input)")
    t.add_argument("--output", help="write targets here (default: standard output)")
    t.add_argument("--beam-size", type=int, help="beam width (decode.beam_size)")
    t.add_argument("--n-best", type=int, help="outputs per source (decode.n_best)")
    t.add_argument("--length-penalty", type=float, help="GNMT alpha (decode.length_penalty)")
    how = t.add_mutually_exclusive_group()
    how.add_argument("--greedy", action="store_true", help="argmax decoding")
    how.add_argument("--sample", action="store_true", help="sample (temperature, top-k, top-p)")
    t.add_argument("--temperature", type=float)
    t.add_argument("--top-k", type=int)
    t.add_argument("--top-p", type=float)
    t.add_argument("--seed", type=int, help="sampling seed")
    t.add_argument("--max-len-a", type=float, help="output limit: a * source length + b")
    t.add_argument("--max-len-b", type=int)
    t.add_argument("--batch-size", type=int, help="sources decoded together")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    t.add_argument("--scores", action="store_true", help="prefix each target with its score")
    t.add_argument("--json", action="store_true", help="one JSON object per source line")
    t.add_argument("--attention-plot", metavar="PNG",
                   help="write the attention heatmap of the chosen lines (see --plot-lines)")
    t.add_argument("--plot-lines", default="1", help="comma-separated 1-based input lines")
    return {"translate": cmd_translate}


def _decode_config(model: Any, args: argparse.Namespace) -> Any:
    from seqlab.seq2seq.search import DecodeConfig

    flags = {"beam_size": args.beam_size, "n_best": args.n_best,
             "length_penalty": args.length_penalty, "temperature": args.temperature,
             "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
             "max_len_a": args.max_len_a, "max_len_b": args.max_len_b,
             "batch_size": args.batch_size}
    raw = {**to_dict(model.config.decode), **{k: v for k, v in flags.items() if v is not None}}
    if args.greedy or args.sample:
        raw["strategy"] = "greedy" if args.greedy else "sample"
    elif args.beam_size is not None:
        raw["strategy"] = "beam"
    return from_dict(DecodeConfig, raw, prefix="decode.")


def _read_sources(args: argparse.Namespace, model: Any) -> tuple[list[list[str]], str]:
    from seqlab.seq2seq.data import check_source, read_lines, tokenize

    if args.input:
        name, lines = args.input, [text for _, text in read_lines(args.input)]
    else:
        name, lines = "<stdin>", sys.stdin.read().splitlines()
    sources = []
    for n, line in enumerate(lines, 1):
        tokens = tokenize(line.strip(), model.vocab.src.level)
        check_source(tokens, model.config.max_src_len, f"{name}:{n}")
        sources.append(tokens)
    if not sources:
        raise SeqlabError(f"{name}: expected source lines, got none")
    return sources, name


def _plot_lines(spec: str, n: int) -> list[int]:
    try:
        lines = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SeqlabError(f"--plot-lines: expected comma-separated line numbers, got {spec!r}"
                          ) from None
    bad = [x for x in lines if not 1 <= x <= n]
    if bad or not lines:
        raise SeqlabError(f"--plot-lines: expected line numbers in 1..{n}, got {spec!r}")
    return lines


def cmd_translate(args: argparse.Namespace) -> int:
    from seqlab.experiment import load_run
    from seqlab.seq2seq.data import encode

    model, _ = load_run(args.run, args.device)
    if model.family != "seq2seq":
        raise SeqlabError(f"{args.run}: expected a seq2seq run, got a {model.family} model; "
                          "use seqlab sample for language models")
    cfg = _decode_config(model, args)
    sources, name = _read_sources(args, model)
    plots = _plot_lines(args.plot_lines, len(sources)) if args.attention_plot else []
    if plots and model.config.attention == "none":
        raise SeqlabError(f"{args.run}: the model has no attention (model.attention = none); "
                          "there is nothing to plot")
    ids = [encode(s, model.vocab.src) for s in sources]
    unknown = sum(int((i == 1).sum()) for i in ids)
    if unknown:
        print(f"seqlab: note: {unknown} source token(s) outside the vocabulary became <unk>",
              file=sys.stderr)
    hyps = model.translate(ids, cfg)
    _write(args, _format(args, model, hyps))
    for line in plots:
        _plot(args, model, sources[line - 1], hyps[line - 1][0], line, len(plots) > 1, name)
    return 0


def _format(args: argparse.Namespace, model: Any, hyps: list[list[Any]]) -> str:
    from seqlab.seq2seq.data import decode, detokenize

    text = lambda h: detokenize(decode(h.tokens, model.vocab.tgt), model.vocab.tgt.level)  # noqa: E731
    out = []
    for n, hs in enumerate(hyps, 1):
        if args.json:
            out.append(json.dumps({"line": n, "hypotheses": [
                {"target": text(h), "score": h.score, "log_prob": h.log_prob} for h in hs]}))
        elif len(hs) > 1 or args.n_best:
            out += [f"{n}\t{h.score:.4f}\t{text(h)}" for h in hs]
        elif args.scores:
            out.append(f"{hs[0].score:.4f}\t{text(hs[0])}")
        else:
            out.append(text(hs[0]))
    return "".join(line + "\n" for line in out)


def _write(args: argparse.Namespace, text: str) -> None:
    from seqlab.io import atomic_write

    if args.output:
        atomic_write(args.output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _plot(args: argparse.Namespace, model: Any, source: list[str], hyp: Any, line: int,
          several: bool, name: str) -> None:
    from seqlab.seq2seq.data import EOS, decode
    from seqlab.seq2seq.plot import attention_png

    path = Path(args.attention_plot)
    if several:
        path = path.with_name(f"{path.stem}-{line}{path.suffix or '.png'}")
    output = [*decode(hyp.tokens, model.vocab.tgt), EOS]
    attention_png(hyp.attention, source, output, path, title=f"{name}:{line}")
    print(f"attention plot: {path}", file=sys.stderr)
