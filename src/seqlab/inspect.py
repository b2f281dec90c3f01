"""Look inside a recurrent language model: unit activations, interpretable units, gate saturation.

After Karpathy, Johnson & Fei-Fei (2015, "Visualizing and Understanding Recurrent Networks"):

* `activations` runs a char-level recurrent LM (LSTM, GRU or tanh/relu RNN) over a text by
  stepping its hand-written cells (`seqlab.nn.cells.scan`, on the trained weights), and returns,
  per layer, every gate and the hidden (and LSTM cell) state after each token, as (T, H) arrays,
  plus each token's surprise in bits;
* `code_features` / `text_features` give per-character ground truth: for Python source, from
  `tokenize`: inside a string literal, inside a comment, bracket depth, indentation level
  (the block depth tokenize's INDENT/DEDENT tokens define) and position in the line; for plain
  text: inside quotes and position in the line;
* `correlations` is every unit's Pearson correlation with every feature, and `best_units` the
  units that track each feature best (by absolute correlation), among the hidden states, the
  LSTM cell states and the gates (``best_abs_r_states`` in the report: states only);
* `gate_saturation` is, per gate and unit, the fraction of steps with the gate below 0.1 (left
  saturated) and above 0.9 (right saturated), plotted by `plot_saturation` as the paper's scatter.

``seqlab inspect RUN --data FILE`` writes ``inspect.json``, ``inspect_saturation.png`` and
``inspect_units.png``. The functions return plain arrays and dicts, for the server too.
"""

from __future__ import annotations

import argparse
import io
import sys
import tokenize
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, write_json

