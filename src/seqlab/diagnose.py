"""Gradient-flow diagnostics: how the gradient of a loss decays or grows with distance in time.

For a trained (or untrained) run, ``seqlab diagnose RUN_DIR`` takes windows of T + 1 tokens from
the run's data, lets the model predict the last token from the T before it, and measures the
norm of dL/dh_t for every t in the window: for the input embeddings and for every layer (for
recurrent models, the *total* derivative through the recurrence, read from the hand-written
cells whatever the training implementation; see `seqlab.nn.recurrent.RecurrentStack.trace`).
Plotted against the distance from the loss, a straight line on a log scale is a gradient that
vanishes (falling) or explodes (rising) geometrically; the fitted per-step factor says how fast.

``seqlab diagnose --cells`` reproduces the textbook picture on untrained 128-unit stacks and
random inputs (Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997; Pascanu, Mikolov &
Bengio 2013): the gradient of the last output with respect to each earlier input, for a tanh
RNN, an LSTM with PyTorch's default initialisation, an LSTM whose forget-gate bias is 1
(Gers et al. 2000; Jozefowicz et al. 2015), a GRU, and a tanh RNN whose recurrent weights are
large enough to explode; then that exploding RNN trained on the adding problem with plain SGD,
without clipping, clipped by global norm, and clipped by value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqlab.errors import SeqlabError, TrainingDiverged
from seqlab.io import atomic_open, write_json
from seqlab.nn.recurrent import RecurrentStack, StackConfig

# Untrained stacks compared by ``--cells``: label -> StackConfig overrides.
CELLS: dict[str, dict[str, Any]] = {
    "tanh RNN": {"cell": "rnn"},
    "LSTM, default init (forget bias ~0)": {"cell": "lstm"},
    "LSTM, forget bias 1": {"cell": "lstm", "forget_bias": 1.0},
    "GRU": {"cell": "gru"},
    "tanh RNN, W uniform +-0.3 (exploding)": {"cell": "rnn", "init": "uniform", "init_scale": 0.3},
}
EXPLODING = CELLS["tanh RNN, W uniform +-0.3 (exploding)"]
CLIPPING = {"no clipping": {}, "clip global norm 1": {"clip_norm": 1.0},
            "clip each value to 0.01": {"clip_value": 0.01}}


# --- measurements -------------------------------------------------------------------------------
def model_profile(model: Any, windows: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean over windows of ||dL/dh_t||, indexed by distance from the loss (0 = last input).

    ``windows`` (B, T + 1) token ids; L is the cross-entropy of predicting each window's last
    token from the T before it. The model names the tensors through its ``trace`` method.
    """
    _require_trace(model)
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits, tensors = model.trace(windows[:, :-1])  # (B, T, V)
            loss = F.cross_entropy(logits[:, -1].float(), windows[:, -1], reduction="sum")
            grads = torch.autograd.grad(loss, list(tensors.values()), allow_unused=True)
    finally:
        model.train(was)
    T = windows.shape[1] - 1
    return {name: (np.zeros(T) if g is None else
                   g.double().norm(dim=-1).mean(0).flip(0).numpy())  # (T,) by distance
            for name, g in zip(tensors, grads, strict=True)}


def _require_trace(model: Any) -> None:
    if not hasattr(model, "trace"):
        raise SeqlabError(f"seqlab diagnose needs a neural model (recurrent, conv or window), "
                          f"got a {getattr(model, 'family', type(model).__name__)} model")


def stack_profile(overrides: dict[str, Any], *, hidden: int = 128, T: int = 100,
                  input_size: int = 32, batch: int = 16, seed: int = 0) -> np.ndarray:
    """Untrained stack, random N(0, 1) inputs: mean over the batch of ||d(sum of h_T)/dx_t||,
    indexed by distance from the last step (0 = the last input)."""
    torch.manual_seed(seed)
    stack = RecurrentStack(input_size, StackConfig(hidden=hidden, layers=1, **overrides)).double()
    x = torch.randn(batch, T, input_size, dtype=torch.float64, requires_grad=True)
    out, _ = stack(x)  # float64: the tanh RNN's gradient at distance 100 is ~1e-25
    (g,) = torch.autograd.grad(out[:, -1].sum(), [x])
    return g.norm(dim=-1).mean(0).flip(0).numpy()


def per_step_factor(norms: np.ndarray) -> float | None:
    """exp(slope) of a least-squares line through log-norm against distance: < 1 vanishing,
    > 1 exploding. None when fewer than two positive values exist."""
    d = np.flatnonzero((norms > 0) & np.isfinite(norms))
    if len(d) < 2:
        return None
    return float(np.exp(np.polyfit(d, np.log(norms[d]), 1)[0]))


