"""One generic training loop for every neural family.

The trainer knows nothing about model families or tasks. It is handed a `Trainable` model, a
`BatchSource` and a validation callable returning the task's named metrics, plus the name of the
metric that selects the best checkpoint (all declared in `seqlab.tasks.base`).

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
from typing import TYPE_CHECKING, Any, cast

import torch
from tqdm import tqdm

from seqlab.distributed import World, resolve_device, to_device
from seqlab.errors import SeqlabError, TrainingDiverged, TrainingInterrupted
from seqlab.io import load_tensors, save_tensors
from seqlab.precision import autocast, resolve_precision
from seqlab.run import TrainConfig

if TYPE_CHECKING:
    from seqlab.run import Run
    from seqlab.tasks.base import BatchSource, Metrics, Trainable


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


@dataclass
class _Window:
    """Training figures accumulated between two log records."""

    seconds: float = 0.0
    tokens: int = 0
    loss: float = 0.0
    steps: int = 0
    grad_norm: float = 0.0


class Trainer:
    """Runs the loop for any `Trainable` model over any `BatchSource`.

    `validate` returns the task's named metrics; `metric` and `mode` say which one selects
    ``best.safetensors`` (``train.select_metric``/``select_mode`` override them). The trainer
    owns the device: it moves the model, each batch and the carried state there. Under torchrun
    (`world`) it wraps the model in DistributedDataParallel; rank 0 validates, logs and writes,
    and every decision (stop, best, schedule) is taken once and shared.
    """

    def __init__(self, run: Run, *, metric: str = "bits_per_token", mode: str = "min",
                 world: World | None = None) -> None:
        self.run = run
        self.cfg = run.train
        self.metric = self.cfg.select_metric or metric
        self.mode = self.cfg.select_mode or mode
        self.world = world or World()

    def fit(self, model: Trainable, batches: BatchSource,
            validate: Callable[[], Metrics] | None) -> Progress:
        cfg, run = self.cfg, self.run
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device, self.world.local_rank)
        self.precision = resolve_precision(cfg.precision, self.device.type)
        module = cast(torch.nn.Module, model).to(self.device)  # every Trainable is a Module
        self.net = _LossModule(model, self.world, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        opt = model.configure_optimizer(cfg)
        sched = Schedule(cfg)
        self._validates = validate is not None
        prog, state = Progress(), None
        if run.resume and run.last_path is not None and run.last_path.exists():
            prog, state = self._restore(model, opt, sched, batches)
            if self.world.writer:
                run.truncate_metrics(prog.step)
        else:
            torch.manual_seed(cfg.seed + self.world.rank)  # dropout differs across ranks
        t0, window = time.monotonic(), _Window()
        # A bar only on a terminal: in a log file its redraws are noise; evaluations still print.
        bar = tqdm(total=None if cfg.max_minutes else cfg.max_steps, initial=prog.step,
                   disable=not (cfg.progress and sys.stderr.isatty() and self.world.writer),
                   unit="step", dynamic_ncols=True, leave=False)
        with _graceful_interrupt() as interrupted, bar:
            while True:
                elapsed = time.monotonic() - t0
                out_of_time = cfg.max_minutes is not None and elapsed >= 60 * cfg.max_minutes
                stop = cfg.stop_at_step is not None and prog.step >= cfg.stop_at_step
                done = prog.step >= cfg.max_steps or stop or out_of_time or interrupted()
                done = self.world.all_max(done)  # clocks and signals differ between ranks
                due = prog.step % cfg.eval_interval == 0 and prog.step > 0
                if (due or done) and prog.last_eval_step != prog.step:
                    self._evaluate(model, validate, prog, sched if due else None, bar)
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
                state = self._step(module, opt, batches, prog, state, window)
                bar.update(1)
                if prog.step % cfg.log_interval == 0:
                    self._log(prog, window, lr, elapsed, bar)
                    window = _Window()
        if interrupted():
            raise TrainingInterrupted(f"interrupted at step {prog.step}, saved"
                                      + (f" to {run.dir}" if run.dir else ""))
        return prog

    def _step(self, module: torch.nn.Module, opt: torch.optim.Optimizer, batches: BatchSource,
              prog: Progress, state: Any, window: _Window) -> Any:
        """One optimizer step: batch, forward, backward, clip, update; returns the new state."""
        ts = time.perf_counter()
        batch, fresh = batches.next()
        batch = to_device(batch, self.device)
        fresh = fresh or state is None
        state = self.net.fresh_state(batches.batch_size) if fresh else detach(state)
        module.train()
        with autocast(self.precision, self.device.type):
            loss, state = self.net(batch, state)
        loss_value = self.world.mean(loss.detach())  # the whole batch's loss, on every rank
        if not math.isfinite(loss_value):
            raise TrainingDiverged(self._diverged_message(f"the loss became {loss_value}", prog))
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        for cb in self.run.callbacks:
            cb.on_backward(module, prog.step)
        if self.scaler is not None:
            self.scaler.unscale_(opt)  # clip the true gradients
        window.grad_norm = _clip(module, self.cfg)
        if not math.isfinite(window.grad_norm) and self.scaler is None:
            # An infinite gradient would write inf/NaN into the weights: stop before the update.
            # (With fp16 loss scaling an overflow is expected: the scaler skips that step.)
            raise TrainingDiverged(self._diverged_message(
                f"the gradient norm became {window.grad_norm}", prog))
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        n_tok = batches.tokens_per_batch() * self.world.size
        prog.step += 1
        prog.tokens += n_tok
        window.seconds += time.perf_counter() - ts
        window.tokens += n_tok
        window.loss += loss_value
        window.steps += 1
        return state

    def _log(self, prog: Progress, w: _Window, lr: float, elapsed: float, bar: tqdm) -> None:
        rec = _train_record(prog, w.loss / w.steps, lr, w.grad_norm,
                            w.tokens / max(w.seconds, 1e-9), elapsed)
        self.run.log(rec)
        bar.set_postfix(tok_s=f"{rec['tokens_per_sec']:.0f}", loss=f"{rec['loss']:.3f}")

    # --- evaluation and checkpoints --------------------------------------------------------
    def _evaluate(self, model: Trainable, validate: Callable[[], Metrics] | None,
                  prog: Progress, sched: Schedule | None, bar: tqdm) -> None:
        """Validate (on rank 0; the others receive its metrics), keep the best weights, and
        (on regular intervals only) feed the plateau schedule, so stopping and resuming at an
        arbitrary step changes no decision."""
        prog.last_eval_step = prog.step
        if validate is None:
            return
        metrics = self.world.broadcast(validate() if self.world.writer else None)
        if self.metric not in metrics:
            raise SeqlabError(f"train.select_metric is {self.metric!r}; this model's "
                              f"validation reports {', '.join(metrics)}")
        sign = 1 if self.mode == "min" else -1
        score = metrics[self.metric] * sign
        if not math.isfinite(score):
            raise TrainingDiverged(self._diverged_message(
                f"the validation {self.metric} became {metrics[self.metric]}", prog))
        if sched is not None:
            sched.on_eval(score)
        improved = score < prog.best
        if improved:
            prog.best, prog.best_step = score, prog.step
            if self.run.best_path is not None and self.world.writer:
                save_tensors(self.run.best_path, *_finite_checkpoint(model))
        self.run.log({"kind": "eval", "step": prog.step, "split": "valid", **metrics})
        if self.world.writer:
            bar.write(f"step {prog.step}: valid {self.metric} {metrics[self.metric]:.4f}"
                      + (" (best)" if improved else ""), file=sys.stderr)

    def _checkpoint(self, model: Trainable, opt: torch.optim.Optimizer, sched: Schedule,
                    batches: BatchSource, prog: Progress, state: Any) -> None:
        """last.safetensors: weights, optimizer, schedule, position, and every rank's carried
        state and RNG (gathered to rank 0, which alone writes)."""
        run = self.run
        if run.last_path is None:
            return
        hidden = [] if state is None else [h.detach() for h in model.state_tensors(state)]
        ranks = self.world.gather([*hidden, _rng_state(self.device)])
        if not self.world.writer:
            return
        tensors, meta = _finite_checkpoint(model)
        tensors = dict(tensors)
        opt_tensors, opt_meta = _flatten_optimizer(opt.state_dict())
        tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
        for r, per_rank in enumerate(ranks):
            *states, rng = per_rank
            tensors.update({f"hidden.{r}.{i}": h for i, h in enumerate(states)})
            tensors[f"rng.{r}"] = rng
        meta = {**meta, "trainer": {
            "progress": vars(prog), "schedule": sched.state_dict(), "batches": batches.state_dict(),
            "optimizer": opt_meta, "hidden": None if state is None else len(hidden),
            "world_size": self.world.size, "device": self.device.type,
        }}
        save_tensors(run.last_path, tensors, meta)
        if run.best_path is not None and not self._validates:
            save_tensors(run.best_path, *_finite_checkpoint(model))  # no validation: best = last

    def _restore(self, model: Trainable, opt: torch.optim.Optimizer, sched: Schedule,
                 batches: BatchSource) -> tuple[Progress, Any]:
        """Continue from last.safetensors: exact with the same number of processes on the
        same kind of device; with another number, from the same step and data position with a
        fresh carried state."""
        assert self.run.last_path is not None
        tensors, meta = load_tensors(self.run.last_path)
        if "trainer" not in meta:
            raise SeqlabError(f"{self.run.last_path}: expected a training checkpoint, "
                              "got weights only")
        t = meta["trainer"]
        model.load_checkpoint(tensors)
        cast(torch.nn.Module, model).to(self.device)
        opt.load_state_dict(_unflatten_optimizer(
            {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")},
            t["optimizer"]))
        sched.load_state_dict(t["schedule"])
        batches.load_state_dict(t["batches"])
        same_world = t.get("world_size", 1) == self.world.size
        r = self.world.rank if same_world else 0
        rng = tensors.get(f"rng.{r}", tensors.get("rng.torch"))  # before 2026-12: rng.torch
        if rng is None:
            raise SeqlabError(f"{self.run.last_path}: the checkpoint has no RNG state to resume")
        _set_rng_state(rng, self.device, t.get("device", "cpu"))
        state = None
        if t["hidden"] is not None and same_world:
            old = "hidden.0" in tensors  # written by one process before 2026-12
            names = [f"hidden.{i}" if old else f"hidden.{r}.{i}" for i in range(t["hidden"])]
            state = model.state_from_tensors([to_device(tensors[k], self.device) for k in names])
        return Progress(**t["progress"]), state

    def _diverged_message(self, what: str, prog: Progress) -> str:
        where = (f"the last good checkpoint, {self.run.last_path}, was left untouched"
                 if self.run.last_path is not None and self.run.last_path.exists()
                 else "no checkpoint had been written yet")
        return (f"training stopped: {what} at step {prog.step + 1}; {where}. "
                "Try a lower train.lr or a train.clip_norm")


class _LossModule(torch.nn.Module):
    """``training_loss`` as a module's forward, so DistributedDataParallel can wrap it: DDP
    synchronises gradients only for what runs through its own forward."""

    def __init__(self, model: Trainable, world: World, device: torch.device) -> None:
        super().__init__()
        self.model, self.device = model, device
        inner = cast(torch.nn.Module, model)
        self.ddp: torch.nn.Module | None = None
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                _Forward(inner), device_ids=[device] if device.type == "cuda" else None)

    def forward(self, batch: Any, state: Any) -> tuple[torch.Tensor, Any]:
        if self.ddp is not None:
            return self.ddp(batch, state)
        return self.model.training_loss(batch, state)

    def fresh_state(self, batch_size: int) -> Any:
        return to_device(self.model.initial_state(batch_size), self.device)


class _Forward(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, state: Any) -> tuple[torch.Tensor, Any]:
        return self.model.training_loss(batch, state)  # type: ignore[operator]  # a Trainable


def _rng_state(device: torch.device) -> torch.Tensor:
    """This process's RNG state: the CPU generator's, then the accelerator's when there is one."""
    cpu = torch.get_rng_state()
    if device.type == "cuda":
        return torch.cat([cpu, torch.cuda.get_rng_state(device)])
    return cpu


def _set_rng_state(state: torch.Tensor, device: torch.device, saved_on: str) -> None:
    n = len(torch.get_rng_state())
    torch.set_rng_state(state[:n].contiguous())
    if device.type == "cuda" and saved_on == "cuda" and len(state) > n:
        torch.cuda.set_rng_state(state[n:].contiguous(), device)


def _finite_checkpoint(model: Trainable) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model's checkpoint, refusing to write non-finite weights (they would poison every
    later eval, sample and resume)."""
    tensors, meta = model.checkpoint()
    bad = next((k for k, v in tensors.items()
                if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise TrainingDiverged(f"training stopped: the weights became non-finite ({bad}); "
                               "nothing was saved. Try a lower train.lr or a train.clip_norm")
    return tensors, meta


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
