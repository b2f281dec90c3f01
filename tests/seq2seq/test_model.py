"""The encoder-decoder: step-by-step decoding equals teacher forcing, padding and batch size change
nothing, scheduled sampling and label smoothing do what they say, checkpoints, exact resume, and
a short training run that must learn reversal."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.seq2seq.conftest import (
    VARIANT_IDS,
    VARIANTS,
    digit_vocab,
    encoded,
    reversal_pairs,
    tiny_model,
)

from seqlab import models
from seqlab.errors import SeqlabError
from seqlab.protocol import LanguageModel
from seqlab.run import Run, TrainConfig
from seqlab.seq2seq.data import BOS_ID, EOS_ID, PAD_ID, Batch, PairBatcher, Pairs, pad
from seqlab.seq2seq.metrics import evaluate
from seqlab.seq2seq.model import Seq2Seq, Seq2SeqConfig
from seqlab.seq2seq.search import DecodeConfig, decode
from seqlab.trainer import Trainer

PAIRS = encoded(reversal_pairs(9, max_len=8, seed=2))
DROPOUT = 0.1


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_step_by_step_decoding_equals_teacher_forced_scoring(variant: dict[str, str]) -> None:
    model = tiny_model(seed=1, **variant)
    sources = [PAIRS.source(i) for i in range(len(PAIRS))]
    hyps = model.translate(sources, DecodeConfig(beam_size=3, n_best=3, max_len_b=10))
    # score every output as a target, teacher-forced, all in one padded batch
    outs = [(s, np.array(h.tokens, dtype=np.int32)) for s, hs in zip(sources, hyps, strict=True)
            for h in hs]
    pairs = Pairs(*_flat([s for s, _ in outs]), *_flat([t for _, t in outs]))
    lp = model.log_prob(pairs)
    bounds = np.cumsum([0, *(len(t) + 1 for _, t in outs)])
    decoded = [h.log_prob for hs in hyps for h in hs]
    forced = [lp[a:b].sum() for a, b in itertools.pairwise(bounds)]
    assert decoded == pytest.approx(forced, abs=2e-5)


def _flat(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(seqs).astype(np.int32), np.cumsum([0, *map(len, seqs)])


def test_log_prob_is_independent_of_padding_and_batch_size() -> None:
    model = tiny_model(seed=2, attention="bahdanau", cell="gru")
    together = model.log_prob(PAIRS, batch_size=64)
    for bs in (1, 4):
        assert np.allclose(model.log_prob(PAIRS, batch_size=bs), together, atol=1e-5)
    one = Pairs(*_flat([PAIRS.source(3)]), *_flat([PAIRS.target(3)]))
    start = sum(len(PAIRS.target(i)) + 1 for i in range(3))
    assert np.allclose(model.log_prob(one), together[start : start + len(PAIRS.target(3)) + 1],
                       atol=1e-5)
    assert len(together) == PAIRS.tgt_lengths.sum() + len(PAIRS)  # <eos> scored per pair
    assert np.all(together < 0)


def test_encoder_ignores_padding_and_reads_both_ways() -> None:
    model = tiny_model(seed=3, enc_layers=1, residual=False)
    batch = PAIRS.batch(range(len(PAIRS)))
    with torch.no_grad():
        memory, final = model.encoder(batch.src, batch.src_len)
        assert torch.all(memory[~batch.src_mask] == 0)
        for i in range(len(PAIRS)):
            n = int(batch.src_len[i])
            alone, final1 = model.encoder(batch.src[i : i + 1, :n], batch.src_len[i : i + 1])
            assert torch.allclose(memory[i, :n], alone[0], atol=1e-6)
            assert torch.allclose(final[i], final1[0], atol=1e-6)
            H = model.config.hidden // 2  # final = [forward at the last token; backward at 0]
            assert torch.allclose(final1[0, :H], alone[0, n - 1, :H], atol=1e-6)
            assert torch.allclose(final1[0, H:], alone[0, 0, H:], atol=1e-6)


def test_scheduled_sampling_feeds_the_models_own_predictions() -> None:
    model = tiny_model(seed=4)
    batch = PAIRS.batch(range(len(PAIRS)))
    with torch.no_grad():
        own = model(batch, teacher_forcing=0.0)  # (B, T, V), every input its own argmax
        fed = torch.cat([torch.full((len(batch), 1), BOS_ID), own.argmax(-1)[:, :-1]], 1)
        forced = model(Batch(batch.src, batch.src_len, fed, batch.tgt_out))
        assert torch.allclose(own, forced, atol=1e-6)
        assert not torch.allclose(own, model(batch))  # gold inputs differ from own


def test_label_smoothing_loss() -> None:
    eps = 0.2
    model = tiny_model(seed=5, label_smoothing=eps)
    batch = PAIRS.batch(range(len(PAIRS)))
    with torch.no_grad():
        loss, _ = model.training_loss(batch, None)
        logp = model(batch).log_softmax(-1)  # (B, T, V)
    keep = batch.tgt_out != PAD_ID
    nll = -logp.gather(2, batch.tgt_out[..., None])[..., 0][keep]
    uniform = -logp.mean(-1)[keep]  # cross-entropy against the uniform distribution
    assert float(loss) == pytest.approx(float(((1 - eps) * nll + eps * uniform).mean()), abs=1e-6)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(SeqlabError, match=r"tie_embeddings needs model\.emb_dim == model\.hidden"):
        Seq2SeqConfig(tie_embeddings=True, emb_dim=8, hidden=16)
    with pytest.raises(SeqlabError, match="must be even, got 15"):
        Seq2SeqConfig(hidden=15)
    with pytest.raises(SeqlabError, match=r"model\.attention: expected one of none, bahdanau"):
        models.make_config("seq2seq", {"attention": "luong"})
    with pytest.raises(SeqlabError, match=r"unknown config key model\.beam.*valid keys"):
        models.make_config("seq2seq", {"beam": 4})
    cfg = models.make_config("seq2seq", {"decode": {"beam_size": "3"}, "tie_embeddings": True,
                                         "emb_dim": 16, "hidden": 16})
    model = Seq2Seq(cfg, digit_vocab())
    assert cfg.decode.beam_size == 3 and model.decoder.out.weight is model.decoder.embed.weight


def test_checkpoint_round_trip_and_protocol(tmp_path: Path) -> None:
    model = tiny_model(seed=6, attention="dot", cell="gru")
    model.save(tmp_path / "m.safetensors")
    back = models.load(tmp_path / "m.safetensors")
    assert isinstance(back, Seq2Seq) and back.vocab.to_json() == model.vocab.to_json()
    assert np.array_equal(back.log_prob(PAIRS), model.log_prob(PAIRS))
    assert not isinstance(model, LanguageModel)  # needs a source first...
    cond = model.conditioned(PAIRS.source(0))
    assert isinstance(cond, LanguageModel)  # ...then it is one, over the target vocabulary
    target = np.array([*PAIRS.target(0), EOS_ID])
    assert np.allclose(cond.log_prob(target), model.log_prob(PAIRS)[: len(target)], atol=1e-6)
    with pytest.raises(SeqlabError, match="needs the source ids as prompt"):
        model.generate(5)


def _train(pairs: Pairs, steps: int, run: Run, valid: Pairs | None = None) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(hidden=64, emb_dim=32, dropout=DROPOUT)
    return Seq2Seq(cfg, digit_vocab()).fit(pairs, valid=valid, run=run)


def test_short_training_run_learns_reversal() -> None:
    """Target: >= 90% exact match on unseen sources after 400 steps (a few seconds)."""
    train = encoded(reversal_pairs(3000, max_len=6, symbols=8, seed=10))
    test = encoded(reversal_pairs(200, max_len=6, symbols=8, seed=11))
    cfg = TrainConfig(batch_size=32, max_steps=400, lr=5e-3, warmup_steps=20, eval_interval=400,
                      progress=False, seed=1)
    model = _train(train, 400, Run(train=cfg)).eval()
    score = evaluate(model, test, decode_cfg=DecodeConfig(beam_size=3))
    assert score.exact_match >= 0.90, score.summary()
    assert score.bleu >= 90 and score.token_accuracy >= 0.95
    untrained = evaluate(tiny_model(), test, decode_cfg=DecodeConfig(beam_size=3))
    assert untrained.exact_match < 0.05


def test_resume_is_exact(tmp_path: Path) -> None:
    pairs = encoded(reversal_pairs(300, max_len=6, seed=12))
    valid = encoded(reversal_pairs(20, max_len=6, seed=13))
    cfg = lambda **kw: TrainConfig(batch_size=16, max_steps=24, eval_interval=8,  # noqa: E731
                                   progress=False, warmup_steps=4, **kw)
    straight = _train(pairs, 24, Run(train=cfg(), dir=tmp_path / "a"), valid)
    _train(pairs, 24, Run(train=cfg(stop_at_step=12), dir=tmp_path / "b"), valid)
    resumed = _train(pairs, 24, Run(train=cfg(), dir=tmp_path / "b", resume=True), valid)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_teacher_forcing_ratio_is_used_in_training() -> None:
    pairs = encoded(reversal_pairs(64, max_len=6, seed=14))
    model = tiny_model(seed=8, teacher_forcing=0.5).train()
    torch.manual_seed(0)
    a, _ = model.training_loss(pairs.batch(range(32)), None)
    torch.manual_seed(0)
    b, _ = model.training_loss(pairs.batch(range(32)), None)
    torch.manual_seed(1)
    c, _ = model.training_loss(pairs.batch(range(32)), None)
    assert a.item() == b.item() != c.item()  # the gold/own coin flips come from the seeded RNG
    assert math.isfinite(a.item())


# --- an injected encoder --------------------------------------------------------------------
class FeatureEncoder(torch.nn.Module):
    """A stand-in for a piano-roll or image encoder: float features (B, S, F) -> Linear -> GRU,
    keeping `Seq2Seq`'s encoder contract (memory (B, S, H), final (B, H))."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(features, hidden)
        self.rnn = torch.nn.GRU(hidden, hidden, batch_first=True)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.rnn(torch.tanh(self.proj(src)))  # (B, S, H)
        real = torch.arange(src.shape[1])[None, :] < src_len[:, None]  # (B, S)
        final = out[torch.arange(src.shape[0]), src_len - 1]  # (B, H): the last real step
        return out * real[..., None], final