def clipping_runs(*, lr: float = 0.1, steps: int = 200, T: int = 50, seed: int = 0
                  ) -> dict[str, dict[str, Any]]:
    """The exploding RNN on the adding problem with plain SGD, with and without clipping.

    Returns per label the loss and pre-clipping gradient norm of every step, and the step at
    which training diverged (the loss became inf or NaN), if it did.
    """
    from seqlab.models.heads import HeadConfig, SequenceHead
    from seqlab.run import Callback, Run, TrainConfig
    from seqlab.synthetic import TaskBatcher, adding_problem
    from seqlab.trainer import Trainer

    class Record(Callback):
        def __init__(self) -> None:
            self.loss: list[float] = []
            self.grad_norm: list[float] = []

        def on_log(self, record: dict[str, Any]) -> None:
            self.loss.append(record["loss"])
            self.grad_norm.append(record["grad_norm"])

    x, y = adding_problem(steps * 32, T, seed=seed)
    out = {}
    for label, clip in CLIPPING.items():
        torch.manual_seed(seed)
        head = SequenceHead(HeadConfig(inputs=2, recurrent=StackConfig(hidden=128, layers=1,
                                                                       **EXPLODING)))
        cfg = TrainConfig(optimizer="sgd", lr=lr, schedule="constant", warmup_steps=0,
                          max_steps=steps, batch_size=32, log_interval=1, progress=False,
                          seed=seed, clip_norm=clip.get("clip_norm"),
                          clip_value=clip.get("clip_value"))
        rec, diverged = Record(), None
        try:
            Trainer(Run(train=cfg, callbacks=[rec])).fit(head, TaskBatcher(x, y, 32), None)
        except TrainingDiverged:
            diverged = len(rec.loss) + 1
        out[label] = {"loss": _finite(rec.loss), "grad_norm": _finite(rec.grad_norm),
                      "diverged_at": diverged, "final_loss": rec.loss[-1] if rec.loss else None}
    return out


def cells_report(*, hidden: int = 128, T: int = 100, seed: int = 0, clip_steps: int = 200
                 ) -> dict[str, Any]:
    """Everything ``seqlab diagnose --cells`` shows, as JSON-ready data."""
    profiles = {label: stack_profile(kw, hidden=hidden, T=T, seed=seed)
                for label, kw in CELLS.items()}
    return {
        "kind": "cells", "hidden": hidden, "window": T, "seed": seed,
        "loss": "sum of the last output's units; inputs N(0, 1); gradient w.r.t. each input",
        "profiles": [{"label": k, "config": CELLS[k], "grad_norm": v.tolist(),
                      "per_step_factor": per_step_factor(v)} for k, v in profiles.items()],
        "clipping": {"task": f"adding problem T=50, SGD lr 0.1, {hidden} tanh units, "
                             f"W uniform +-{EXPLODING['init_scale']}",
                     "runs": clipping_runs(steps=clip_steps, seed=seed)},
    }


