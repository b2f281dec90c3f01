"""The image2seq task: the formula grammar and renderer, the CNN encoder under the seq2seq
decoder (padding invariance and teacher forcing = stepping in float64), image match, and the
CLI round trip train -> eval -> predict -> transcribe."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seqlab.cli import main
from seqlab.data import formulas
from seqlab.data.vocab import Vocab
from seqlab.models.im2seq import Im2Seq, Im2SeqConfig
from seqlab.seq2seq.data import BOS_ID, SPECIALS, Batch, PairVocab, build_vocab
from seqlab.seq2seq.search import DecodeConfig
from seqlab.tasks.image2seq import ImageSet, _encode, image_match, transcribe

GRAMMAR = formulas.GrammarConfig(max_depth=2, max_tokens=30)


@pytest.fixture(scope="module")
def forms() -> list[list[str]]:
    return formulas.generate(12, seed=7, cfg=GRAMMAR)


@pytest.fixture(scope="module")
def images(forms: list[list[str]]) -> ImageSet:
    vocab = PairVocab(Vocab("word", list(SPECIALS)), build_vocab(forms, "word"))
    ims = [formulas.place(formulas.render(" ".join(f)), GRAMMAR.height) for f in forms]
    return _encode(ims, forms, vocab, "test", 64)


def double(batch: Batch) -> Batch:
    return replace(batch, src=batch.src.double())


def tiny_model(vocab: PairVocab, **over: object) -> Im2Seq:
    torch.manual_seed(0)
    cfg = Im2SeqConfig(**{"hidden": 16, "channels": 16, "emb_dim": 8, "dropout": 0.0,
                           "max_tgt_len": 32, **over})
    return Im2Seq(cfg, vocab).double().eval()


def test_generator_is_deterministic_and_every_formula_renders(forms: list[list[str]]) -> None:
    assert formulas.generate(12, seed=7, cfg=GRAMMAR) == forms
    assert formulas.generate(12, seed=8, cfg=GRAMMAR) != forms
    assert formulas.generate(5, seed=7, cfg=GRAMMAR) == forms[:5]  # a prefix: one stream
    for f in forms:
        assert 1 <= len(f) <= GRAMMAR.max_tokens
        ink = formulas.render(" ".join(f))
        assert ink is not None and ink.shape[0] <= GRAMMAR.height - 2 * formulas.MARGIN
        canvas = formulas.place(ink, GRAMMAR.height)
        assert canvas.shape[1] % formulas.WIDTH_STEP == 0 and canvas.shape[1] <= 256
    excluded = formulas.generate(12, seed=7, cfg=GRAMMAR,
                                 exclude=frozenset(" ".join(f) for f in forms[:3]))
    assert not {" ".join(f) for f in forms[:3]} & {" ".join(f) for f in excluded}


def test_cache_round_trips_without_pickle(images: ImageSet, tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    formulas.save_images(path, images.images, images.formulas)
    ims, forms = formulas.load_images(path)
    assert forms == images.formulas
    assert all(np.array_equal(a, b) for a, b in zip(ims, images.images, strict=True))


def test_image_match_is_one_for_the_same_rendering_and_zero_otherwise() -> None:
    same = [["x", "^", "{", "2", "}"], ["\\frac", "{", "a", "}", "{", "b", "}"]]
    assert image_match(same, same) == 1.0
    assert image_match([["{", "x", "}", "^", "{", "2", "}"]], [same[0]]) == 1.0  # same pixels
    other = [["x", "_", "{", "2", "}"], ["a", "+", "b"]]
    assert image_match(other, same) == 0.0
    assert image_match([["\\frac", "{", "a"]], [same[1]]) == 0.0  # does not render: a miss


@pytest.mark.parametrize("feeding", [True, False])
def test_padding_never_changes_an_output(images: ImageSet, feeding: bool) -> None:
    model = tiny_model(images_vocab(images), input_feeding=feeding)
    idx = np.argsort(images.src_lengths)[[0, 5, -1]]  # narrow, middle, widest
    assert len(set(images.src_lengths[idx].tolist())) == 3
    with torch.no_grad():
        together = model(double(images.batch(idx)))  # (3, T, V)
        for row, i in enumerate(idx):
            alone = model(double(images.batch([i])))[0]
            n = len(images.ids[i]) + 1
            torch.testing.assert_close(together[row, :n], alone[:n], rtol=0, atol=1e-10)
    cfg = DecodeConfig(strategy="beam", beam_size=3, batch_size=3)
    batched = transcribe(model, [images.images[i] for i in idx], cfg)
    one = DecodeConfig(strategy="beam", beam_size=3, batch_size=1)
    single = transcribe(model, [images.images[i] for i in idx], one)
    assert [h[0].tokens for h in batched] == [h[0].tokens for h in single]


@pytest.mark.parametrize("feeding", [True, False])
def test_teacher_forcing_equals_stepping(images: ImageSet, feeding: bool) -> None:
    model = tiny_model(images_vocab(images), input_feeding=feeding)
    batch = double(images.batch([0, 1, 2]))
    with torch.no_grad():
        full = model(batch).log_softmax(-1)  # (B, T, V)
        state = model.encode(batch.src, batch.src_len)
        for t, prev in enumerate(batch.tgt_in.unbind(1)):
            h, state, weights = model.decoder.step(prev, state)  # what the searches drive
            logp = model.decoder.logits(h).log_softmax(-1)
            torch.testing.assert_close(logp, full[:, t], rtol=0, atol=1e-10)
            assert weights is not None
            torch.testing.assert_close(weights.sum(-1), torch.ones(3, dtype=torch.float64))
    assert bool((batch.tgt_in[:, 0] == BOS_ID).all())


def test_the_ablation_has_no_attention_and_still_sees_the_image(images: ImageSet) -> None:
    model = tiny_model(images_vocab(images), attention="none")
    assert model.decoder.attention is None
    with torch.no_grad():
        a = model(double(images.batch([0])))
        blank = double(images.batch([0]))
        blank.src.zero_()
        assert not torch.allclose(a, model(blank))


def images_vocab(images: ImageSet) -> PairVocab:
    return PairVocab(Vocab("word", list(SPECIALS)), build_vocab(images.formulas, "word"))


def run(*args: object) -> int:
    return main([str(a) for a in args])


def test_cli_train_eval_predict_transcribe_and_reload(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run("train", "--model", "im2latex", "--data", "generate", "--out", out,
               "data.n_train=24", "data.n_valid=4", "data.n_test=4", "data.max_tokens=20",
               "model.hidden=16", "model.channels=16", "model.emb_dim=8",
               "model.decode.beam_size=2", "model.max_tgt_len=22",
               "train.max_steps=4", "train.batch_size=8",
               "train.eval_interval=4", "train.progress=false", "train.threads=1") == 0
    assert list((out / "data").glob("formulas-*.npz"))  # the rendered images are cached
    final = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    final_test = next(r for r in final if r.get("kind") == "final" and r["split"] == "test")
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    scored = json.loads(capsys.readouterr().out)
    for key in ("image_match", "exact_match", "bleu", "token_accuracy", "bits_per_token"):
        assert scored[key] == pytest.approx(final_test[key], abs=1e-12), key  # reload = same
    assert 0 <= scored["image_match"] <= 1 and scored["images"] == 4
    image = formulas.place(formulas.render("x ^ { 2 } + y"), 32)
    png = tmp_path / "f.png"
    Image.fromarray(255 - image).save(png)  # dark ink on a white page, as users have them
    (tmp_path / "list.txt").write_text(f"{png}\n")
    assert run("predict", out, "--input", tmp_path / "list.txt") == 0
    predicted = capsys.readouterr().out.splitlines()
    assert len(predicted) == 1
    assert run("transcribe", out, png, "--greedy", "--attention-plot", tmp_path / "att") == 0
    assert (tmp_path / "att" / "f.attention.png").stat().st_size > 0


def test_bad_image_is_a_one_line_error(tmp_path: Path) -> None:
    from seqlab.errors import SeqlabError

    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    with pytest.raises(SeqlabError, match="expected an image file"):
        formulas.read_image(bad, 32, 256)
    with pytest.raises(SeqlabError, match=r"formulas\.tsv"):
        formulas.read_folder(tmp_path, "formulas.tsv", 32, 256)