LOW, HIGH = 0.1, 0.9  # a gate below LOW is left-saturated, above HIGH right-saturated
SATURATING = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}  # sigmoid gates
BRACKETS = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
STRING_TOKENS = {tokenize.STRING} | {getattr(tokenize, n) for n in (
    "FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}  # 3.12+ f-strings


# --- ground truth -------------------------------------------------------------------------------
def columns(text: str) -> np.ndarray:
    """Position of each character in its line (0 for the first; a newline ends its line)."""
    starts = np.zeros(len(text), dtype=np.int64)
    nl = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == 10)
    starts[nl[nl + 1 < len(text)] + 1] = nl[nl + 1 < len(text)] + 1
    return np.arange(len(text)) - np.maximum.accumulate(starts)


def code_features(text: str) -> dict[str, np.ndarray]:
    """Per-character features of Python source from `tokenize` (float arrays of len(text)).

    ``in_string``: the character belongs to a string literal, quotes and prefix included;
    ``in_comment``: to a comment, ``#`` included; ``bracket_depth``: open (, [ and { before it;
    ``indent``: the block depth (INDENT minus DEDENT tokens before it); ``column``: position in
    the line. Text that does not tokenize is a `SeqlabError`.
    """
    line_start = np.concatenate([[0], np.flatnonzero(np.array(
        [c == "\n" for c in text], dtype=bool)) + 1])  # offset of each line (row - 1)

    def offset(pos: tuple[int, int]) -> int:
        return int(line_start[pos[0] - 1]) + pos[1]

    n = len(text)
    in_string, in_comment = np.zeros(n), np.zeros(n)
    depth, indent = np.zeros(n + 1), np.zeros(n + 1)  # +-1 at change points, then cumsum
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.ENDMARKER:
                break
            a, b = offset(tok.start), min(offset(tok.end), n)
            if tok.type in STRING_TOKENS:
                in_string[a:b] = 1
            elif tok.type == tokenize.COMMENT:
                in_comment[a:b] = 1
            elif tok.type == tokenize.OP and tok.string in BRACKETS:
                # An opening bracket deepens what follows it; a closing one is at the outer level.
                depth[b if BRACKETS[tok.string] > 0 else a] += BRACKETS[tok.string]
            elif tok.type in (tokenize.INDENT, tokenize.DEDENT):
                indent[a] += 1 if tok.type == tokenize.INDENT else -1
    except (tokenize.TokenError, SyntaxError) as e:
        raise SeqlabError(f"the text does not tokenize as Python ({e}); use --kind text") from None
    return {"in_string": in_string, "in_comment": in_comment,
            "bracket_depth": np.cumsum(depth)[:n], "indent": np.cumsum(indent)[:n],
            "column": columns(text).astype(float)}


def text_features(text: str) -> dict[str, np.ndarray]:
    """Per-character features of prose: ``in_quotes`` (between a pair of straight double
    quotes, or curly ones, the quotes included) and ``column``."""
    inside, q = np.zeros(len(text)), False
    for k, ch in enumerate(text):
        if ch in "\"\u201c\u201d":
            opening = not q if ch == '"' else ch == "\u201c"
            inside[k] = 1
            q = opening
        else:
            inside[k] = q
    return {"in_quotes": inside, "column": columns(text).astype(float)}


def features(text: str, kind: str = "auto") -> tuple[str, dict[str, np.ndarray]]:
    """The features for `kind`: code, text, or auto (code when the text parses as Python;
    `tokenize` alone accepts most prose)."""
    if kind not in ("auto", "code", "text"):
        raise SeqlabError(f"--kind must be auto, code or text, got {kind!r}")
    if kind == "auto":
        kind = "code" if _parses(text) else "text"
    return kind, code_features(text) if kind == "code" else text_features(text)


def _parses(text: str) -> bool:
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in the analysed text
            ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


# --- activations --------------------------------------------------------------------------------
def activations(model: Any, text: str, *, chunk: int = 1024) -> dict[str, Any]:
    """Step a char-level recurrent LM over `text` from a fresh state (after an end-of-line).

    Returns ``{"cell", "tokens", "surprise_bits" (T,), "layers": [{name: (T, H) array}]}``
    with, per layer, its gates (LSTM i, f, g, o; GRU r, z, n), ``h`` and the LSTM's ``c``,
    each row the value after reading that token.
    """
    from seqlab.nn.cells import scan

    _check_model(model)
    c, vocab = model.config, model.vocab
    ids = torch.as_tensor(np.asarray(vocab.encode(text), dtype=np.int64))
    if len(ids) != len(text):
        raise SeqlabError(f"expected one token per character, got {len(ids)} for {len(text)}")
    layers: list[dict[str, list[np.ndarray]]] = [{} for _ in range(c.layers)]
    surprise: list[np.ndarray] = []
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            state = model.initial_state(1)
            n_cell = 2 if c.cell == "lstm" else 1
            prev = torch.tensor([vocab.eos_id])
            for s in range(0, len(ids), chunk):
                y = ids[s:s + chunk]
                x = model.embed(torch.cat([prev, y[:-1]])[None])  # (1, t, E)
                new = []
                for i, layer in enumerate(model.stack.layers):
                    part = tuple(t[i:i + 1][0] for t in state[:n_cell])  # each (1, H)
                    r = scan(c.cell, x, part, layer.weights(0), relu=c.nonlinearity == "relu",
                             skip=c.time_skip, history=state[n_cell][i] if c.time_skip else None,
                             record=True)
                    assert r.gates is not None
                    rec = {**r.gates, "h": r.out}
                    for k, v in rec.items():
                        layers[i].setdefault(k, []).append(v[0].float().numpy())
                    new.append((r.state, r.history))
                    x = r.out + x if c.residual and i + 1 >= c.residual_start else r.out
                state = _stack_state(new, n_cell, bool(c.time_skip))
                lp = model.head(x[0]).float().log_softmax(-1).gather(1, y[:, None])[:, 0]
                surprise.append((-lp / np.log(2)).numpy())
                prev = y[-1:]
    finally:
        model.train(was)
    return {"cell": c.cell, "tokens": list(text),
            "surprise_bits": np.concatenate(surprise) if surprise else np.zeros(0),
            "layers": [{k: np.concatenate(v) for k, v in layer.items()} for layer in layers]}


def _stack_state(new: list[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]], n_cell: int,
                 skip: bool) -> tuple[torch.Tensor, ...]:
    state = tuple(torch.stack([s[k] for s, _ in new]) for k in range(n_cell))  # (L, 1, H)
    if skip:
        state = (*state, torch.stack([h for _, h in new if h is not None]))
    return state


def _check_model(model: Any) -> None:
    c = getattr(model, "config", None)
    if getattr(model, "family", None) != "recurrent" or c is None:
        raise SeqlabError(f"seqlab inspect needs a recurrent language model (lstm, gru, rnn), "
                          f"got a {getattr(model, 'family', type(model).__name__)} model")
    if model.vocab.level not in ("char", "byte"):
        raise SeqlabError(f"seqlab inspect lines features up with characters, so it needs a "
                          f"char or byte level model, got {model.vocab.level} level")


