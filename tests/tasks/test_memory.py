"""The memory task and the Neural Turing Machine: addressing invariants, gradients of one step,
the generators' layouts, causality, and the CLI round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab import models
from seqlab.cli import main
from seqlab.errors import SeqlabError
from seqlab.models.ntm import NTM, NTMConfig, address, circular_shift, content_weights, sharpen
from seqlab.tasks.memory import (
    BITS,
    MemoryBatcher,
    MemoryConfig,
    copy_example,
    generate,
    parse_line,
    recall_example,
    repeat_example,
)

TINY = ["model.controller=8", "model.memory_n=8", "model.memory_m=4"]
TRAIN = ["data.max_len=3", "data.valid_sequences=8", "data.test_sequences=8",
         "train.max_steps=4", "train.eval_interval=2", "train.batch_size=4",
         "train.progress=false", "train.precision=fp32", "train.threads=1"]


def run(*args: object) -> int:
    return main([str(a) for a in args])


def _heads(B: int = 3, K: int = 2, N: int = 7, M: int = 5, seed: int = 0,
           dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return {"memory": r(B, N, M), "w_prev": torch.softmax(r(B, K, N), -1), "key": r(B, K, M),
            "beta": r(B, K, 1).exp(), "g": torch.sigmoid(r(B, K, 1)),
            "s": torch.softmax(r(B, K, 3), -1), "gamma": 1 + r(B, K, 1).exp()}


# --- addressing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weights_sum_to_one_at_every_stage(seed: int) -> None:
    h = _heads(seed=seed)
    w_c = content_weights(h["memory"], h["key"], h["beta"])
    w_s = circular_shift(h["g"] * w_c + (1 - h["g"]) * h["w_prev"], h["s"])
    w = sharpen(w_s, h["gamma"])
    for stage in (w_c, w_s, w, address(**h)):
        assert stage.shape == (3, 2, 7) and (stage >= 0).all()
        torch.testing.assert_close(stage.sum(-1), torch.ones(3, 2))
    torch.testing.assert_close(address(**h), w)


def test_shift_moves_mass_circularly_and_sharpening_keeps_the_argmax() -> None:
    w = torch.zeros(1, 1, 5)
    w[0, 0, 4] = 1.0
    right, left = torch.tensor([[[0.0, 0.0, 1.0]]]), torch.tensor([[[1.0, 0.0, 0.0]]])
    assert circular_shift(w, right)[0, 0].argmax() == 0  # slot 4 + 1 wraps to 0
    assert circular_shift(w, left)[0, 0].argmax() == 3
    blurred = circular_shift(w, torch.tensor([[[0.25, 0.5, 0.25]]]))
    sharp = sharpen(blurred, torch.tensor([[[5.0]]]))
    assert sharp[0, 0, 4] > blurred[0, 0, 4] and sharp[0, 0].argmax() == 4


def test_content_weights_focus_on_the_matching_slot() -> None:
    memory = torch.eye(4)[None]  # (1, 4, 4): slot i is the unit vector e_i
    w = content_weights(memory, torch.tensor([[[0.0, 0.0, 3.0, 0.0]]]), torch.tensor([[[50.0]]]))
    assert w[0, 0].argmax() == 2 and w[0, 0, 2] > 0.99


def test_gradcheck_one_ntm_step_in_float64() -> None:
    torch.manual_seed(0)
    model = NTM(NTMConfig(inputs=3, outputs=2, controller=4, memory_n=5, memory_m=3)).double()
    state = model.start(2)
    h = _heads(B=2, N=5, M=3, dtype=torch.float64)
    memory = h["memory"].requires_grad_()
    weights = h["w_prev"].requires_grad_()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def step(x: torch.Tensor, memory: torch.Tensor, weights: torch.Tensor
             ) -> tuple[torch.Tensor, ...]:
        y, s = model.step(x, state._replace(memory=memory, weights=weights))
        return y, s.memory, s.weights, s.read

    assert torch.autograd.gradcheck(step, (x, memory, weights))
    y, after = model.step(x, state._replace(memory=memory, weights=weights))
    names, params = zip(*model.named_parameters(), strict=True)
    grads = dict(zip(names, torch.autograd.grad(y.sum() + after.memory.sum(), params),
                     strict=True))
    assert all(torch.isfinite(g).all() for g in grads.values())
    # every weight but the recurrent one (h0 = 0 on the first step) gets a gradient
    assert all(g.abs().sum() > 0 for n, g in grads.items() if n != "cells.0.weight_hh")


def test_outputs_are_causal_for_both_models() -> None:
    """Changing the input at step t never changes an output before t."""
    x = torch.from_numpy(copy_example(np.ones((6, BITS), np.float32)).x)[None]  # (1, 13, 10)
    for name in ("ntm", "memory-lstm"):
        torch.manual_seed(0)
        model = models.build(name, None, {"controller": 8, "memory_n": 8 if name == "ntm" else 0})
        changed = x.clone()
        changed[0, 7:] = torch.rand(6, x.shape[-1])
        with torch.no_grad():
            a, b = model(x), model(changed)
        torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=0)
        assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_a_batch_scores_each_row_as_alone() -> None:
    torch.manual_seed(0)
    model = models.build("ntm", None, {"controller": 8, "memory_n": 8, "memory_m": 4})
    x = torch.rand(3, 5, 10)
    with torch.no_grad():
        together, alone = model(x), torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone)


def test_the_sequence_forward_equals_stepping() -> None:
    """`forward` runs the output layer once after the loop; `step` runs it at every step."""
    torch.manual_seed(0)
    model = models.build("ntm", None, {"controller": 8, "memory_n": 8, "memory_m": 4})
    x = torch.rand(2, 6, 10)
    with torch.no_grad():
        state, stepped = model.start(2), []
        for t in range(6):
            y, state = model.step(x[:, t], state)
            stepped.append(y)
        torch.testing.assert_close(model(x), torch.stack(stepped, 1))


def test_baseline_has_about_the_ntm_parameter_count() -> None:
    ntm, lstm = (models.build(n, None).num_parameters() for n in ("ntm", "memory-lstm"))
    assert abs(ntm - lstm) / ntm < 0.05


# --- generators ----------------------------------------------------------------------------------
def test_generators_are_seeded() -> None:
    for task in ("copy", "repeat", "recall"):
        a, b = (generate(MemoryConfig(task=task, seed=4), 20, 1) for _ in range(2))  # type: ignore[arg-type]
        c = generate(MemoryConfig(task=task, seed=5), 20, 1)  # type: ignore[arg-type]
        assert all(np.array_equal(p.x, q.x) and np.array_equal(p.y, q.y)
                   for p, q in zip(a, b, strict=True))
        assert not all(len(p.x) == len(q.x) and np.array_equal(p.x, q.x)
                       for p, q in zip(a, c, strict=True))
    b1, b2 = MemoryBatcher(MemoryConfig(), 4), MemoryBatcher(MemoryConfig(), 4)
    b1.next()
    b2.load_state_dict(b1.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(b1.next()[0], b2.next()[0], strict=True))


def test_training_batches_share_one_length_unless_asked_not_to() -> None:
    def lengths(same: bool) -> list[list[int]]:
        b = MemoryBatcher(MemoryConfig(same_length=same, curriculum=10), 16)
        return [(b.next()[0][2].sum((1, 2)) / BITS).int().tolist() for _ in range(12)]

    same, mixed = lengths(True), lengths(False)
    assert all(len(set(batch)) == 1 for batch in same)  # mask bits / BITS = the length
    assert any(len(set(batch)) > 1 for batch in mixed)
    assert max(same[0]) <= 2 and max(max(batch) for batch in same) <= 20  # the curriculum holds


def test_copy_layout() -> None:
    seq = np.random.default_rng(0).integers(0, 2, (4, BITS)).astype(np.float32)
    ex = copy_example(seq)
    assert ex.x.shape == (9, BITS + 2) and ex.y.shape == ex.mask.shape == (9, BITS + 1)
    np.testing.assert_array_equal(ex.x[:4, :BITS], seq)
    assert ex.x[4, BITS] == 1 and ex.x[:, BITS].sum() == 1 and not ex.x[5:].any()
    np.testing.assert_array_equal(ex.y[5:, :BITS], seq)
    assert ex.mask[5:, :BITS].all() and ex.mask.sum() == 4 * BITS


def test_repeat_layout() -> None:
    seq = np.eye(BITS, dtype=np.float32)[:3]
    ex = repeat_example(seq, 2)
    assert len(ex.x) == 3 + 1 + 2 * 3 + 1 and ex.x[3, BITS + 1] == pytest.approx(0.2)
    np.testing.assert_array_equal(ex.y[4:10, :BITS], np.concatenate([seq, seq]))
    assert ex.y[-1, BITS] == 1 and ex.y[:, BITS].sum() == 1 and ex.mask[4:].all()


def test_recall_layout() -> None:
    items = np.random.default_rng(1).integers(0, 2, (4, 3, BITS)).astype(np.float32)
    ex = recall_example(items, 1)
    assert len(ex.x) == 4 * 4 + 3 + 2 + 3
    assert ex.x[[0, 4, 8, 12], BITS].all() and ex.x[:, BITS].sum() == 4
    np.testing.assert_array_equal(ex.x[17:20, :BITS], items[1])  # the query
    assert ex.x[[16, 20], BITS + 1].all() and ex.x[:, BITS + 1].sum() == 2
    np.testing.assert_array_equal(ex.y[-3:, :BITS], items[2])  # the item after it
    assert ex.mask.sum() == 3 * BITS


def test_lines_parse_and_bad_ones_are_one_line_errors() -> None:
    assert len(parse_line("10110011 00011100", "x").x) == 5
    assert parse_line("10110011 *3", "x").y[:, BITS].sum() == 1
    ex = parse_line("10110011 | 00011100 | 11111111 ? 00011100", "x")
    np.testing.assert_array_equal(ex.y[-1, :BITS], np.ones(BITS))
    for bad in ("1011", "10110012", "10110011 | 00011100 ? 00011100", ""):
        with pytest.raises(SeqlabError, match="x: expected 8-bit vectors"):
            parse_line(bad, "x")
    with pytest.raises(SeqlabError, match=r"data\.min_len"):
        MemoryConfig(task="recall", min_len=1)


# --- the CLI -----------------------------------------------------------------------------------
def test_train_eval_predict_plot_round_trip(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ntm"
    assert run("train", "--model", "ntm", "data.task=copy", *TINY, *TRAIN, "--out", out) == 0
    final = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()
             if '"final"' in ln and '"test"' in ln][-1]
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("bit_errors_per_sequence", "bits_per_sequence", "sequence_accuracy"):
        assert scored[key] == final[key]
    assert run("eval", out, "--data", "copy:6-7", "--json") == 0
    longer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert longer["sequences"] == 1000 and longer["bits_per_sequence"] > 0
    (tmp_path / "in.txt").write_text("10110011 00011100\n11110000\n")
    assert run("predict", out, "--input", tmp_path / "in.txt") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [len(ln.split()) for ln in lines] == [2, 1]
    assert run("memory-plot", out, "--out", tmp_path / "w.png", "--length", "3") == 0
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
    assert run("eval", out, "--data", "copy:bad") == 2


def test_the_baseline_trains_and_has_nothing_to_draw(tmp_path: Path, capsys) -> None:
    out = tmp_path / "lstm"
    assert run("train", "--model", "memory-lstm", "data.task=recall", "model.controller=8",
               *TRAIN, "--out", out) == 0
    assert run("memory-plot", out, "--out", tmp_path / "w.png") == 2
    assert "no memory to draw" in capsys.readouterr().err
    assert not (tmp_path / "w.png").exists()
