"""Continuous batching: the generation requests of one model stepped together.

One background task per model owns the batch. Between two steps it lets new requests join
(each primed on its own prompt), drops the ones that finished, were cancelled by a client that
disconnected, or ran out of time, and then advances every remaining sequence by one token::

    boundary:  join new rows (prime)  |  drop finished / cancelled / late rows
    step:      pick one token per row with the row's own generator   -> sent to its client
               logits, state = model(tokens (B, 1), states)          -> the next boundary

Each request brings its own `torch.Generator`, seeded from the request, and its token is drawn
with `seqlab.sampling.pick` from its own row of logits, exactly as ``seqlab sample`` draws it.
The model steps the way the sampler steps it: recurrent and conv LMs through the fused steppers
of `seqlab.fast_sampling` (`FusedRows`), other models through their protocol ``step``. So a
request's text does not depend on its neighbours: a request alone in the batch equals the CLI's
sample bit for bit; in a batch the rows' logits equal batch-1 stepping up to float rounding
(tests/serve check both).

The steps run on the event loop itself, which yields to the clients every 2 ms of steps. A
worker thread was tried first: handing the GIL between it and the event loop at every token
cost about 1.5 ms per token (Python's switch interval), four times a 2 x 512 LSTM step. The
other endpoints (score, inspect, ...) run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seqlab.models.base import without_onednn
from seqlab.sampling import SampleConfig, pick, pick_rows, plain

END = None  # queued after a row's last token
PRIMED = 256  # prompts whose primed logits and state are kept (a prompt cache)
YIELD_EVERY = 0.002  # seconds of stepping between two turns of the event loop


class TimedOut:
    """Queued instead of a token when a row passes its deadline."""


class Failed:
    """Queued instead of a token when the model raised; `message` says what happened."""

    def __init__(self, message: str) -> None:
        self.message = message


TIMED_OUT = TimedOut()


@dataclass(eq=False)
class Generation:
    """One request's row of the batch: what it asked for and where it stands."""

    prompt: Sequence[int]  # token ids
    cfg: SampleConfig  # length, temperature, top-k, top-p, greedy (seed is in `gen`)
    deadline: float  # event-loop time after which the row is dropped
    gen: torch.Generator = field(init=False)
    out: asyncio.Queue[int | TimedOut | Failed | None] = field(default_factory=asyncio.Queue)
    logits: torch.Tensor | None = None  # (V,) next-token logits, once primed
    state: Any = None  # the model's state for this row (batch dimension 1)
    picked: int = 0  # tokens drawn (the worker thread's count)
    produced: int = 0  # tokens handed to the client (the event loop's count)
    cancelled: bool = False
    done: bool = False

    def __post_init__(self) -> None:
        self.gen = torch.Generator().manual_seed(self.cfg.seed)  # as sampling.sample_text

    def primed(self) -> torch.Tensor:
        """The next-token logits (V,) of a row that has joined."""
        assert self.logits is not None  # primed at its first boundary
        return self.logits


