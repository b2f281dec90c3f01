"""Shared plumbing for model families: checkpoint metadata (`Checkpointed`), the sampler hooks
of language models (`TokenModel`), the `Trainable` plumbing of every torch model (`TorchModel`)
and the generic torch language model (`NeuralLM`). Family modules subclass one of them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
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
from seqlab.protocol import LanguageModel, State, split_lengths
from seqlab.run import Run


class Checkpointed:
    """What every registered family's checkpoint metadata holds, and loading by class."""

    family: ClassVar[str]
    Config: ClassVar[type]
    vocab_type: ClassVar[Any] = Vocab  # what `from_checkpoint` rebuilds meta["vocab"] as
    config: Any
    name: str = ""  # the registry name it was built under (lstm, ngram, tagger, ...), for tables
    # The config key that sets the model's size, for `seqlab compare --params` (seqlab.sizing);
    # None: not sized (counted or fitted by EM).
    width: ClassVar[str | None] = None

    @classmethod
    def width_step(cls, config: Any, overrides: dict[str, Any]) -> int:
        """Widths are multiples of this (a rotary Transformer's heads rotate channel pairs).
        `config` is the spec's config before sizing, `overrides` the keys the spec sets."""
        return 1

    @classmethod
    def resize(cls, overrides: dict[str, Any], width: int, config: Any) -> dict[str, Any]:
        """Model overrides holding `width` (already set under `width`), adjusted so that the
        config stays valid, e.g. a head count that divides the width. `config` is the spec's
        config before sizing (preset and overrides): what the family's other keys are. The
        parameter count must not decrease as `width` grows (the solver bisects on it)."""
        return overrides

    def describe(self) -> dict[str, Any]:
        """The JSON stored beside the weights: enough to rebuild the model."""
        meta = {"family": self.family, "name": self.name, "config": to_dict(self.config)}
        vocab = getattr(self, "vocab", None)
        return {**meta, "vocab": vocab.to_json()} if vocab is not None else meta

    @classmethod
    def config_from(cls, meta: dict[str, Any]) -> Any:
        return from_dict(cls.Config, meta["config"], prefix="model.")

    @classmethod
    def from_config(cls, config: Any, vocab: Any = None) -> Self:
        """A fresh model from its validated config (what `seqlab.models.build` calls)."""
        return cls(config, vocab)  # type: ignore[call-arg]  # the mixin has no __init__ of its own

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return load_family(cls, path)


class TokenModel(Checkpointed):
    """Mixin giving a language model ``prime`` and ``generate``.

    Subclasses set ``family``, ``Config``, ``self.config``, ``self.vocab`` and implement
    ``initial_state``, ``step`` and ``log_prob``.
    """

    vocab: Vocab

    def initial_state(self) -> State:  # the protocol's signature; neural LMs add batch_size
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
        lm = typing.cast(LanguageModel, self)  # subclasses complete the protocol
        return np.fromiter(stream(lm, [] if prompt is None else list(prompt), cfg, gen), np.int64)


class TorchModel(Checkpointed, nn.Module):
    """What every torch family shares: the `Trainable` protocol's optimizer, state and
    checkpoint plumbing, and an inference context. Language models, seq2seq models and task
    heads all build on it; none of it knows what the model computes.

    Subclasses set ``family`` and ``Config`` and store ``self.config``; a vocabulary, when the
    model has one, lives in ``self.vocab`` and is rebuilt through ``vocab_type``.
    """

    # --- the Trainable protocol ------------------------------------------------------------
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

    def initial_state(self, batch_size: int = 1) -> State:
        return None  # nothing is carried between batches unless a family says otherwise

    def state_tensors(self, state: State) -> list[torch.Tensor]:
        """A tensor, or a tuple of tensors (an LSTM's (h, c)), as a list; override for more."""
        if state is None:
            return []
        return [state] if isinstance(state, torch.Tensor) else list(state)

    def state_from_tensors(self, tensors: list[torch.Tensor]) -> State:
        if not tensors:
            return None
        return tensors[0] if len(tensors) == 1 else tuple(tensors)

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {f"model.{k}": v for k, v in self.state_dict().items()}, self.describe()

    def load_checkpoint(self, tensors: Mapping[str, torch.Tensor]) -> None:
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.load_state_dict(weights)
        except RuntimeError as e:
            raise SeqlabError(f"checkpoint weights do not fit the model: {str(e).splitlines()[0]}"
                              ) from None

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        save_tensors(path, *self.checkpoint())

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        args = [cls.config_from(meta)]
        if "vocab" in meta:
            args.append(cls.vocab_type.from_json(meta["vocab"]))
        model = cls(*args)
        model.name = meta.get("name", "")
        model.load_checkpoint(tensors)
        return model

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        """Where the weights are (the CPU for a model without any)."""
        return next((p.device for p in self.parameters()), torch.device("cpu"))

    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.train(was_training)


