"""User-facing errors.

Anything the user can fix (a bad path, a bad config key, a corrupt checkpoint) is raised as
`SeqlabError`. The CLI prints its message on one line and exits non-zero, with no traceback.
It subclasses `ValueError` so library callers can catch it the scikit-learn way.
"""

from __future__ import annotations

from collections.abc import Iterable


class SeqlabError(ValueError):
    """An error caused by user input; its message says what was expected and what was got."""


class TrainingDiverged(SeqlabError):
    """The loss, gradients, weights or validation score became non-finite or hopeless; no
    checkpoint holding the bad values was written."""


class TrainingInterrupted(SeqlabError):
    """Ctrl-C: the run finished its step, saved a checkpoint and stopped (exit status 130)."""


def describe(values: Iterable[object], limit: int = 8) -> str:
    """Short, readable rendering of a collection for error messages."""
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return shown + more
