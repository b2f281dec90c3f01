"""One generic training loop for every neural family.

The trainer knows nothing about model families. It needs a model with
``configure_optimizer(cfg)``, ``initial_state(batch_size)``,
``training_loss(batch, state) -> (mean loss in nats, state)`` and ``checkpoint()`` /
``load_checkpoint()``; a batch source with ``next()`` and a JSON ``state_dict``; and an
``evaluate()`` callable returning metrics with ``bits_per_token``.

Each step runs in the same order (after nanoGPT): set the learning rate, evaluate and checkpoint
when due, read a batch, forward, backward, clip, optimizer step, ``zero_grad``, log. A resumed run
restores the model, optimizer, schedule, RNG, carried hidden state and data position, so training
2N steps equals N steps + resume + N steps, bit for bit on CPU.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from seqlab.errors import SeqlabError, TrainingDiverged
from seqlab.io import load_tensors, save_tensors
from seqlab.precision import autocast, resolve_precision

if TYPE_CHECKING:
    from seqlab.run import Run


@dataclass
class TrainConfig:
    """Optimisation settings shared by every neural family."""

    batch_size: int = 32  # B: parallel contiguous streams (LMs) or pairs per batch (seq2seq)
    seq_len: int = 128  # T: truncated-BPTT window; hidden state is carried across windows
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3  # peak learning rate, reached after warm-up
    min_lr: float = 1e-4  # floor of the cosine schedule
    weight_decay: float = 0.0  # AdamW decay on matrices only (not biases, norms, embeddings)
    beta1: float = 0.9
    beta2: float = 0.99  # a little below 0.999: small batches, short runs
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    schedule: Literal["cosine", "plateau", "constant", "step"] = "cosine"
    decay_start: int = 4  # step: first epoch (from 0) at lr * decay_factor; later ones decay again
    decay_factor: float = 0.5  # step: per-epoch multiplier from decay_start on (Zaremba et al.)
    plateau_factor: float = 0.5  # plateau: multiply lr by this when validation stalls
    plateau_patience: int = 1  # plateau: evaluations without improvement before a cut
    max_steps: int = 2000  # total optimizer steps (counted across resumes)
    max_minutes: float | None = None  # wall-clock budget for this invocation
    stop_at_step: int | None = None  # end this invocation early; the schedule still plans max_steps
    eval_interval: int = 200  # full validation pass every N steps (and at the end)
    select_metric: str = "bits_per_token"  # validation metric that picks best.safetensors
    select_mode: Literal["min", "max"] = "min"  # "max" for exact_match, bleu, accuracy
    clip_norm: float | None = 1.0  # clip gradients by global norm; None disables
    clip_value: float | None = None  # clip each gradient element to [-v, v]; None disables
    seed: int = 1337
    log_interval: int = 20  # steps between metrics.jsonl records
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 where the probe succeeds
    # (bf16 autocast: ~2x matmul speed on AVX512-BF16/AMX), else fp32; see seqlab.precision
    threads: int | None = None  # torch threads; None keeps torch's default
    progress: bool = True  # show a progress bar on stderr

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "max_steps", "eval_interval", "log_interval"):
            if getattr(self, name) < 1:
                raise SeqlabError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.min_lr < 0:
            raise SeqlabError("train.lr must be > 0 and train.min_lr >= 0, got "
                              f"{self.lr} and {self.min_lr}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise SeqlabError(f"train.max_minutes must be > 0, got {self.max_minutes}")
        if not 0 < self.decay_factor <= 1 or self.decay_start < 0:
            raise SeqlabError("train.decay_factor must be in (0, 1] and train.decay_start >= 0, "
                              f"got {self.decay_factor} and {self.decay_start}")
        if self.precision == "bf16":
            resolve_precision("bf16")  # fail here, before a run folder exists, not at step 1


class Callback:
    """Hooks into the training loop; override what you need."""

    def on_log(self, record: dict[str, Any]) -> None:
        """Every metrics record (training and evaluation)."""

    def on_backward(self, model: torch.nn.Module, step: int) -> None:
        """After ``loss.backward()``, before clipping: gradients are available."""


# --- batches -------------------------------------------------------------------------------
class StreamBatcher:
    """Truncated-BPTT batches from one long token stream.

    The stream is cut into B contiguous rows, and step i reads window i of every row, so row b
    of consecutive batches continues the same text and the hidden state can be carried over::

        data (after a per-epoch offset o < T):  a b c d e f g h i j k l m n o p q r ...
        B = 2, T = 3:
            row 0: a b c d e f g h i     batch 0: x = [a b c]  y = [b c d]
            row 1: j k l m n o p q r              x = [j k l]  y = [k l m]
                                         batch 1: x = [d e f]  y = [e f g]
                                                  x = [m n o]  y = [n o p]

    Targets are inputs shifted by one. A new epoch draws a new offset (from seed and epoch
    alone, so the position is two integers) and starts with a fresh hidden state.
    """

    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, seed: int = 0) -> None:
        self.data, self.B, self.T, self.seed = data, batch_size, seq_len, seed
        self.epoch, self.window = 0, 0
        if self.windows_per_epoch(0) < 1:
            raise SeqlabError(
                f"the training split has {len(data)} tokens; batch_size x (seq_len + 1) = "
                f"{batch_size} x {seq_len + 1} needs at least {batch_size * (seq_len + 1) * 2}; "
                "lower train.batch_size or train.seq_len"
            )

    def _offset(self, epoch: int) -> int:
        return 0 if epoch == 0 else int(np.random.default_rng([self.seed, epoch]).integers(self.T))

    def _row_len(self, epoch: int) -> int:
        return (len(self.data) - self._offset(epoch)) // self.B

    def next_epoch(self) -> int:
        """The epoch the next batch belongs to (the step schedule decays by epoch)."""
        return self.epoch + (self.window >= self.windows_per_epoch(self.epoch))

    def windows_per_epoch(self, epoch: int) -> int:
        return (self._row_len(epoch) - 1) // self.T

    def next(self) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        """The next (x, y) batch, each (B, T), and whether it starts a new epoch."""
        if self.window >= self.windows_per_epoch(self.epoch):
            self.epoch, self.window = self.epoch + 1, 0
        start = self._offset(self.epoch) + self.window * self.T
        rows = start + self._row_len(self.epoch) * np.arange(self.B)
        idx = rows[:, None] + np.arange(self.T + 1)  # (B, T+1)
        xy = torch.from_numpy(np.asarray(self.data[idx], dtype=np.int64))
        fresh = self.window == 0
        self.window += 1
        return (xy[:, :-1], xy[:, 1:]), fresh

    def tokens_per_batch(self) -> int:
        return self.B * self.T

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.epoch, self.window = int(d["epoch"]), int(d["window"])


# --- learning-rate schedule ----------------------------------------------------------------
class Schedule:
    """Linear warm-up, then cosine decay to ``min_lr``, plateau cuts, a constant rate, or a
    per-epoch step decay (``lr * decay_factor ** (epochs since decay_start + 1)``).

    Progress is the larger of the step fraction and, with ``max_minutes``, the time fraction, so
    a time-budgeted run still finishes its cosine.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.scale = 1.0  # plateau multiplier
        self.best = math.inf
        self.bad_evals = 0

    def lr(self, step: int, progress: float, epoch: int = 0) -> float:
        c = self.cfg
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.schedule == "cosine":
            w = min(c.warmup_steps / c.max_steps, 0.5)
            p = min(max((progress - w) / (1 - w), 0.0), 1.0)
            return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * p))
        if c.schedule == "step":  # epochs of the batch source, e.g. Zaremba et al.'s halving
            return c.lr * c.decay_factor ** max(0, epoch - c.decay_start + 1)
        return c.lr * self.scale

    def on_eval(self, metric: float) -> None:
        if metric < self.best - 1e-6:
            self.best, self.bad_evals = metric, 0
            return
        self.bad_evals += 1
        if self.cfg.schedule == "plateau" and self.bad_evals > self.cfg.plateau_patience:
            self.scale *= self.cfg.plateau_factor
            self.bad_evals = 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, d: dict[str, float]) -> None:
        self.scale, self.best, self.bad_evals = d["scale"], d["best"], int(d["bad_evals"])


