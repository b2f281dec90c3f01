"""The server's limits: each one a config key with a safe default (``--limit key=value``).

Every breach is answered with a JSON error body ``{"error": {"code", "type", "message"}}``:

* ``max_body_bytes``: a request body larger than this is refused with 413 before it is parsed.
* ``max_prompt_tokens``: a prompt, text, source or sentence longer than this (in the model's
  tokens) is refused with 422.
* ``max_tokens``: asking for more generated tokens than this is refused with 422.
* ``max_streams``: generation requests (``/generate``, ``/v1/completions``) running at once;
  one more is refused with 429 at once, never queued.
* ``max_pending``: other model requests (score, inspect, translate, tag) running or waiting for
  the model at once; one more is refused with 429.
* ``max_request_seconds``: the wall-clock budget of one request. A request that has not
  answered in time gets 408; a stream that has started (its status, 200, is already sent) ends
  with an ``error`` event carrying code 408 instead, after the tokens sent so far.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqlab.config import check_range


@dataclass
class ServeConfig:
    """Limits of `seqlab serve`; see the module docstring for what each breach returns."""

    max_body_bytes: int = 65_536  # 413 above this
    max_prompt_tokens: int = 4096  # 422 above this (prompt, text, source, sentence)
    max_tokens: int = 2048  # 422 above this (generated tokens per request)
    max_streams: int = 64  # 429 above this many generations at once
    max_pending: int = 32  # 429 above this many other model requests at once
    max_request_seconds: float = 120.0  # 408 (or an error event in a stream) after this
    max_alternatives: int = 20  # /score: 422 for a larger top_k
    # Not a limit: after a stream's first token, it writes at most once per this many seconds
    # and sends the tokens drawn meanwhile together. Every write costs the event loop about as
    # much as a batch-32 row's share of a step, so under load this is what lets batching pay.
    stream_interval: float = 0.02

    def __post_init__(self) -> None:
        for key in ("max_body_bytes", "max_prompt_tokens", "max_tokens", "max_streams",
                    "max_pending", "max_alternatives"):
            check_range(f"limit.{key}", getattr(self, key), ">= 1")
        check_range("limit.max_request_seconds", self.max_request_seconds, "> 0")
        check_range("limit.stream_interval", self.stream_interval, "in [0, 1]")
