"""What the non-streaming endpoints compute, on a loaded model and plain Python values.

Nothing here knows about HTTP: each function takes a model and a request's fields and returns
JSON-ready dicts; the app runs them in the model's worker thread. Where a task already has the
code path (translation search, Viterbi tags, marginals), these call it, so the server and the
CLI give the same answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from seqlab.errors import SeqlabError

LN2 = math.log(2.0)
SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z")}  # saturation as in Karpathy et al.
BINS = 20  # gate histogram bins over [0, 1]


def token_pieces(vocab: Any, ids: np.ndarray) -> list[str]:
    """The text each token adds (a word gets its leading space), as the sampler prints it."""
    d = vocab.decoder()
    pieces = [d.feed(int(i)) for i in ids]
    tail = d.flush()
    if tail and pieces:
        pieces[-1] += tail
    return pieces


def next_token_log_probs(model: Any, ids: np.ndarray) -> torch.Tensor:
    """log p(. | x_<t) for every position t (T, V), after the virtual end-of-line; one forward
    pass for torch language models, ``prime`` and ``step`` for the others."""
    from seqlab.models.base import NeuralLM

    if isinstance(model, NeuralLM):
        x = torch.tensor([[model.vocab.eos_id, *map(int, ids)]], device=model.device)
        with torch.inference_mode():
            logits, _ = model(x, model.initial_state(1))  # (1, T + 1, V)
        return logits[0, :-1].float().log_softmax(-1).cpu()
    rows = []
    logits, state = model.prime([])
    for t, tok in enumerate(ids):
        rows.append(logits.float().log_softmax(-1).cpu())
        if t + 1 < len(ids):
            logits, state = model.step(int(tok), state)
    return torch.stack(rows) if rows else torch.zeros(0, len(model.vocab))


def score(model: Any, ids: np.ndarray, top_k: int) -> dict[str, Any]:
    """Bits per token at each position and the `top_k` most likely alternatives there."""
    vocab = model.vocab
    logp = next_token_log_probs(model, ids)  # (T, V)
    k = min(top_k, logp.shape[1])
    top_lp, top_ids = logp.topk(k, dim=-1) if len(ids) else (logp, logp.long())  # (T, k)
    tokens: list[dict[str, Any]] = []
    for t, (tok, piece) in enumerate(zip(ids, token_pieces(vocab, ids), strict=True)):
        bits = -float(logp[t, int(tok)]) / LN2
        top = [{"id": int(i), "token": _token_text(vocab, int(i)), "prob": math.exp(float(p))}
               for p, i in zip(top_lp[t], top_ids[t], strict=True)]
        tokens.append({"id": int(tok), "text": piece, "bits": bits, "top": top})
    total = sum(t["bits"] for t in tokens)
    return {"tokens": tokens, "bits": total,
            "bits_per_token": total / len(tokens) if tokens else None}


def _token_text(vocab: Any, i: int) -> str:
    if vocab.level == "byte":
        return bytes([i]).decode("utf-8", errors="replace")
    return str(vocab.tokens[i])


# --- inspect: hidden activations and gates of a recurrent LM -------------------------------
def inspect(model: Any, ids: np.ndarray, layer: int, unit: int, signal: str) -> dict[str, Any]:
    """Per-token activations of every layer through the hand-written cells, the values of one
    (layer, unit, signal) for colouring text, and gate saturation per layer.

    ``signal`` is ``h`` (the layer's output) or a recorded gate (LSTM: i, f, g, o and the cell
    state c; GRU: r, z, n). Position t holds the value after reading token t.
    """
    cfg = model.config
    if not 1 <= layer <= cfg.layers:
        raise SeqlabError(f"layer must be in 1..{cfg.layers}, got {layer}")
    if not 0 <= unit < cfg.hidden:
        raise SeqlabError(f"unit must be in 0..{cfg.hidden - 1}, got {unit}")
    signals = recorded(model, ids)  # per layer: name -> (T, H)
    names = list(signals[0])
    if signal not in names:
        raise SeqlabError(f"signal must be one of {', '.join(names)} for a {cfg.cell} model, "
                          f"got {signal!r}")
    layers = [{"layer": i + 1, "units": cfg.hidden, "signals": names,
               "gates": saturation(sig, SIGMOID_GATES.get(cfg.cell, ()))}
              for i, sig in enumerate(signals)]
    values = signals[layer - 1][signal][:, unit]
    return {"tokens": [{"id": int(i), "text": p} for i, p in
                       zip(ids, token_pieces(model.vocab, ids), strict=True)],
            "cell": cfg.cell, "layers": layers,
            "activation": {"layer": layer, "unit": unit, "signal": signal,
                           "values": [float(v) for v in values]}}


def recorded(model: Any, ids: np.ndarray) -> list[dict[str, torch.Tensor]]:
    """For each layer, ``h`` (T, H) and every gate (T, H), after each token of `ids`.

    The stack's `trace` runs the hand-written cells on the trained weights (whatever the
    model's ``impl``) and records the gates; a forward hook on each layer keeps its output.
    """
    outputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out[0]))
             for layer in model.stack.layers]
    x_ids = torch.tensor([[model.vocab.eos_id, *map(int, ids)]], device=model.device)
    try:
        with torch.no_grad():  # trace adds a gradient probe: no inference mode here
            _, _, traces = model.stack.trace(model.embed(x_ids))
    finally:
        for h in hooks:
            h.remove()
    out = []
    for h, trace in zip(outputs, traces, strict=True):
        gates = {k: v for k, v in trace[0].items() if k != "probe" and k != "h"}
        # Drop the virtual end-of-line: position t is the state after token t.
        out.append({k: v[0, 1:].float().cpu() for k, v in {"h": h, **gates}.items()})
    return out


def saturation(signals: dict[str, torch.Tensor], gates: tuple[str, ...]) -> dict[str, Any]:
    """Per sigmoid gate: a histogram of its values over [0, 1] and, per unit, the fraction of
    steps below 0.1 (left-saturated) and above 0.9 (right-saturated)."""
    out = {}
    for name in gates:
        v = signals[name]  # (T, H)
        hist = torch.histc(v, bins=BINS, min=0.0, max=1.0) if v.numel() else torch.zeros(BINS)
        left = (v < 0.1).float().mean(0) if len(v) else torch.zeros(v.shape[1])
        right = (v > 0.9).float().mean(0) if len(v) else torch.zeros(v.shape[1])
        out[name] = {"histogram": [int(c) for c in hist], "left": left.tolist(),
                     "right": right.tolist()}
    return out


# --- translation and tagging: the tasks' own code paths ----------------------------------
def translate(model: Any, source: str, options: dict[str, Any], max_tokens: int
              ) -> dict[str, Any]:
    """The best translation (and n-best) with the attention behind each target token."""
    from seqlab.config import from_dict, to_dict
    from seqlab.seq2seq.data import EOS, decode, detokenize, encode, tokenize
    from seqlab.seq2seq.search import DecodeConfig

    cfg = from_dict(DecodeConfig, {**to_dict(model.config.decode), **options}, prefix="decode.")
    vocab = model.vocab
    tokens = tokenize(source.strip(), vocab.src.level)
    if not tokens:
        raise SeqlabError("source: expected a non-empty source, got an empty one")
    if len(tokens) > model.config.max_src_len:
        raise SeqlabError(f"source: {len(tokens)} tokens, more than the model's max_src_len "
                          f"{model.config.max_src_len}")
    limit = int(cfg.max_len(torch.tensor([len(tokens)]))[0])
    if limit > max_tokens:
        raise SeqlabError(f"the output limit max_len_a * {len(tokens)} + max_len_b = {limit} "
                          f"tokens is above the server's max_tokens {max_tokens}")
    hyps = model.translate([encode(tokens, vocab.src)], cfg)[0]
    text: Callable[[Any], str] = lambda h: detokenize(decode(h.tokens, vocab.tgt),  # noqa: E731
                                                      vocab.tgt.level)
    best = hyps[0]
    return {"translation": text(best), "source_tokens": tokens,
            "target_tokens": [*decode(best.tokens, vocab.tgt), EOS],
            "attention": None if best.attention is None else best.attention.tolist(),
            "hypotheses": [{"translation": text(h), "score": h.score, "log_prob": h.log_prob}
                           for h in hyps]}


def tag(model: Any, words: list[str]) -> dict[str, Any]:
    """Viterbi tags of a sentence and every tag's marginal probability at each token."""
    from seqlab.tasks.tagging import encode, tag_sentences

    if not words:
        raise SeqlabError("text: expected at least one word, got none")
    tags = tag_sentences(model, [words])[0]
    mu = model.marginals(encode([words], model.vocab))[0].cpu()  # (T, K)
    names = model.vocab.tags
    return {"tokens": words, "tags": tags, "tag_names": names,
            "marginals": [{n: float(p) for n, p in zip(names, row, strict=True)}
                          for row in mu],
            "confidence": [float(mu[t, model.vocab.tag_ids[g]]) for t, g in enumerate(tags)]}
