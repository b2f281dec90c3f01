"""One sampler for every language model, through ``prime`` / ``step``.

Prompt priming, temperature, top-k, top-p (nucleus) and greedy decoding. Randomness comes from
an explicit `torch.Generator`, so a seed gives the same text on every run. Recurrent LMs step
through `seqlab.fast_sampling`'s fused cells; the drawing is this module's alone (`pick`, and
`pick_rows` for several rows at once), so both paths give the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqlab.config import check_range
from seqlab.fast_sampling import fused, stepper
from seqlab.protocol import LanguageModel


@dataclass
class SampleConfig:
    """How to sample."""

    length: int = 500  # tokens to generate per sample
    temperature: float = 1.0  # < 1 sharper, > 1 flatter; 0 means greedy
    top_k: int | None = None  # keep only the k most likely tokens
    top_p: float | None = None  # keep the smallest set of tokens with this much probability
    greedy: bool = False  # always take the most likely token
    num_samples: int = 1  # independent samples from the same prompt
    seed: int = 0  # random seed; the same seed gives the same text
    prompt: str = ""  # text to continue; empty starts after an end-of-line

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_k, self.top_p, prefix="sample.")
        check_range("sample.length", self.length, ">= 0")
        check_range("sample.num_samples", self.num_samples, ">= 1")
        check_range("sample.seed", self.seed, f"in [0, {2**64 - 1}]")  # torch.Generator's range


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, *,
                   prefix: str) -> None:
    """The checks shared with seq2seq decoding; `prefix` names the section in messages."""
    check_range(f"{prefix}temperature", temperature, ">= 0")  # 0 means greedy
    check_range(f"{prefix}top_k", top_k, ">= 1", null=True)
    check_range(f"{prefix}top_p", top_p, "in (0, 1]", null=True)


def filter_logits(logits: torch.Tensor, cfg: SampleConfig) -> torch.Tensor:
    """Apply temperature, top-k and top-p to 1-D logits; removed tokens get -inf."""
    logits = logits.float() / max(cfg.temperature, 1e-8)
    if cfg.top_k is not None and cfg.top_k < logits.numel():
        kth = torch.topk(logits, cfg.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already cover top_p; the first always stays.
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= cfg.top_p
        logits = logits.masked_fill(drop_sorted.scatter(0, order, drop_sorted), float("-inf"))
    return logits


def pick(logits: torch.Tensor, cfg: SampleConfig, gen: torch.Generator) -> int:
    """Choose the next token from 1-D logits (on any device; the generator is the CPU's)."""
    logits = logits.cpu()
    if cfg.greedy or cfg.temperature == 0:
        return int(torch.argmax(logits))
    probs = filter_logits(logits, cfg).softmax(-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def plain(cfg: SampleConfig) -> bool:
    """Whether `pick` draws from `cfg` with temperature alone (no top-k/top-p, not greedy):
    the rows `pick_rows` draws together."""
    return not (cfg.greedy or cfg.temperature == 0 or cfg.top_k is not None
                or (cfg.top_p is not None and cfg.top_p < 1))


def pick_rows(logits: torch.Tensor, temperatures: Sequence[float],
              gens: Sequence[torch.Generator]) -> list[int]:
    """One token per row of logits (B, V), row b drawn with its own generator: the same tokens
    as ``pick(logits[b], cfg_b, gens[b])`` for each row whose cfg is `plain`, in a few batched
    ops instead of a dozen per row.

    ``torch.multinomial`` draws one sample as ``argmax(p / q)`` with ``q ~ Exp(1)`` drawn from
    the generator over the row (the Gumbel-max trick in its exponential form); this does the
    same, with only the ``exponential_`` draw per row. The softmax and the division are
    elementwise/row-wise kernels, so each row's numbers equal the 1-D computation
    (tests/test_sampling.py checks the tokens against `pick`). Non-finite probabilities
    fall back to `pick` row by row, which raises as the sampler does.
    """
    B = logits.shape[0]
    t = torch.tensor([max(float(x), 1e-8) for x in temperatures], dtype=torch.float32)
    with torch.inference_mode():
        probs = (logits.float().cpu() / t[:, None]).softmax(-1)  # (B, V)
        q = torch.empty_like(probs)
        for b in range(B):
            q[b].exponential_(1, generator=gens[b])
        if not bool(torch.isfinite(probs).all()):
            return [pick(logits[b], SampleConfig(temperature=float(temperatures[b])), gens[b])
                    for b in range(B)]
        return probs.div_(q).argmax(-1).tolist()


Step = Callable[[int, Any], tuple[torch.Tensor, Any]]  # (token, state) -> (logits (V,), state)


def stream(
    model: LanguageModel, prompt: np.ndarray | list[int], cfg: SampleConfig, gen: torch.Generator
) -> Iterator[int]:
    """Yield `cfg.length` sampled token ids continuing `prompt`, one at a time.

    The prompt is primed through ``model.prime`` (one full forward pass). Recurrent and conv LMs
    then step through `seqlab.fast_sampling` (fused in-place steps, the same tokens for the same
    seed); every other model through its protocol ``step``.
    """
    logits, state = model.prime(prompt)
    step: Step = _fused_step(model, state, logits.device) if fused(model) else model.step
    for i in range(cfg.length):
        tok = pick(logits, cfg, gen)
        yield tok
        if i + 1 < cfg.length:
            logits, state = step(tok, state)


def _fused_step(model: LanguageModel, state: Any, device: torch.device) -> Step:
    """``model.step`` on a fused stepper loaded with `state`; the stepper keeps the state
    itself, in place, so the state handed back is None. (A batch-1 stepper runs each step on
    one intra-op thread: `seqlab.fast_sampling._step_threads`.)"""
    st = stepper(model, 1)
    st.load_state(state)
    tok = torch.zeros(1, dtype=torch.long, device=device)

    def step(token: int, _: Any) -> tuple[torch.Tensor, None]:
        tok.fill_(token)
        return st.step(tok)[0], None

    return step


def sample_text(model: LanguageModel, cfg: SampleConfig) -> Iterator[Iterator[str]]:
    """Yield one streaming text iterator per sample: the prompt, then the generated text."""
    prompt = model.vocab.encode(cfg.prompt, strict=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.num_samples):
        yield _decoded(model, prompt, cfg, gen)


def _decoded(model: LanguageModel, prompt: np.ndarray | list[int], cfg: SampleConfig,
             gen: torch.Generator) -> Iterator[str]:
    decoder = model.vocab.decoder()
    for tok in prompt:
        decoder.feed(int(tok))  # keeps word spacing right; the prompt itself is echoed verbatim
    yield cfg.prompt
    for tok in stream(model, prompt, cfg, gen):
        yield decoder.feed(tok)
    yield decoder.flush()
