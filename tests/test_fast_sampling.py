"""The fast steppers (`seqlab.fast_sampling`): fused, in-place cell steps and the conv stacks'
ring queues equal the model's full forward pass, for every cell and both conv stacks, several
layers, batch 1 and batch > 1, in float64 and float32; and a seed samples the same tokens as the
protocol path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import char_vocab

from seqlab.fast_sampling import (
    ConvStepper,
    ModuleStepper,
    Product,
    RecurrentStepper,
    conv_supported,
    sample_batch,
    stepper,
    supports,
)
from seqlab.models.conv import ConvLM
from seqlab.models.recurrent import RecurrentConfig, RecurrentLM
from seqlab.models.transformer import TransformerConfig, TransformerLM
from seqlab.nn.conv import ConvConfig
from seqlab.sampling import SampleConfig, pick, stream

CASES = [{"cell": "lstm"}, {"cell": "gru"}, {"cell": "rnn"},
         {"cell": "rnn", "nonlinearity": "relu", "residual": True},
         {"cell": "lstm", "layers": 3, "residual": True, "residual_start": 2},
         {"cell": "gru", "layers": 1}, {"cell": "lstm", "tie_weights": True, "emb_dim": 8}]
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _lm(dtype: torch.dtype = torch.float32, **kw: object) -> RecurrentLM:
    torch.manual_seed(0)
    cfg = RecurrentConfig(**{"emb_dim": 6, "hidden": 8, "layers": 2, "init": "uniform",
                             "init_scale": 0.5, **kw})  # large weights: gates far from linear
    return RecurrentLM(cfg, char_vocab("abcdefg")).to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kw", CASES)
def test_steps_equal_full_forward(kw: dict, batch: int, dtype: torch.dtype) -> None:
    lm = _lm(dtype, **kw)
    ids = torch.randint(0, len(lm.vocab), (batch, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, (h, *rest) = lm(ids)  # (B, T, V)
    st = stepper(lm, batch)
    assert isinstance(st, RecurrentStepper)
    steps = torch.stack([st.step(ids[:, t]).clone() for t in range(ids.shape[1])], 1)
    torch.testing.assert_close(steps, full, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(st.state()[0], h, atol=TOL[dtype], rtol=0)
    if rest:  # the LSTM's cell state too
        torch.testing.assert_close(st.state()[1], rest[0], atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("kw", [{"cell": "lstm"}, {"cell": "gru"}, {"cell": "rnn", "layers": 3}])
def test_packed_products_equal_plain_addmm(kw: dict) -> None:
    """MKL's packed GEMM (float32, packed once per stepper) gives the plain ``addmm`` path's
    logits to rounding; in float64 nothing is packed."""
    lm = _lm(hidden=40, emb_dim=12, **kw)
    ids = torch.randint(0, len(lm.vocab), (4, 10), generator=torch.Generator().manual_seed(2))
    packed, plain = RecurrentStepper(lm, 4), RecurrentStepper(lm, 4, packed=False)
    assert (packed.head.packed is not None) == torch.backends.mkl.is_available()
    assert plain.head.packed is None
    assert RecurrentStepper(_lm(torch.float64, **kw), 4).head.packed is None
    for t in range(ids.shape[1]):
        torch.testing.assert_close(packed.step(ids[:, t]), plain.step(ids[:, t]), atol=2e-5,
                                   rtol=0)


def test_a_product_packed_for_one_batch_is_right_for_any_rows() -> None:
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(48, 32, generator=g), torch.randn(48, generator=g)
    prod = Product(w, b, batch=4)
    for rows in (1, 4, 7):
        x = torch.randn(rows, 64, generator=g)[:, ::2]  # a strided view, as the stepper's are
        out = torch.full((rows, 48), 1.0)
        torch.testing.assert_close(prod.into(x, out), x @ w.T + b, atol=1e-5, rtol=0)
        torch.testing.assert_close(prod.add_to(x, out), 2 * (x @ w.T) + b, atol=1e-5, rtol=0)


def test_state_round_trip_and_row_reset() -> None:
    lm = _lm(cell="lstm")
    ids = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    st = stepper(lm, 2)
    for t in range(4):
        st.step(ids[:, t])
    saved = st.state()
    other = stepper(lm, 2)
    other.load_state(saved)
    torch.testing.assert_close(other.step(ids[:, 0]), st.step(ids[:, 0]), atol=0, rtol=0)
    st.reset([1])  # row 1 starts afresh, row 0 keeps its state
    fresh = stepper(lm, 1)
    torch.testing.assert_close(st.step(ids[:, 1])[1], fresh.step(ids[1:, 1])[0], atol=1e-6,
                               rtol=0)


@pytest.mark.parametrize(("kw", "sampling"), [
    ({"cell": "lstm"}, {}), ({"cell": "gru"}, {"temperature": 0.7, "top_k": 4}),
    ({"cell": "rnn"}, {"top_p": 0.9}), ({"cell": "lstm", "layers": 3}, {"greedy": True})])
def test_seeded_samples_equal_the_protocol_path(kw: dict, sampling: dict) -> None:
    def protocol_stream(lm, prompt, cfg, gen):  # the old sampler
        logits, state = lm.prime(prompt)
        for i in range(cfg.length):
            tok = pick(logits, cfg, gen)
            yield tok
            if i + 1 < cfg.length:
                logits, state = lm.step(tok, state)

    lm = _lm(**kw)
    cfg = SampleConfig(length=40, seed=3, **sampling)
    prompt = lm.vocab.encode("abc", strict=True)
    old = list(protocol_stream(lm, prompt, cfg, torch.Generator().manual_seed(cfg.seed)))
    assert supports(lm)  # so `stream` steps through the fused stepper
    new = list(stream(lm, prompt, cfg, torch.Generator().manual_seed(cfg.seed)))
    assert new == old
    assert len(set(new)) > 1 or sampling.get("greedy")  # a real sample, not a constant


@pytest.mark.parametrize(("cell", "batch", "one"), [
    ("lstm", 1, True), ("lstm", 8, True), ("lstm", 9, False),
    ("wavenet", 1, True), ("wavenet", 64, True), ("wavenet", 65, False)])
def test_small_batch_steps_run_on_one_thread_and_restore_the_callers_count(
        monkeypatch: pytest.MonkeyPatch, batch: int, one: bool, cell: str) -> None:
    """Up to `one_thread_rows` rows (8 recurrent, 64 conv) a step runs on one intra-op thread
    (faster for matrix-vector products) and hands the caller's thread count back; the logits
    equal a stepper's on one thread throughout, and a sample through `stream` is the same
    tokens."""
    lm: Any = _lm(cell="lstm") if cell == "lstm" else _conv(**CONV_CASES[0])
    inner = "_layer" if cell == "lstm" else "_wavenet"
    cls = type(stepper(lm, 1))
    seen: list[int] = []
    real = getattr(cls, inner)

    def spy(self: Any, *args: Any) -> Any:
        seen.append(torch.get_num_threads())
        return real(self, *args)

    monkeypatch.setattr(cls, inner, spy)
    tokens = torch.arange(batch) % len(lm.vocab)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = stepper(lm, batch).step(tokens).clone()
        assert torch.get_num_threads() == 2
        assert set(seen) == ({1} if one else {2})
        torch.set_num_threads(1)
        ref = stepper(lm, batch).step(tokens).clone()
        cfg = SampleConfig(length=30, seed=5)
        prompt = lm.vocab.encode("abc", strict=True)
        single = list(stream(lm, prompt, cfg, torch.Generator().manual_seed(cfg.seed)))
        torch.set_num_threads(2)
        toks = list(stream(lm, prompt, cfg, torch.Generator().manual_seed(cfg.seed)))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(two, ref)
    assert toks == single


def test_batched_sampling_is_seeded_and_rows_follow_their_prompts() -> None:
    lm = _lm(cell="lstm")
    prompts = [lm.vocab.encode(p, strict=True).tolist() for p in ("ab", "gfedcba", "c")]
    a = sample_batch(lm, prompts, 40, seed=5)
    b = sample_batch(lm, prompts, 40, seed=5)
    assert a.shape == (3, 40) and (a == b).all()
    # Greedy rows equal greedy batch-1 sampling of the same prompt: the padding of short
    # prompts does not leak into their state.
    greedy = sample_batch(lm, prompts, 20, temperature=0)
    for row, p in zip(greedy, prompts, strict=True):
        one = list(stream(lm, p, SampleConfig(length=20, greedy=True), torch.Generator()))
        assert row.tolist() == one


def test_other_families_step_through_forward() -> None:
    torch.manual_seed(0)
    lm = TransformerLM(TransformerConfig(layers=1, heads=2, dim=8, block_size=16, dropout=0.0),
                       char_vocab("abcd")).eval()
    assert not supports(lm) and not conv_supported(lm)
    st = stepper(lm, 2)
    assert isinstance(st, ModuleStepper)
    ids = torch.tensor([[1, 2, 3, 4, 2], [4, 3, 2, 1, 1]])
    with torch.no_grad():
        full, _ = lm(ids)
    steps = torch.stack([st.step(ids[:, t]) for t in range(5)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=0)
    assert not supports(_lm(cell="lstm", peepholes=True))  # reference-only features


CONV_CASES = [  # WaveNet with two dilation cycles; a k=3 TCN whose first block projects 6 -> 8
    {"kind": "wavenet", "channels": 8, "skip_channels": 5, "levels": 3, "blocks": 2},
    {"kind": "tcn", "channels": 8, "kernel_size": 3, "levels": 3},
    {"kind": "tcn", "channels": 6, "kernel_size": 2, "dilations": (1, 3, 2), "weight_norm": False},
]


def _conv(dtype: torch.dtype = torch.float32, **kw: object) -> ConvLM:
    torch.manual_seed(0)
    cfg = ConvConfig(**{"emb_dim": 6, "dropout": 0.0, **kw})
    lm = ConvLM(cfg, char_vocab("abcdefg")).to(dtype).eval()
    with torch.no_grad():  # larger weights: the nonlinearities far from linear
        for p in lm.parameters():
            p.mul_(3)
    return lm


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv_queue_steps_equal_full_forward(kw: dict, batch: int, dtype: torch.dtype) -> None:
    lm = _conv(dtype, **kw)
    T = lm.receptive_field + 5  # past the receptive field: every ring wraps around
    ids = torch.randint(0, len(lm.vocab), (batch, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, bufs = lm(ids)  # (B, T, V)
    st = stepper(lm, batch)
    assert isinstance(st, ConvStepper)
    steps = torch.stack([st.step(ids[:, t]).clone() for t in range(T)], 1)
    tol = TOL[dtype] * (1 if dtype == torch.float64 else 10)
    torch.testing.assert_close(steps, full, atol=tol, rtol=0)
    for mine, theirs in zip(st.state(), bufs, strict=True):  # the model's own state layout
        torch.testing.assert_close(mine, theirs, atol=tol, rtol=0)


@pytest.mark.parametrize("kw", CONV_CASES[:2])
def test_conv_state_round_trip_and_row_reset(kw: dict) -> None:
    lm = _conv(**kw)
    ids = torch.randint(0, 7, (2, 11), generator=torch.Generator().manual_seed(2))
    st = stepper(lm, 2)
    for t in range(7):
        st.step(ids[:, t])
    other = stepper(lm, 2)
    other.load_state(st.state())  # another ring phase: its clock restarts at 0
    for t in range(7, 11):
        torch.testing.assert_close(other.step(ids[:, t]), st.step(ids[:, t]), atol=1e-6, rtol=0)
    st.reset([1])  # row 1 starts afresh, row 0 keeps its queues
    fresh = stepper(lm, 1)
    for t in range(4):
        torch.testing.assert_close(st.step(ids[:, t])[1], fresh.step(ids[1:, t])[0], atol=1e-5,
                                   rtol=0)
    # primed through the model (`prime`), continued by the stepper: the full forward's logits
    with torch.no_grad():
        full, _ = lm(ids[:1])
        _, state = lm(ids[:1, :6])
    one = stepper(lm, 1)
    one.load_state(state)
    torch.testing.assert_close(one.step(ids[0, 6:7])[0], full[0, 6], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kw", "sampling"), [(CONV_CASES[0], {}),
                                              (CONV_CASES[1], {"temperature": 0.7, "top_k": 4})])
def test_conv_seeded_samples_equal_the_protocol_path(kw: dict, sampling: dict) -> None:
    lm = _conv(**kw)
    cfg = SampleConfig(length=40, seed=3, **sampling)
    prompt = lm.vocab.encode("abc", strict=True)
    logits, state = lm.prime(prompt)
    gen, old = torch.Generator().manual_seed(cfg.seed), []
    for i in range(cfg.length):
        old.append(pick(logits, cfg, gen))
        if i + 1 < cfg.length:
            logits, state = lm.step(old[-1], state)
    new = list(stream(lm, prompt, cfg, torch.Generator().manual_seed(cfg.seed)))
    assert new == old and len(set(new)) > 1


def test_training_changes_rebuild_the_stepper_weights() -> None:
    lm = _lm(cell="gru")
    before = stepper(lm, 1).version
    with torch.no_grad():
        lm.head.bias.add_(1.0)
    assert stepper(lm, 1).version != before
    np.testing.assert_allclose(stepper(lm, 1).step(torch.tensor([1]))[0].numpy(),
                               lm(torch.tensor([[1]]))[0][0, 0].detach().numpy(), atol=1e-5)