# --- run folders --------------------------------------------------------------------------------
def run_windows(run_dir: str | Path, *, T: int, batch: int, split: str, seed: int,
                data: str | None = None) -> tuple[Any, torch.Tensor]:
    """A run's best model and `batch` random windows of T + 1 tokens from its data."""
    import tempfile

    from seqlab.config import from_dict
    from seqlab.data.corpus import DataConfig, encode_for_eval, prepare
    from seqlab.experiment import load_run

    model, config = load_run(run_dir)
    _require_trace(model)
    if data is not None:
        ids = np.array(encode_for_eval(data, model.vocab, tempfile.mkdtemp()))
    elif config:
        cfg = from_dict(DataConfig, config["data"], prefix="data.")
        ids = np.asarray(prepare(cfg, Path(run_dir) / "data", vocab=model.vocab).split(split))
    else:
        raise SeqlabError(f"{run_dir}: a bare checkpoint has no data of its own; pass --data")
    if len(ids) < T + 1:
        raise SeqlabError(f"{run_dir}: --window {T} needs at least {T + 1} tokens, the {split} "
                          f"split has {len(ids)}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - T, size=batch)
    return model, torch.from_numpy(np.stack([ids[s:s + T + 1] for s in starts]).astype(np.int64))


def runs_report(run_dirs: list[str], *, T: int, batch: int, split: str, seed: int,
                data: str | None = None) -> dict[str, Any]:
    profiles = []
    for run in run_dirs:
        model, windows = run_windows(run, T=T, batch=batch, split=split, seed=seed, data=data)
        for name, norms in model_profile(model, windows).items():
            profiles.append({"run": str(run), "model": getattr(model, "name", ""),
                             "tensor": name, "grad_norm": norms.tolist(),
                             "per_step_factor": per_step_factor(norms)})
    return {"kind": "runs", "window": T, "batch": batch, "split": split, "seed": seed,
            "loss": "cross-entropy of each window's last token, summed over windows",
            "profiles": profiles}


# --- plots --------------------------------------------------------------------------------------
def plot(report: dict[str, Any], path: str | Path) -> None:
    """A PNG of a runs or cells report (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = report["kind"] == "cells"
    fig, axes = plt.subplots(1, 2 if cells else 1, figsize=(13 if cells else 7.5, 4.8),
                             squeeze=False)
    ax = axes[0, 0]
    for p in report["profiles"]:
        norms = np.asarray(p["grad_norm"])
        label = p["label"] if cells else f"{p['model'] or Path(p['run']).name}: {p['tensor']}"
        factor = p["per_step_factor"]
        ax.semilogy(np.where(norms > 0, norms, np.nan),
                    label=label + (f" (x{factor:.3g}/step)" if factor else ""))
    ax.set_xlabel("distance from the loss (steps)")
    ax.set_ylabel("||dL/dx_t||" if cells else "||dL/dh_t||")
    ax.set_title(f"{report.get('hidden', '')} units, untrained, random inputs" if cells
                 else "gradient flow")
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    if cells:
        _plot_clipping(axes[0, 1], report["clipping"])
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def _plot_clipping(ax: Any, clipping: dict[str, Any]) -> None:
    for label, run in clipping["runs"].items():
        loss = np.asarray(run["loss"], dtype=float)
        end = f", diverged at step {run['diverged_at']}" if run["diverged_at"] else ""
        ax.semilogy(np.arange(1, len(loss) + 1), loss, label=label + end)
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training MSE")
    ax.set_title(clipping["task"], fontsize=9)
    ax.axhline(1 / 6, color="grey", lw=0.8, ls="--", label="predict 1 (0.167)")
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)


# --- command line -------------------------------------------------------------------------------
def register(subparsers: Any) -> dict[str, Any]:
    d = subparsers.add_parser("diagnose", help="gradient flow: ||dL/dh_t|| over a window")
    d.add_argument("runs", nargs="*", metavar="RUN_DIR", help="trained runs (or checkpoints)")
    d.add_argument("--cells", action="store_true",
                   help="untrained tanh RNN / LSTM / GRU comparison, and clipping, instead")
    d.add_argument("--window", type=int, default=100, help="T: steps before the loss")
    d.add_argument("--batch", type=int, default=16, help="windows averaged over")
    d.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    d.add_argument("--data", help="take windows from this file instead of the run's split")
    d.add_argument("--hidden", type=int, default=128, help="--cells: units per stack")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", help="folder for gradient_flow.json/.png (default: the run folder)")
    d.add_argument("--json", action="store_true", help="print the report as one JSON line")
    return {"diagnose": cmd_diagnose}


def cmd_diagnose(args: argparse.Namespace) -> int:
    if args.cells == bool(args.runs):
        raise SeqlabError("seqlab diagnose expects RUN_DIR ... or --cells, got "
                          + ("both" if args.cells else "neither"))
    if args.window < 1 or args.batch < 1:
        raise SeqlabError(f"--window and --batch must be >= 1, got {args.window}, {args.batch}")
    if args.out is None and (args.cells or len(args.runs) > 1):
        raise SeqlabError("seqlab diagnose needs --out with --cells or several runs")
    out = Path(args.out or args.runs[0])
    if args.cells:
        report = cells_report(hidden=args.hidden, T=args.window, seed=args.seed)
    else:
        report = runs_report(args.runs, T=args.window, batch=args.batch, split=args.split,
                             seed=args.seed, data=args.data)
    write_json(out / "gradient_flow.json", report)
    plot(report, out / "gradient_flow.png")
    for p in report["profiles"]:
        name = p.get("label") or f"{p['model']} {p['tensor']}"
        g = p["grad_norm"]
        mid = min(50, len(g) - 1)
        print(f"{name}: |grad| {g[0]:.3g} at distance 0, {g[mid]:.3g} at {mid}, factor "
              f"{_fmt(p['per_step_factor'])} per step", file=sys.stderr)
    print(f"wrote {out / 'gradient_flow.json'} and {out / 'gradient_flow.png'}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    return 0


def _finite(values: list[float]) -> list[float | None]:
    """JSON has no inf or NaN: a diverged value becomes null."""
    return [v if math.isfinite(v) else None for v in values]


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3g}"