def _features(src: torch.Tensor) -> torch.Tensor:
    """Token ids (B, S) -> one float row per step (B, S, F): what a piano roll would carry."""
    return torch.nn.functional.one_hot(src, len(digit_vocab().src)).float()


class FeatureBatcher(PairBatcher):
    """`PairBatcher` whose sources are feature rows instead of ids."""

    def next(self) -> tuple[Batch, bool]:
        batch, fresh = super().next()
        return replace(batch, src=_features(batch.src)), fresh


def test_injected_encoder_trains_and_decodes() -> None:
    torch.manual_seed(0)
    vocab = digit_vocab()
    encoder = FeatureEncoder(len(vocab.src), 16)
    model = Seq2Seq(Seq2SeqConfig(hidden=16, emb_dim=8, dropout=0.0), vocab, encoder=encoder)
    assert model.encoder is encoder and "encoder.embed.weight" not in model.state_dict()
    batch = PAIRS.batch(range(len(PAIRS)))
    batch = replace(batch, src=_features(batch.src))  # (B, S, F) floats
    loss, _ = model.training_loss(batch, None)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    model.zero_grad(set_to_none=True)

    cfg = TrainConfig(batch_size=4, max_steps=30, lr=1e-2, eval_interval=30, progress=False)
    Trainer(Run(train=cfg)).fit(model, FeatureBatcher(PAIRS, 4), None)
    with torch.no_grad():
        assert float(model.training_loss(batch, None)[0]) < float(loss)

    # The shared search decodes from the features, and each output's log-probability equals
    # its teacher-forced score: the injected encoder serves both paths alike.
    model.eval()
    decode_cfg = DecodeConfig(strategy="greedy", max_len_b=10)
    with torch.no_grad():
        state = model.encode(batch.src, batch.src_len)
        hyps = decode(model, state, decode_cfg.max_len(batch.src_len), decode_cfg,
                      list(range(len(batch))))
        outs = [h[0].tokens for h in hyps]
        forced = Batch(batch.src, batch.src_len, pad([np.array(t) for t in outs], prefix=BOS_ID),
                       pad([np.array(t) for t in outs], suffix=EOS_ID))
        lp, _ = model.score_batch(forced)
    assert [h[0].log_prob for h in hyps] == pytest.approx(lp.sum(1).tolist(), abs=2e-5)


def test_default_blocks_keep_their_checkpoint_keys() -> None:
    """Checkpoints written before the encoder and decoder were injectable still load."""
    keys = set(tiny_model().state_dict())
    assert {"encoder.embed.weight", "encoder.rnn.layers.0.rnn.weight_ih_l0",
            "encoder.rnn.layers.0.rnn.weight_ih_l0_reverse", "decoder.embed.weight",
            "decoder.rnn.layers.1.rnn.weight_hh_l0", "decoder.attention.key_proj.weight",
            "decoder.combine.weight", "decoder.bridge.weight", "decoder.out.weight"} <= keys
    assert {k.split(".")[0] for k in keys} == {"encoder", "decoder"}
