"""Size a model to a parameter budget: ``seqlab compare --params N``.

Families differ in how many parameters their defaults hold (a 2x256 LSTM has about four times
the weights of a 2x256 tanh RNN), so a leaderboard of defaults mixes model size with model
family. Here each family names its *width*, the one config key that sets its size (``hidden``
for recurrent and window models, ``channels`` for convolutional ones, ``dim`` for the
Transformer), and the solver picks the width whose trainable parameter count is closest to the
target, keeping the depth and every other key of the family's default (or the spec's overrides).

Counting models (n-grams) and EM models have no trainable width; they are left as they are.
The count is that of the built model, on the data's vocabulary: the embedding and the softmax
grow with the vocabulary, so the same width gives different counts at char and word level.
"""

from __future__ import annotations

from typing import Any

from seqlab import models
from seqlab.errors import SeqlabError

MAX_WIDTH = 1 << 16


def width_key(name: str) -> str | None:
    """The config key that sets model `name`'s size, or None for a family that is not sized."""
    cls, _ = models.resolve(name)
    return getattr(cls, "width", None)


def trainable_parameters(model: Any) -> int:
    """Values that the optimizer updates (0 for a model that is counted, not trained)."""
    params = getattr(model, "parameters", None)
    if not callable(params):
        return 0
    return sum(p.numel() for p in params() if p.requires_grad)


def with_width(overrides: dict[str, Any], key: str, width: int) -> dict[str, Any]:
    """`overrides` with the (possibly dotted, ``recurrent.hidden``) width key set."""
    out = dict(overrides)
    *path, last = key.split(".")
    node = out
    for part in path:
        node[part] = dict(node.get(part, {}))
        node = node[part]
    node[last] = width
    return out


def lookup(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def solve(name: str, vocab: Any, target: int,
          overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    """The overrides that size model `name` to about `target` trainable parameters, and the
    count they give. The count grows with the width, so a doubling search brackets the target
    and a bisection finds the nearest width (a multiple of the family's ``width_step``)."""
    overrides = dict(overrides or {})
    key = width_key(name)
    if key is None:
        raise SeqlabError(f"{name} has no width to size (it is counted or fitted by EM)")
    if key in overrides or lookup(overrides, key) is not None:
        raise SeqlabError(f"--params sets {name}'s {key}; drop {key}= from its spec")
    if target < 1:
        raise SeqlabError(f"--params expects a positive number of parameters, got {target}")
    cls, _ = models.resolve(name)
    config = models.make_config(name, overrides)
    step = int(cls.width_step(config, overrides))

    def count(units: int) -> int:
        return trainable_parameters(models.build(name, vocab, resized(units)))

    def resized(units: int) -> dict[str, Any]:
        return cls.resize(with_width(overrides, key, units * step), units * step, config)

    lo, hi = 1, 1
    while count(hi) < target:
        lo, hi = hi, hi * 2
        if hi * step > MAX_WIDTH:
            raise SeqlabError(f"--params {target:,}: {name} would need {key} > {MAX_WIDTH}")
    while hi - lo > 1:  # count(lo) < target <= count(hi), unless lo == hi == 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    best = min((lo, hi), key=lambda u: abs(count(u) - target))
    return resized(best), count(best)