# --- analysis -----------------------------------------------------------------------------------
def correlations(acts: np.ndarray, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pearson correlation of every unit of acts (T, H) with each feature (T,): name -> (H,).
    A constant unit or feature correlates 0."""
    a = acts - acts.mean(0)
    a_norm = np.sqrt((a * a).sum(0))
    out = {}
    for name, f in feats.items():
        f = f - f.mean()
        denom = a_norm * np.sqrt((f * f).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(denom > 0, (a.T @ f) / denom, 0.0)
    return out


def unit_correlations(acts: dict[str, Any], feats: dict[str, np.ndarray],
                      signals: tuple[str, ...] | None = None) -> list[dict[str, dict[str, Any]]]:
    """Per layer, per signal (h, the LSTM's c, and each gate; None: all), per feature: (H,)
    correlations."""
    return [{s: correlations(v, feats) for s, v in layer.items()
             if signals is None or s in signals} for layer in acts["layers"]]


def best_units(corr: list[dict[str, dict[str, np.ndarray]]], k: int = 5
               ) -> dict[str, list[dict[str, Any]]]:
    """Per feature, the k (layer, signal, unit) with the largest absolute correlation."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for li, layer in enumerate(corr):
        for sig, per_feat in layer.items():
            for feat, r in per_feat.items():
                rows.setdefault(feat, []).extend(
                    {"layer": li + 1, "signal": sig, "unit": int(u), "r": float(r[u])}
                    for u in np.argsort(-np.abs(r))[:k])
    return {f: sorted(v, key=lambda d: -abs(d["r"]))[:k] for f, v in rows.items()}


def gate_saturation(acts: dict[str, Any]) -> list[dict[str, dict[str, np.ndarray]]]:
    """Per layer and sigmoid gate: ``left`` (H,) fraction of steps below 0.1, ``right`` above
    0.9 (the tanh RNN has no gates: empty dicts)."""
    return [{g: {"left": (layer[g] < LOW).mean(0), "right": (layer[g] > HIGH).mean(0)}
             for g in SATURATING[acts["cell"]]} for layer in acts["layers"]]


def report(acts: dict[str, Any], kind: str, feats: dict[str, np.ndarray], k: int = 5
           ) -> dict[str, Any]:
    """The JSON report: best units per feature, saturation per gate, and summary numbers."""
    corr = unit_correlations(acts, feats)
    states = unit_correlations(acts, feats, ("h", "c"))
    sat = gate_saturation(acts)
    return {
        "cell": acts["cell"], "kind": kind, "tokens": len(acts["tokens"]),
        "mean_surprise_bits": float(np.mean(acts["surprise_bits"])) if acts["tokens"] else None,
        "best_units": best_units(corr, k),
        "best_abs_r": {f: abs(v[0]["r"]) for f, v in best_units(corr, 1).items()},
        "best_abs_r_states": {f: abs(v[0]["r"]) for f, v in best_units(states, 1).items()},
        "saturation": [{g: {side: v.tolist() for side, v in d.items()} for g, d in layer.items()}
                       for layer in sat],
    }


# --- plots --------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_saturation(rep: dict[str, Any], path: str | Path) -> None:
    """Karpathy et al.'s Figure 3: per gate, one point per unit at (fraction of steps left
    saturated, fraction right saturated), coloured by layer."""
    plt = _pyplot()
    gates = SATURATING[rep["cell"]] or ("none",)
    fig, axes = plt.subplots(1, len(gates), figsize=(3.6 * len(gates), 3.6), squeeze=False)
    for ax, g in zip(axes[0], gates, strict=True):
        for li, layer in enumerate(rep["saturation"]):
            if g in layer:
                ax.scatter(layer[g]["left"], layer[g]["right"], s=6, alpha=0.6,
                           label=f"layer {li + 1}")
        ax.plot([0, 1], [1, 0], color="grey", lw=0.6, ls="--")  # left + right = 1
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"fraction < {LOW} (left saturated)",
               ylabel=f"fraction > {HIGH} (right saturated)",
               title=f"{rep['cell'].upper()} gate {g}" if g != "none" else "no gates (tanh RNN)")
        if rep["saturation"] and g in rep["saturation"][0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_units(acts: dict[str, Any], feats: dict[str, np.ndarray], rep: dict[str, Any],
               path: str | Path, span: int = 400) -> None:
    """Per feature, its best unit's activation beside the feature over the first `span` chars."""
    plt = _pyplot()
    names = list(feats)
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 1.7 * len(names)), squeeze=False)
    t = np.arange(min(span, len(acts["tokens"])))
    for ax, name in zip(axes[:, 0], names, strict=True):
        best = rep["best_units"][name][0]
        unit = acts["layers"][best["layer"] - 1][best["signal"]][t, best["unit"]]
        f = feats[name][t]
        scale = np.ptp(f) or 1.0
        ax.plot(t, (f - f.min()) / scale, color="grey", lw=0.8, label=name)
        ax.plot(t, (unit - unit.min()) / (np.ptp(unit) or 1.0), lw=0.8,
                label=f"layer {best['layer']} {best['signal']}[{best['unit']}], r={best['r']:.2f}")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("character")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: str | Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    _pyplot().close(fig)