# --- the loop ------------------------------------------------------------------------------
@dataclass
class Progress:
    """Where training stands; saved with every checkpoint."""

    step: int = 0
    tokens: int = 0
    best: float = math.inf  # best validation score so far (select_metric, negated for "max")
    best_step: int = -1
    last_eval_step: int = -1


def detach(state: Any) -> Any:
    """Cut the graph at a window boundary, keeping the values (truncated BPTT)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach(s) for s in state)


class Trainer:
    """Runs the loop; see the module docstring for what it needs from a model."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.cfg = run.train

    def fit(self, model: Any, batches: StreamBatcher,
            evaluate: Callable[[], dict[str, float]] | None) -> Progress:
        cfg, run = self.cfg, self.run
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.precision = resolve_precision(cfg.precision)
        opt = model.configure_optimizer(cfg)
        sched = Schedule(cfg)
        self._validates = evaluate is not None
        prog, state = Progress(), None
        if run.resume and run.last_path is not None and run.last_path.exists():
            prog, state = self._restore(model, opt, sched, batches)
            run.truncate_metrics(prog.step)
        else:
            torch.manual_seed(cfg.seed)
        t0 = time.monotonic()
        train_time, window_tokens, window_loss, window_n = 0.0, 0, 0.0, 0
        # A bar only on a terminal: in a log file its redraws are noise; evaluations still print.
        bar = tqdm(total=None if cfg.max_minutes else cfg.max_steps, initial=prog.step,
                   disable=not (cfg.progress and sys.stderr.isatty()), unit="step",
                   dynamic_ncols=True, leave=False)
        with _graceful_interrupt() as interrupted, bar:
            while True:
                elapsed = time.monotonic() - t0
                out_of_time = cfg.max_minutes is not None and elapsed >= 60 * cfg.max_minutes
                stop = cfg.stop_at_step is not None and prog.step >= cfg.stop_at_step
                done = prog.step >= cfg.max_steps or stop or out_of_time or interrupted()
                due = prog.step % cfg.eval_interval == 0 and prog.step > 0
                if (due or done) and prog.last_eval_step != prog.step:
                    self._evaluate(model, evaluate, prog, sched if due else None, bar)
                    self._checkpoint(model, opt, sched, batches, prog, state)
                if done:
                    break
                progress = prog.step / cfg.max_steps
                if cfg.max_minutes is not None:
                    progress = max(progress, elapsed / (60 * cfg.max_minutes))
                epoch = getattr(batches, "next_epoch", int)()  # a source without epochs: 0
                lr = sched.lr(prog.step, progress, epoch)
                for group in opt.param_groups:
                    group["lr"] = lr

                ts = time.perf_counter()
                batch, fresh = batches.next()
                fresh = fresh or state is None
                state = model.initial_state(cfg.batch_size) if fresh else detach(state)
                model.train()
                with autocast(self.precision):
                    loss, state = model.training_loss(batch, state)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(self._diverged_message(loss_value, prog))
                loss.backward()
                for cb in run.callbacks:
                    cb.on_backward(model, prog.step)
                grad_norm = _clip(model, cfg)
                opt.step()
                opt.zero_grad(set_to_none=True)
                train_time += time.perf_counter() - ts

                prog.step += 1
                n_tok = batches.tokens_per_batch()
                prog.tokens += n_tok
                window_tokens += n_tok
                window_loss += loss_value
                window_n += 1
                bar.update(1)
                if prog.step % cfg.log_interval == 0:
                    rec = _train_record(prog, window_loss / window_n, lr, grad_norm,
                                        window_tokens / max(train_time, 1e-9), elapsed)
                    run.log(rec)
                    bar.set_postfix(tok_s=f"{rec['tokens_per_sec']:.0f}", loss=f"{rec['loss']:.3f}",
                                    bpt=f"{rec['bits_per_token']:.3f}")
                    train_time, window_tokens, window_loss, window_n = 0.0, 0, 0.0, 0
        return prog

    # --- evaluation and checkpoints --------------------------------------------------------
    def _evaluate(self, model: Any, evaluate: Callable[[], dict[str, float]] | None,
                  prog: Progress, sched: Schedule | None, bar: tqdm) -> None:
        """Validate, keep the best weights, and (on regular intervals only) feed the plateau
        schedule, so stopping and resuming at an arbitrary step changes no decision."""
        prog.last_eval_step = prog.step
        if evaluate is None:
            return
        metrics = evaluate()
        bpt = metrics["bits_per_token"]
        if sched is not None:
            sched.on_eval(bpt)
        if self.cfg.select_metric not in metrics:
            raise SeqlabError(f"train.select_metric is {self.cfg.select_metric!r}; this model's "
                              f"validation reports {', '.join(metrics)}")
        score = metrics[self.cfg.select_metric] * (1 if self.cfg.select_mode == "min" else -1)
        improved = score < prog.best
        if improved:
            prog.best, prog.best_step = score, prog.step
            if self.run.best_path is not None:
                save_tensors(self.run.best_path, *model.checkpoint())
        self.run.log({"kind": "eval", "step": prog.step, "split": "valid", **metrics})
        bar.write(f"step {prog.step}: valid {bpt:.4f} bits/token" + (" (best)" if improved else ""),
                  file=sys.stderr)

    def _checkpoint(self, model: Any, opt: torch.optim.Optimizer, sched: Schedule,
                    batches: StreamBatcher, prog: Progress, state: Any) -> None:
        run = self.run
        if run.last_path is None:
            return
        tensors, meta = model.checkpoint()
        tensors = dict(tensors)
        opt_tensors, opt_meta = _flatten_optimizer(opt.state_dict())
        tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
        is_tensor = isinstance(state, torch.Tensor)
        hidden = [] if state is None else [state] if is_tensor else list(state)
        tensors.update({f"hidden.{i}": h.detach() for i, h in enumerate(hidden)})
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {**meta, "trainer": {
            "progress": vars(prog), "schedule": sched.state_dict(), "batches": batches.state_dict(),
            "optimizer": opt_meta, "hidden": len(hidden) if state is not None else None,
            "hidden_is_tensor": isinstance(state, torch.Tensor),
        }}
        save_tensors(run.last_path, tensors, meta)
        if run.best_path is not None and not self._validates:
            save_tensors(run.best_path, *model.checkpoint())  # no validation split: best = last

    def _restore(self, model: Any, opt: torch.optim.Optimizer, sched: Schedule,
                 batches: StreamBatcher) -> tuple[Progress, Any]:
        assert self.run.last_path is not None
        tensors, meta = load_tensors(self.run.last_path)
        if "trainer" not in meta:
            raise SeqlabError(f"{self.run.last_path}: expected a training checkpoint, "
                              "got weights only")
        t = meta["trainer"]
        model.load_checkpoint(tensors)
        opt.load_state_dict(_unflatten_optimizer(
            {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")},
            t["optimizer"]))
        sched.load_state_dict(t["schedule"])
        batches.load_state_dict(t["batches"])
        torch.set_rng_state(tensors["rng.torch"])
        state = None
        if t["hidden"] is not None:
            hidden = [tensors[f"hidden.{i}"] for i in range(t["hidden"])]
            state = hidden[0] if t["hidden_is_tensor"] else tuple(hidden)
        return Progress(**t["progress"]), state

    def _diverged_message(self, value: float, prog: Progress) -> str:
        where = (f"the last good checkpoint, {self.run.last_path}, was left untouched"
                 if self.run.last_path is not None and self.run.last_path.exists()
                 else "no checkpoint had been written yet")
        return (f"training stopped: the loss became {value} at step {prog.step + 1}; {where}. "
                "Try a lower train.lr, train.clip_norm, or train.precision=fp32")


def _clip(model: torch.nn.Module, cfg: TrainConfig) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if cfg.clip_value is not None:
        torch.nn.utils.clip_grad_value_(params, cfg.clip_value)
    max_norm = cfg.clip_norm if cfg.clip_norm is not None else math.inf
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True))


def _train_record(prog: Progress, loss: float, lr: float, grad_norm: float, tok_s: float,
                  elapsed: float) -> dict[str, Any]:
    return {"kind": "train", "step": prog.step, "loss": loss, "bits_per_token": loss / math.log(2),
            "lr": lr, "grad_norm": grad_norm, "tokens_per_sec": tok_s, "tokens": prog.tokens,
            "elapsed_s": elapsed}


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors, JSON); no pickle."""
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{name}"] = v
            else:
                scalars[f"{pid}.{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


@contextmanager
def _graceful_interrupt() -> Iterator[Callable[[], bool]]:
    """Ctrl-C finishes the current step, checkpoints, and stops; a second Ctrl-C aborts."""
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit.is_set
        return

    def handler(signum: int, frame: Any) -> None:
        if hit.is_set():
            raise KeyboardInterrupt
        hit.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield hit.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
