"""WaveNet on raw audio: 8-bit mu-law codes in, a 256-way softmax over the next code out.

    code at t-1 (B, T) -> embedding (B, T, E) -> WaveNet stack (B, T, S) -> linear -> (B, T, 256)

The stack is the gated dilated one of `seqlab.nn.conv` (van den Oord et al. 2016), configured
by the same `ConvConfig` as the convolutional language model, with defaults sized for audio: 2
cycles of dilations 1..512 (kernel 2) give a receptive field of 2,047 samples, 256 ms at 8 kHz,
enough for a few pitch periods and most of a phoneme. Its convolutions carry buffers, so:

* `log_prob` scores a whole clip exactly in chunks (every sample gets its full receptive field),
  the first sample conditioned on silence (code 128) with empty buffers;
* `step` feeds one code and returns the next one's logits: each layer reads its k taps from
  its queue, O(layers) work per sample (Paine et al. 2016, "Fast WaveNet generation");
  `generate` runs the same queues as rings on preallocated buffers
  (`seqlab.fast_sampling.ConvStepper`), several times faster per sample.

Training windows (`seqlab.tasks.audio`) hold ``receptive_field - 1`` samples of context before
the ``train.seq_len`` scored ones, so that training sees what scoring and generation see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.audio import CODES, SILENCE, AudioFormat
from seqlab.errors import SeqlabError
from seqlab.fast_sampling import stepper
from seqlab.models.base import TorchModel
from seqlab.nn.conv import ConvConfig, State, build_stack


@dataclass
class AudioConfig(ConvConfig):
    """`ConvConfig` (kind, channels, levels, blocks, ...) with defaults for 8 kHz audio."""

    kind: Literal["tcn", "wavenet"] = "wavenet"
    emb_dim: int = 32  # embedding of the 256 input codes
    channels: int = 32  # residual channels
    kernel_size: int | None = 2
    levels: int = 10  # dilations 1, 2, ..., 512
    blocks: int = 2  # receptive field 1 + 2 * 1023 = 2047 samples
    skip_channels: int = 128
    dropout: float = 0.0  # short runs underfit


class WaveNetAudio(TorchModel):
    """Embedding -> WaveNet stack -> 256-way softmax over the next mu-law code."""

    family = "audio"
    Config = AudioConfig
    vocab_type = AudioFormat
    width = "channels"
    eval_chunk = 16384  # samples per forward call in log_prob

    def __init__(self, config: AudioConfig, vocab: AudioFormat | None = None) -> None:
        super().__init__()
        self.config, self.vocab = config, vocab or AudioFormat()
        self.embed = nn.Embedding(CODES, config.emb_dim)
        self.drop = nn.Dropout(config.dropout)
        self.stack = build_stack(config.emb_dim, config)
        self.head = nn.Linear(self.stack.output_size, CODES)

    @property
    def receptive_field(self) -> int:
        return self.stack.receptive_field

    @property
    def sample_rate(self) -> int:
        return self.vocab.sample_rate

    def forward(self, codes: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """codes (B, T), the inputs (each the previous sample's code) -> logits (B, T, 256)
        and the buffers after the last one."""
        x = self.drop(self.embed(codes))  # (B, T, E)
        h, state = self.stack(x, state)  # (B, T, S)
        return self.head(self.drop(h)), state

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor], state: State
                      ) -> tuple[torch.Tensor, None]:
        """Mean cross-entropy (nats) over the targets that are not -100 (the context)."""
        x, y = batch  # (B, C + T) each
        logits, _ = self(x.to(self.device))  # (B, C + T, 256)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.to(self.device).flatten(),
                               ignore_index=-100)
        return loss, None

    # --- scoring ---------------------------------------------------------------------------
    def log_prob(self, codes: np.ndarray) -> np.ndarray:
        """log p(code_t | code_<t) of every sample of one clip (N,), in nats, computed in
        chunks with the buffers carried: exact."""
        codes = np.asarray(codes, dtype=np.int64)
        out = np.empty(len(codes), dtype=np.float64)
        prev, state = SILENCE, None
        with self._inference():
            for s in range(0, len(codes), self.eval_chunk):
                y = torch.from_numpy(codes[s:s + self.eval_chunk]).to(self.device)  # (n,)
                x = torch.cat([y.new_tensor([prev]), y[:-1]])  # (n,): shifted by one
                logits, state = self(x[None], state)  # (1, n, 256)
                lp = logits[0].float().log_softmax(-1).gather(1, y[:, None])[:, 0]
                out[s:s + len(y)] = lp.double().cpu().numpy()
                prev = int(y[-1])
        return out

    # --- generation ------------------------------------------------------------------------
    def step(self, code: int, state: State | None) -> tuple[torch.Tensor, State]:
        """Feed one code; the logits (256,) of the next one and the updated queues."""
        with self._inference():
            logits, state = self(torch.tensor([[code]], device=self.device), state)
        return logits[0, -1], state

    def prime(self, prompt: np.ndarray) -> tuple[torch.Tensor, State]:
        """Silence, then the prompt's codes, in one pass: the logits of the next code."""
        x = torch.tensor([[SILENCE, *map(int, prompt)]], device=self.device)
        with self._inference():
            logits, state = self(x, None)
        return logits[0, -1], state

    def generate(self, n: int, *, prompt: np.ndarray | None = None, seed: int = 0,
                 temperature: float = 1.0) -> np.ndarray:
        """`n` codes sampled one at a time through `step` (uint8), after `prompt`'s codes."""
        if n < 0 or not temperature > 0:
            raise SeqlabError(f"expected n >= 0 samples and a temperature > 0, got {n} and "
                              f"{temperature}")
        gen = torch.Generator().manual_seed(seed)
        logits, state = self.prime(np.zeros(0) if prompt is None else prompt)
        st = stepper(self, 1)  # the queues as rings, in place (`fast_sampling.ConvStepper`)
        st.load_state(state)
        out = np.empty(n, dtype=np.uint8)
        code = torch.zeros(1, dtype=torch.long, device=self.device)
        for i in range(n):
            p = torch.softmax(logits.float().cpu() / temperature, -1)
            out[i] = int(torch.multinomial(p, 1, generator=gen))
            if i + 1 < n:
                code.fill_(int(out[i]))
                logits = st.step(code)[0]
        return out
