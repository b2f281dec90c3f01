"""The unknown-token warning: one line when more than 5% of a split's tokens are ``<unk>``.

Unknowns are scored like any other token, so a run whose tokens are mostly unknown trains and
scores without an error, and badly: a seq2seq source of unspaced digit strings ("4711") is one
word per line at word level, most of them unseen in training. The warning names the split, the
share and a level that would fix it:

* word level, most training tokens of words seen once (the words are whole unsegmented strings:
  numbers, identifiers): ``char``, where the same text is a few known symbols;
* word level otherwise (a long tail of rare words): ``bpe`` where the task has it, else ``char``;
* char level (characters never seen in training): ``bpe`` where the task has it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

THRESHOLD = 0.05  # warn above this share of unknown tokens
_CHUNK = 1 << 24  # tokens counted at a time, so a memmapped split never has to fit in memory


def count_unknown(ids: np.ndarray, unk_id: int) -> int:
    """How many of `ids` are `unk_id`, in chunks."""
    return sum(int(np.count_nonzero(np.asarray(ids[i : i + _CHUNK]) == unk_id))
               for i in range(0, len(ids), _CHUNK))


def singleton_share(ids: np.ndarray, vocab_size: int) -> float:
    """The share of the tokens of `ids` whose type occurs exactly once in `ids`."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(0, len(ids), _CHUNK):
        counts += np.bincount(np.asarray(ids[i : i + _CHUNK]), minlength=vocab_size)
    return float(np.count_nonzero(counts == 1)) / max(1, len(ids))


def unknown_warning(rates: Mapping[str, tuple[int, int]], level: str,
                    singletons: Callable[[], float | None], *, levels: Sequence[str],
                    side: str = "", key: str = "data.level") -> str | None:
    """The warning for the worst of the splits in `rates` (name -> (unknown, total) tokens), or
    None when none has more than `THRESHOLD` unknown. `singletons` gives the training split's
    `singleton_share` (None when there is no training split at hand); it is asked only when a
    warning is due. `levels` are the levels the task offers; `side` is "source "/"target "."""
    shares = {name: unk / total for name, (unk, total) in rates.items() if total}
    split = max(shares, key=shares.__getitem__, default=None)
    if split is None or shares[split] <= THRESHOLD:
        return None
    reason, suggest = _remedy(level, singletons, levels)
    line = (f"warning: {shares[split]:.0%} of {side}tokens in {split} are <unk> at {level} level"
            f" ({reason})")
    return line + (f"; try {key}={suggest}" if suggest else "")


def _remedy(level: str, singletons: Callable[[], float | None], levels: Sequence[str]
            ) -> tuple[str, str | None]:
    """Why the tokens are unknown, and the level that would fix it (None: none would)."""
    subword = "bpe" if "bpe" in levels else "char" if "char" in levels else None
    if level == "word":
        share = singletons()
        if share is not None and share > 0.5:
            return "most words are seen once", "char" if "char" in levels else subword
        return "rare words", subword
    if level == "char":
        return "characters unseen in training", "bpe" if "bpe" in levels else None
    return "tokens unseen in training", subword
