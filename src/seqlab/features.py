"""``seqlab features``: what a recurrent language model, trained without labels, knows about a
line of text, as a fixed-size vector per line (Radford, Jozefowicz and Sutskever 2017).

    seqlab features RUN --data lines.txt --out feats.npy [--pool final|mean|both]

Each line is read as the model reads text: after an end-of-line, one token at a time. Its
features are the recurrent state after the line's last token (``final``: every layer's ``h``,
and ``c`` for an LSTM, the cell state being where Radford et al. found their sentiment unit),
or the mean of the top layer's output over the line (``mean``), or both side by side. The
``.npy`` file holds a float32 matrix (lines, units); a JSON file beside it names each unit
(``c2.17``: unit 17 of layer 2's cell state) so that a probe's weights can be read back.

The module also shows what one unit does: its value after every token of a text
(`unit_trace`), and text generated with the unit held at a value (`clamped_sample`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from seqlab.errors import SeqlabError
from seqlab.io import atomic_open, write_json
from seqlab.nn.recurrent import State
from seqlab.sampling import SampleConfig, pick

Pool = Literal["final", "mean", "both"]


def _check(model: Any) -> None:
    if getattr(model, "family", None) != "recurrent":
        raise SeqlabError(f"seqlab features reads a recurrent language model's state (rnn, "
                          f"lstm, gru), got a {getattr(model, 'family', type(model).__name__)} "
                          "model")


def state_names(model: Any) -> list[str]:
    """One name per unit of the flattened state: ``h1.0 ... h1.{H-1}, h2.0, ..., c1.0, ...``."""
    c = model.config
    kinds = ("h", "c") if c.cell == "lstm" else ("h",)
    return [f"{k}{layer + 1}.{u}" for k in kinds for layer in range(c.layers)
            for u in range(c.hidden)]


def feature_names(model: Any, pool: Pool = "final") -> list[str]:
    mean = [f"mean{model.config.layers}.{u}" for u in range(model.config.hidden)]
    return {"final": state_names(model), "mean": mean, "both": state_names(model) + mean}[pool]


def flat(state: State) -> torch.Tensor:
    """A recurrent state, each (layers, B, H), as (B, units) in `state_names` order."""
    return torch.cat([s.permute(1, 0, 2).reshape(s.shape[1], -1) for s in state], dim=1)


@torch.no_grad()
def line_features(model: Any, lines: list[str], pool: Pool = "final",
                  batch_size: int = 64) -> np.ndarray:
    """(len(lines), units) float32 features; lines of equal token length are batched."""
    _check(model)
    model.eval()
    ids = [model.vocab.encode(line) for line in lines]
    out = np.zeros((len(lines), len(feature_names(model, pool))), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(ids):
        by_length.setdefault(len(seq), []).append(i)
    eos = model.vocab.eos_id
    for length, rows in sorted(by_length.items()):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            x = torch.tensor(np.array([[eos, *ids[i]] for i in chunk], dtype=np.int64).reshape(
                len(chunk), length + 1), device=model.device)  # (B, 1 + T)
            emb = model.embed(x)  # (B, 1 + T, E)
            top, state = model.stack(emb, model.initial_state(len(chunk)))  # (B, 1 + T, H)
            parts = []
            if pool in ("final", "both"):
                parts.append(flat(state))  # (B, units)
            if pool in ("mean", "both"):  # over the line's own tokens (or the end-of-line)
                parts.append(top[:, 1:].mean(1) if length else top[:, 0])  # (B, H)
            out[chunk] = torch.cat(parts, dim=1).float().cpu().numpy()
    return out


@torch.no_grad()
def unit_trace(model: Any, text: str, unit: int) -> np.ndarray:
    """The value of state unit `unit` (a column of `flat`) after each token of `text`."""
    _check(model)
    model.eval()
    state = model.prime([])[1]
    values = []
    for tok in model.vocab.encode(text):
        _, state = model.step(int(tok), state)
        values.append(float(flat(state)[0, unit]))
    return np.array(values)


def clamp(state: State, unit: int, value: float) -> State:
    """`state` with state unit `unit` (a column of `flat`) set to `value`."""
    per_tensor = state[0].shape[0] * state[0].shape[2]  # layers * hidden
    which, rest = divmod(unit, per_tensor)
    layer, u = divmod(rest, state[0].shape[2])
    out = [s.clone() for s in state]
    out[which][layer, :, u] = value
    return tuple(out)


@torch.no_grad()
def clamped_sample(model: Any, unit: int, value: float, length: int, *, prompt: str = "",
                   seed: int = 0, temperature: float = 1.0) -> str:
    """Text sampled with state unit `unit` held at `value` before every step (Radford et al.
    fix their sentiment unit to a positive or negative value and let the model write)."""
    _check(model)
    cfg = SampleConfig(length=length, seed=seed, temperature=temperature)
    gen = torch.Generator().manual_seed(seed)
    _, state = model.prime(model.vocab.encode(prompt))
    state = clamp(state, unit, value)
    logits = model.head(state[0][-1])[0]  # the top layer's h after the clamp: (V,)
    out = []
    for _ in range(cfg.length):
        tok = pick(logits, cfg, gen)
        out.append(tok)
        logits, state = model.step(tok, state)
        state = clamp(state, unit, value)
        logits = model.head(state[0][-1])[0]
    return str(model.vocab.decode(np.array(out)))


# --- command line -------------------------------------------------------------------------------
def register(subparsers: Any) -> dict[str, Any]:
    f = subparsers.add_parser("features", help="a recurrent LM's state after each line, as "
                                               "features (.npy + unit names in .json)")
    f.add_argument("run", metavar="RUN_DIR", help="a trained recurrent language model")
    f.add_argument("--data", required=True, help="text file: one example per line")
    f.add_argument("--out", required=True, help="features file (.npy); names go beside it")
    f.add_argument("--pool", choices=["final", "mean", "both"], default="final",
                   help="final state (all layers), mean top-layer output, or both")
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--device", help="cpu, cuda, ... (default: cpu)")
    return {"features": cmd_features}


def cmd_features(args: argparse.Namespace) -> int:
    from seqlab.experiment import load_run

    out = Path(args.out)
    if out.suffix != ".npy":
        raise SeqlabError(f"--out: expected a .npy file name, got {args.out}")
    lines = Path(args.data).read_text(encoding="utf-8").splitlines()
    model, _ = load_run(args.run, args.device)
    feats = line_features(model, lines, args.pool, args.batch_size)
    with atomic_open(out, "wb") as fh:
        np.save(fh, feats, allow_pickle=False)
    write_json(out.with_suffix(".json"), {"run": str(args.run), "data": str(args.data),
                                          "pool": args.pool, "lines": len(lines),
                                          "units": feature_names(model, args.pool)})
    print(f"{len(lines):,} lines x {feats.shape[1]:,} units -> {out}")
    return 0