class NeuralLM(TokenModel, TorchModel):
    """A torch language model: ``forward(idx (B, T), state) -> (logits (B, T, V), state)``.

    Provides the protocol on top of `forward`: ``fit`` through the generic `Trainer`, exact
    full-pass ``log_prob`` with state carried across chunks, ``step`` for sampling, and
    safetensors checkpoints.
    """

    carries_state: ClassVar[bool] = True  # recurrent state continues across BPTT windows
    eval_chunk: ClassVar[int] = 4096  # tokens per forward call in log_prob
    initial_state = TorchModel.initial_state  # a batch of fresh states, not the sampler's one

    def __init__(self, config: Any, vocab: Vocab) -> None:
        nn.Module.__init__(self)
        self.config, self.vocab = config, vocab

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    # --- training ------------------------------------------------------------------------
    def fit(self, X: np.ndarray, lengths: list[int] | None = None, *,
            valid: np.ndarray | None = None, run: Run | None = None) -> Self:
        """Train on a token stream with the language-model task's batches, validation and the
        trainer (what the CLI's pipeline does; this is the notebook entry point)."""
        from seqlab.data.stream import StreamBatcher
        from seqlab.scoring import validator
        from seqlab.trainer import Trainer

        if lengths is not None:
            split_lengths(X, lengths)  # validates; streams are concatenated for BPTT anyway
        run = run or Run()
        batches = StreamBatcher(X, run.train.batch_size, run.train.seq_len, run.train.seed)
        Trainer(run).fit(self, batches, validator(self, valid))
        return self

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor], state: State
                      ) -> tuple[torch.Tensor, State]:
        x, y = batch  # (B, T) each
        logits, state = self(x, state if self.carries_state else None)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()), state

    # --- inference -----------------------------------------------------------------------
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
                chunk = np.asarray(ids[s : s + self.eval_chunk], dtype=np.int64)
                y = torch.from_numpy(chunk).to(self.device)
                x = torch.cat([y.new_tensor([prev]), y[:-1]])
                logits, state = self(x[None], state)  # (1, n, V)
                lp = logits[0].float().log_softmax(-1).gather(1, y[:, None])[:, 0]
                out[s : s + len(y)] = lp.double().cpu().numpy()
                prev = int(y[-1])
        return out

    def prime(self, prompt: np.ndarray | list[int]) -> tuple[torch.Tensor, State]:
        x = torch.tensor([[self.vocab.eos_id, *map(int, prompt)]], device=self.device)
        with self._inference():
            logits, state = self(x, self.initial_state(1))
        return logits[0, -1], state

    def step(self, token: int, state: State) -> tuple[torch.Tensor, State]:
        # Batch-1 steps must not go through oneDNN's fused RNN kernel: it costs ~4 ms per layer
        # per call on CPU (PERF-NOTES trap 2). The native kernel gives the same numbers.
        with self._inference(), without_onednn():
            logits, state = self(torch.tensor([[token]], device=self.device), state)
        return logits[0, -1], state


@contextmanager
def without_onednn() -> Iterator[None]:
    """Use ATen's native RNN kernels (the same numbers) instead of oneDNN's, for batch-1 steps."""
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # typed as a ContextProp
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was


def _is_embedding(module: nn.Module, p: torch.Tensor) -> bool:
    return any(isinstance(m, nn.Embedding) and m.weight is p for m in module.modules())


def replace_config(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)


def load_family(cls: Any, path: str | Path) -> Any:
    """Load `path` as family class `cls`; a checkpoint of another family is a one-line error."""
    tensors, meta = load_checkpoint_file(path)
    if meta["family"] != cls.family:
        raise SeqlabError(f"{path}: expected a {cls.family} checkpoint, got {meta['family']!r}")
    try:
        return cls.from_checkpoint(tensors, meta)
    except SeqlabError as e:
        raise SeqlabError(f"{path}: {e}") from None


def load_checkpoint_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = load_tensors(path)
    if "family" not in meta:
        raise SeqlabError(f"{path}: expected a seqlab model checkpoint, got one without a family")
    return tensors, meta