def batched_step(model: Any, tokens: Sequence[int], states: Sequence[Any]
                 ) -> tuple[list[torch.Tensor], list[Any]]:
    """One step for several rows: logits (V,) and state of each row.

    A recurrent LM runs all rows as one batch; one row, or another family, goes through the
    model's own ``step`` (the sampler's path), row by row.
    """
    from seqlab.models.recurrent import RecurrentLM

    if len(tokens) == 1 or not isinstance(model, RecurrentLM):
        pairs = [model.step(int(t), s) for t, s in zip(tokens, states, strict=True)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    # The stack state is a tuple of tensors with the batch in dimension 1: (L, B, H) for h and
    # c, (L, B, k, H) for the time_skip history.
    state = tuple(torch.cat([s[k] for s in states], dim=1) for k in range(len(states[0])))
    x = torch.tensor(list(tokens), device=model.device)[:, None]  # (B, 1)
    with torch.inference_mode(), without_onednn():  # native kernels: no per-call overhead
        logits, new = model(x, state)  # (B, 1, V)
    rows = range(len(tokens))
    return [logits[b, -1] for b in rows], [tuple(s[:, b:b + 1] for s in new) for b in rows]


def bucket(rows: int) -> int:
    """The stepper size for `rows` rows: the next power of two (one stepper, and one copy of
    the derived weights, per size; the padding rows' outputs are ignored)."""
    return 1 << (rows - 1).bit_length()


class FusedRows:
    """Rows stepped together through `seqlab.fast_sampling`'s fused stepper, the path
    ``seqlab sample`` takes for recurrent and conv LMs. Steppers come in power-of-two sizes
    (each holds a copy of the derived weights, so not one per batch size); the current one's
    buffers carry the rows' states while the membership stays the same, and when rows join or
    leave, the staying rows' states are read out and loaded with the new rows' primed states."""

    def __init__(self, model: Any) -> None:
        from seqlab.fast_sampling import ConvStepper, RecurrentStepper, supports

        self.model = model
        # The state's row dimension is the stepper's to say: (L, B, H) or (B, C, ctx).
        self.batch_dim = (RecurrentStepper if supports(model) else ConvStepper).batch_dim
        self.steppers: dict[int, Any] = {}
        self.loaded: list[Generation] = []  # the rows in the current stepper, in order

    def step(self, rows: list[Generation], tokens: Sequence[int]) -> None:
        from seqlab.fast_sampling import stepper

        B, size = len(rows), bucket(len(rows))
        st = self.steppers.get(size)
        if st is None:
            st = self.steppers[size] = stepper(self.model, size)
        if rows != self.loaded:
            st.load_state(self._states(rows, size))
            self.loaded = list(rows)
        x = torch.zeros(size, dtype=torch.long, device=self.model.device)
        x[:B] = torch.tensor(list(tokens), dtype=torch.long)
        logits = st.step(x)[:B].clone()  # (B, V); the stepper's buffer is overwritten next
        for g, row in zip(rows, logits.unbind(0), strict=True):
            g.logits, g.state = row, None  # the state lives in the stepper now

    def _states(self, rows: list[Generation], size: int) -> tuple[torch.Tensor, ...]:
        """The model state of `rows` padded to `size` rows: from the stepper for rows it holds,
        from ``prime`` for new ones, zeros for padding. The rows run along the stepper's
        ``batch_dim`` (recurrent: (L, B, H); conv buffers: (B, C, ctx))."""
        held = self.steppers[bucket(len(self.loaded))].state() if self.loaded else None
        where = {id(g): b for b, g in enumerate(self.loaded)}
        d = self.batch_dim
        parts = []
        for g in rows:
            if id(g) in where:
                assert held is not None
                parts.append(tuple(s.narrow(d, where[id(g)], 1) for s in held))
            else:
                parts.append(tuple(g.state))
        pad = size - len(rows)
        if pad:
            parts.append(tuple(p.new_zeros(*p.shape[:d], pad, *p.shape[d + 1:])
                               for p in parts[0]))
        return tuple(torch.cat([p[k] for p in parts], dim=d) for k in range(len(parts[0])))


class Batcher:
    """The batch of one model; `submit` a request, read its tokens from ``Generation.out``."""

    def __init__(self, model: Any) -> None:
        from seqlab import fast_sampling

        self.model = model
        # Recurrent and conv LMs step as `seqlab sample` does, through the fused stepper.
        self.fused = FusedRows(model) if fast_sampling.fused(model) else None
        self.pending: list[Generation] = []  # joins at the next boundary
        self.active: list[Generation] = []  # primed rows
        self.primed: OrderedDict[bytes, tuple[torch.Tensor, Any]] = OrderedDict()
        self.steps = 0  # batched steps taken (for tests and metrics)
        self.largest_batch = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def slots(self) -> int:
        """Requests holding a slot: a cancelled request frees its slot at once."""
        return sum(not (g.cancelled or g.done) for g in (*self.pending, *self.active))

    def submit(self, prompt: Sequence[int], cfg: SampleConfig, deadline: float) -> Generation:
        g = Generation(prompt, cfg, deadline)
        if cfg.length == 0:
            g.done = True
            g.out.put_nowait(END)
            return g
        self.pending.append(g)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return g

    def cancel(self, g: Generation) -> None:
        """Free `g`'s slot now; its row leaves the batch at the next boundary."""
        g.cancelled = True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_yield = loop.time()
        while True:
            self._boundary(loop.time())
            if not self.active and not self.pending:
                self._wake.clear()
                await self._wake.wait()
                last_yield = loop.time()
                continue
            joining, self.pending = self.pending, []
            rows = [*self.active, *joining]
            self.active = rows
            self.largest_batch = max(self.largest_batch, len(rows))
            self.steps += 1
            try:
                picks = self._pick(joining, rows)
                self._deliver(rows, picks)
                self._step(rows, picks)
            except Exception as e:  # a model error ends these rows, not the server's batcher
                for g in rows:
                    if not g.done:
                        g.done = True
                        g.out.put_nowait(Failed(f"{type(e).__name__}: {e}"))
                self.active = []
            # The clients get their tokens, requests arrive, clients leave: the next boundary.
            # Yielding costs a system call (epoll), so steps go back to back for YIELD_EVERY.
            if loop.time() - last_yield >= YIELD_EVERY:
                await asyncio.sleep(0)
                last_yield = loop.time()

    def _boundary(self, now: float) -> None:
        """Drop finished, cancelled and late rows (a late row is told so)."""
        keep = []
        for g in self.active:
            if g.done or g.cancelled:
                continue
            if now > g.deadline:
                g.done = True
                g.out.put_nowait(TIMED_OUT)
                continue
            keep.append(g)
        self.active = keep
        for g in self.pending:
            if now > g.deadline and not g.cancelled:
                g.done = True
                g.out.put_nowait(TIMED_OUT)
        self.pending = [g for g in self.pending if not (g.done or g.cancelled)]

    def _pick(self, joining: list[Generation], rows: list[Generation]) -> list[int]:
        """Prime the joining rows, then draw one token for every row with its generator: the
        rows sampled with temperature alone together (`pick_rows`, the same tokens as `pick`
        row by row), the others (top-k, top-p, greedy) one by one with `pick`."""
        for g in joining:
            g.logits, g.state = self._prime(g.prompt)
        picks = [0] * len(rows)
        together = [i for i, g in enumerate(rows) if plain(g.cfg)]
        if len(together) > 1:
            logits = torch.stack([rows[i].primed() for i in together])  # (B, V)
            drawn = pick_rows(logits, [rows[i].cfg.temperature for i in together],
                              [rows[i].gen for i in together])
            for i, t in zip(together, drawn, strict=True):
                picks[i] = t
        else:
            together = []
        for i, g in enumerate(rows):
            if together and plain(g.cfg):
                continue
            picks[i] = pick(g.primed(), g.cfg, g.gen)
        for g in rows:
            g.picked += 1
        return picks

    def _prime(self, prompt: Sequence[int]) -> tuple[torch.Tensor, Any]:
        """``model.prime``, as the sampler calls it, remembered for the last `PRIMED` prompts:
        a prompt's logits and state never change, and nothing writes into them (steps copy
        the state), so a repeated prompt skips the forward pass and still equals the CLI."""
        ids = np.asarray(prompt, dtype=np.int64)
        key = ids.tobytes()
        if key in self.primed:
            self.primed.move_to_end(key)
            return self.primed[key]
        out = self.model.prime(ids)
        self.primed[key] = out
        if len(self.primed) > PRIMED:
            self.primed.popitem(last=False)
        return out

    def _step(self, rows: list[Generation], picks: list[int]) -> None:
        """Advance the rows that want more tokens by the tokens just drawn."""
        more = [i for i, g in enumerate(rows) if g.picked < g.cfg.length]
        if more and self.fused is not None:
            self.fused.step([rows[i] for i in more], [picks[i] for i in more])
        elif more:
            logits, states = batched_step(self.model, [picks[i] for i in more],
                                          [rows[i].state for i in more])
            for i, lg, st in zip(more, logits, states, strict=True):
                rows[i].logits, rows[i].state = lg, st

    @staticmethod
    def _deliver(rows: list[Generation], picks: list[int]) -> None:
        for g, tok in zip(rows, picks, strict=True):
            if g.done or g.cancelled:
                continue
            g.produced += 1
            g.out.put_nowait(tok)
            if g.produced >= g.cfg.length:
                g.done = True
                g.out.put_nowait(END)
