"""Shared plumbing for language models: the sampler hooks, generic fit/log_prob for torch models,
and checkpoint (de)serialisation. Family modules subclass `TokenModel` or `NeuralLM`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.config import from_dict, to_dict
from seqlab.data.vocab import Vocab
from seqlab.errors import SeqlabError
from seqlab.io import load_tensors, save_tensors
from seqlab.protocol import State, split_lengths
from seqlab.run import Run


class TokenModel:
    """Mixin giving a language model ``prime``, ``generate`` and metadata for checkpoints.

    Subclasses set ``family``, ``Config``, ``self.config``, ``self.vocab`` and implement
    ``initial_state``, ``step`` and ``log_prob``.
    """

    family: ClassVar[str]
    task: ClassVar[str] = "lm"  # see seqlab.models.TASKS
    Config: ClassVar[type]
    vocab_type: ClassVar[type] = Vocab  # what `from_checkpoint` rebuilds meta["vocab"] as
    config: Any
    vocab: Vocab
    name: str = ""  # the registry name it was built under (lstm, ngram, ...), for tables

    def initial_state(self) -> State:
        raise NotImplementedError

    def step(self, token: int, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def prime(self, prompt: np.ndarray | list[int]) -> tuple[torch.Tensor, State]:
        state = self.initial_state()
        logits, state = self.step(self.vocab.eos_id, state)
        for tok in prompt:
            logits, state = self.step(int(tok), state)
        return logits, state

    def generate(self, n: int, *, prompt: np.ndarray | None = None, seed: int | None = None,
                 **sampling: Any) -> np.ndarray:
        """Sample `n` tokens after `prompt` (ids); `sampling` are `SampleConfig` fields."""
        from seqlab.sampling import SampleConfig, stream

        cfg = from_dict(SampleConfig, {"length": n, "seed": seed or 0, **sampling},
                        prefix="sample.")
        gen = torch.Generator().manual_seed(cfg.seed)
        return np.fromiter(stream(self, [] if prompt is None else list(prompt), cfg, gen), np.int64)

    def describe(self) -> dict[str, Any]:
        """The JSON stored beside the weights: enough to rebuild the model."""
        return {"family": self.family, "name": self.name, "config": to_dict(self.config),
                "vocab": self.vocab.to_json()}

    @classmethod
    def config_from(cls, meta: dict[str, Any]) -> Any:
        return from_dict(cls.Config, meta["config"], prefix="model.")

    @classmethod
    def load(cls, path: str | Path) -> Self:
        from seqlab.models import load

        model = load(path)
        if not isinstance(model, cls):
            raise SeqlabError(f"{path}: expected a {cls.family} checkpoint, got {model.family}")
        return model


class NeuralLM(TokenModel, nn.Module):
    """A torch language model: ``forward(idx (B, T), state) -> (logits (B, T, V), state)``.

    Provides the protocol on top of `forward`: ``fit`` through the generic `Trainer`, exact
    full-pass ``log_prob`` with state carried across chunks, ``step`` for sampling, and
    safetensors checkpoints.
    """

    carries_state: ClassVar[bool] = True  # recurrent state continues across BPTT windows
    eval_chunk: ClassVar[int] = 4096  # tokens per forward call in log_prob

    def __init__(self, config: Any, vocab: Vocab) -> None:
        nn.Module.__init__(self)
        self.config, self.vocab = config, vocab

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def initial_state(self, batch_size: int = 1) -> State:
        return None

    # --- training ------------------------------------------------------------------------
    def fit(self, X: np.ndarray, lengths: list[int] | None = None, *,
            valid: np.ndarray | None = None, run: Run | None = None) -> Self:
        from seqlab.evaluate import evaluate
        from seqlab.train import StreamBatcher, Trainer

        run = run or Run()
        if lengths is not None:
            split_lengths(X, lengths)  # validates; streams are concatenated for BPTT anyway
        batches = StreamBatcher(X, run.train.batch_size, run.train.seq_len, run.train.seed)
        score = None if valid is None or len(valid) == 0 else (
            lambda: {"bits_per_token": evaluate(self, valid).bits_per_token})
        Trainer(run).fit(self, batches, score)
        return self

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor], state: State
                      ) -> tuple[torch.Tensor, State]:
        x, y = batch  # (B, T) each
        logits, state = self(x, state if self.carries_state else None)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()), state

    def configure_optimizer(self, cfg: Any) -> torch.optim.Optimizer:
        """AdamW with decay on matrices only (nanoGPT's split), or plain SGD."""
        params = [p for p in self.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr)
        decay = [p for p in params if p.dim() >= 2 and not _is_embedding(self, p)]
        ids = {id(p) for p in decay}
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if id(p) not in ids], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    # --- inference -----------------------------------------------------------------------
    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.train(was_training)

    def log_prob(self, X: np.ndarray, lengths: list[int] | None = None) -> np.ndarray:
        """Exact per-token log-probabilities: one stream, state carried, nothing truncated."""
        out = [self._stream_log_prob(seg) for seg in split_lengths(X, lengths)]
        return np.concatenate(out) if out else np.zeros(0)

    def _stream_log_prob(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty(len(ids), dtype=np.float64)
        prev = self.vocab.eos_id  # the virtual end-of-line before the first token
        state = self.initial_state(1)
        with self._inference():
            for s in range(0, len(ids), self.eval_chunk):
                y = torch.from_numpy(np.asarray(ids[s : s + self.eval_chunk], dtype=np.int64))
                x = torch.cat([torch.tensor([prev]), y[:-1]])
                logits, state = self(x[None], state)  # (1, n, V)
                lp = logits[0].float().log_softmax(-1).gather(1, y[:, None])[:, 0]
                out[s : s + len(y)] = lp.double().numpy()
                prev = int(y[-1])
        return out

    def prime(self, prompt: np.ndarray | list[int]) -> tuple[torch.Tensor, State]:
        x = torch.tensor([[self.vocab.eos_id, *map(int, prompt)]])
        with self._inference():
            logits, state = self(x, self.initial_state(1))
        return logits[0, -1], state

    def step(self, token: int, state: State) -> tuple[torch.Tensor, State]:
        # Batch-1 steps must not go through oneDNN's fused RNN kernel: it costs ~4 ms per layer
        # per call on CPU (PERF-NOTES trap 2). The native kernel gives the same numbers.
        with self._inference(), without_onednn():
            logits, state = self(torch.tensor([[token]]), state)
        return logits[0, -1], state

    # --- checkpoints ---------------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {f"model.{k}": v for k, v in self.state_dict().items()}, self.describe()

    def load_checkpoint(self, tensors: dict[str, torch.Tensor]) -> None:
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.load_state_dict(weights)
        except RuntimeError as e:
            raise SeqlabError(f"checkpoint weights do not fit the model: {str(e).splitlines()[0]}"
                              ) from None

    def save(self, path: str | Path) -> None:
        save_tensors(path, *self.checkpoint())

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        model = cls(cls.config_from(meta), cls.vocab_type.from_json(meta["vocab"]))
        model.name = meta.get("name", "")
        model.load_checkpoint(tensors)
        return model

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@contextmanager
def without_onednn() -> Iterator[None]:
    """Use ATen's native RNN kernels (the same numbers) instead of oneDNN's, for batch-1 steps."""
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was


def _is_embedding(module: nn.Module, p: torch.Tensor) -> bool:
    return any(isinstance(m, nn.Embedding) and m.weight is p for m in module.modules())


def replace_config(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)


def load_checkpoint_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = load_tensors(path)
    if "family" not in meta:
        raise SeqlabError(f"{path}: expected a seqlab model checkpoint, got one without a family")
    return tensors, meta