# --- command line -------------------------------------------------------------------------------
def read_text(path: str, max_chars: int) -> str:
    """The first `max_chars` characters of a UTF-8 file, cut at a line end; one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise SeqlabError(f"--data {path}: file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SeqlabError(f"--data {path}: expected UTF-8 text, got an undecodable byte at "
                          f"offset {e.start}") from None
    if len(text) > max_chars:
        cut = text.rfind("\n", 0, max_chars)
        text = text[:cut + 1 if cut > 0 else max_chars]
    if not text.strip():
        raise SeqlabError(f"--data {path}: expected some text, got an empty file")
    return text


def inspect_run(run: str, data: str, *, out: str | Path, kind: str = "auto",
                max_chars: int = 20_000, k: int = 5) -> dict[str, Any]:
    """Load a run, analyse `data`, write inspect.json and the two PNGs into `out`."""
    from seqlab.experiment import load_run

    text = read_text(data, max_chars)
    model, _ = load_run(run)
    _check_model(model)
    if kind == "auto" and Path(data).suffix in (".py", ".pyw"):
        kind = "code"  # a file cut at --max-chars may end inside a block: still code
    kind, feats = features(text, kind)
    acts = activations(model, text)
    rep = {"run": str(run), "data": str(data), **report(acts, kind, feats, k)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "inspect.json", rep)
    plot_saturation(rep, out / "inspect_saturation.png")
    plot_units(acts, feats, rep, out / "inspect_units.png")
    return rep


def register(subparsers: Any) -> dict[str, Any]:
    p = subparsers.add_parser("inspect", help="interpretable units and gate saturation of a "
                                              "recurrent LM on a text (PNG + JSON)")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("--data", required=True, help="text to analyse (Python source or prose)")
    p.add_argument("--kind", default="auto", choices=["auto", "code", "text"],
                   help="features: code (from tokenize), text, or auto (code for .py files and "
                        "text that parses as Python)")
    p.add_argument("--max-chars", type=int, default=20_000, help="analyse this much of --data")
    p.add_argument("--top", type=int, default=5, help="units listed per feature")
    p.add_argument("--out", help="folder for inspect.json/.png (default: the run folder)")
    return {"inspect": cmd_inspect}


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.max_chars < 1 or args.top < 1:
        raise SeqlabError(f"--max-chars and --top must be >= 1, got {args.max_chars}, "
                          f"{args.top}")
    out = Path(args.out) if args.out else Path(args.run)
    if out.is_file():
        raise SeqlabError(f"{args.run} is a checkpoint file; pass --out FOLDER")
    rep = inspect_run(args.run, args.data, out=out, kind=args.kind, max_chars=args.max_chars,
                      k=args.top)
    for feat, rows in rep["best_units"].items():
        b = rows[0]
        print(f"{feat}: layer {b['layer']} {b['signal']}[{b['unit']}] r={b['r']:+.3f}",
              file=sys.stderr)
    print(f"wrote {out / 'inspect.json'}, {out / 'inspect_saturation.png'} and "
          f"{out / 'inspect_units.png'}", file=sys.stderr)
    return 0
