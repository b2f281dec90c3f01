"""Every registered family, through the protocol only: the invariants they all share.

The tables come from the registries (`seqlab.tasks`, `seqlab.models.FAMILIES`): a model name or
family with no case here fails the suite instead of being skipped. Language models: step-by-step
logits equal the full log_prob pass; priming equals stepping; save/load round-trips exactly;
sampling is seeded; top-k = 1 equals greedy. Every other family: its checkpoint reloads through
`models.load` and scores identically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import char_vocab, stepped_log_probs

from seqlab import models, tasks
from seqlab.run import Run, TrainConfig

TINY: dict[str, dict] = {
    "ngram": {"order": 3},
    "hmm": {"n_states": 3, "n_iter": 5},
    "rnn": {"emb_dim": 8, "hidden": 12, "layers": 2},
    "lstm": {"emb_dim": 8, "hidden": 12, "layers": 2, "dropout": 0.1},
    "gru": {"emb_dim": 8, "hidden": 12, "layers": 1, "tie_weights": False},
    "window": {"context": 3, "emb_dim": 4, "hidden": 12},
    "tcn": {"emb_dim": 8, "channels": 8, "levels": 3},
    "wavenet": {"emb_dim": 8, "channels": 8, "skip_channels": 8, "levels": 3, "blocks": 2},
    "transformer": {"layers": 2, "heads": 2, "dim": 8, "block_size": 8},  # windows slide
}
LM_NAMES = list(tasks.get("lm").models)  # every registered language model


def _seq2seq() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from tests.seq2seq.conftest import reversal_pairs, tiny_model

    from seqlab.seq2seq.data import Pairs

    model = tiny_model()
    pairs = Pairs.encode(reversal_pairs(12, seed=3), model.vocab)
    return model, lambda m: m.log_prob(pairs)


def _head() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from seqlab.models.heads import HeadConfig, SequenceHead

    torch.manual_seed(0)
    model = SequenceHead(HeadConfig(vocab=2, outputs=2, output="sequence", loss="cross_entropy"))
    x = torch.randint(0, 2, (3, 7))
    return model, lambda m: m.eval()(x).detach().numpy()


def _kalman() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from seqlab.models.kalman import LinearGaussianSSM, constant_velocity

    X = LinearGaussianSSM(**constant_velocity()).sample(60, random_state=0)[1]
    model = LinearGaussianSSM(n_dim_state=4, n_iter=3).fit(X)
    return model, lambda m: m.log_prob(X)


def _particle() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from seqlab.models.kalman import LinearGaussianSSM, constant_velocity
    from seqlab.models.particle import BootstrapParticleFilter, linear_gaussian

    params = constant_velocity()
    X = LinearGaussianSSM(**params).sample(30, random_state=0)[1]
    model = BootstrapParticleFilter(linear_gaussian(**params), n_particles=64, random_state=0)
    return model, lambda m: m.log_prob(X)


def _treenet() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from seqlab.data.trees import parse_tree
    from seqlab.models.treenet import TreeNet, TreeNetConfig
    from seqlab.tasks.trees import build_vocab, make_batch

    torch.manual_seed(0)
    trees = [parse_tree("(3 (2 a) (4 (3 good) (2 film)))"), parse_tree("(1 (0 bad) (2 film))")]
    vocab = build_vocab(trees, classes=5)
    model = TreeNet(TreeNetConfig(encoder="childsum", emb_dim=4, hidden=6), vocab)
    batch = make_batch(trees, vocab)
    return model, lambda m: m.eval()(batch)[0].detach().numpy()


def _tagger() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from seqlab.models.tagger import SequenceTagger, TaggerConfig
    from seqlab.nn.recurrent import StackConfig
    from seqlab.tasks.tagging import Sentence, TaggingConfig, build_vocab, encode

    torch.manual_seed(0)
    sents = [Sentence(["EU", "rejects", "it"], ["B-ORG", "O", "O"], [1, 2, 3]),
             Sentence(["Peter"], ["B-PER"], [5])]
    vocab = build_vocab(sents, TaggingConfig(path="t.txt"))
    cfg = TaggerConfig(word_dim=4, char_dim=3, char_hidden=3,
                       recurrent=StackConfig(hidden=5, layers=1, bidirectional=True))
    model = SequenceTagger(cfg, vocab)
    batch = encode([s.words for s in sents], vocab)
    return model, lambda m: np.concatenate([m.eval().emissions(batch).detach().numpy(),
                                            m.marginals(batch).numpy()], -1)


def _music() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from seqlab.tasks.music import KEYS, make_batch

    torch.manual_seed(0)
    model = models.build("music-nade", None, {"recurrent": {"hidden": 6, "layers": 1},
                                              "nade_hidden": 5})
    roll = (np.random.default_rng(0).random((7, KEYS)) < 0.1).astype(np.uint8)
    return model, lambda m: m.frame_log_prob(make_batch([roll])).numpy()


def _ntm() -> tuple[Any, Callable[[Any], np.ndarray]]:
    torch.manual_seed(0)
    model = models.build("ntm", None, {"controller": 8, "memory_n": 8, "memory_m": 4})
    x = torch.rand(2, 6, 10)
    return model, lambda m: m.eval()(x).detach().numpy()


def _im2seq() -> tuple[Any, Callable[[Any], np.ndarray]]:
    from seqlab.data.vocab import Vocab
    from seqlab.models.im2seq import Im2Seq, Im2SeqConfig
    from seqlab.seq2seq.data import SPECIALS, PairVocab, build_vocab
    from seqlab.tasks.image2seq import _encode

    torch.manual_seed(0)
    forms = [["x", "^", "{", "2", "}"], ["a", "+", "b"]]
    vocab = PairVocab(Vocab("word", list(SPECIALS)), build_vocab(forms, "word"))
    model = Im2Seq(Im2SeqConfig(hidden=8, channels=8, emb_dim=4, dropout=0.0), vocab)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (model.config.height, w), dtype=np.uint8) for w in (32, 48)]
    batch = _encode(images, forms, vocab, "tiny", 8).batch([0, 1])
    return model, lambda m: m.eval()(batch).detach().numpy()


def _audio() -> tuple[Any, Callable[[Any], np.ndarray]]:
    torch.manual_seed(0)
    model = models.build("wavenet-audio", None, {"channels": 4, "emb_dim": 4, "levels": 3,
                                                 "skip_channels": 4})
    codes = np.random.default_rng(0).integers(0, 256, 50)
    return model, lambda m: m.log_prob(codes)


# Families outside the language-model task: a tiny instance and a scoring function.
OTHERS: dict[str, Callable[[], tuple[Any, Callable[[Any], np.ndarray]]]] = {
    "seq2seq": _seq2seq, "head": _head, "kalman": _kalman, "particle": _particle,
    "treenet": _treenet, "tagger": _tagger, "music": _music, "ntm": _ntm,
    "im2seq": _im2seq, "audio": _audio}


def test_every_registered_model_and_family_has_a_case() -> None:
    assert [n for n in LM_NAMES if n not in TINY] == [], "add a TINY entry for each new LM"
    lm_families = {family for family, _ in tasks.get("lm").models.values()}
    assert sorted(set(models.FAMILIES) - lm_families - set(OTHERS)) == [], (
        "add a case to OTHERS for each new family")


@pytest.mark.parametrize("family", sorted(OTHERS))
def test_other_families_reload_through_the_registry(family: str, tmp_path) -> None:
    model, score = OTHERS[family]()
    model.save(tmp_path / "m.safetensors")
    again = models.load(tmp_path / "m.safetensors")
    assert type(again) is type(model)
    np.testing.assert_array_equal(score(again), score(model))


@pytest.fixture(scope="module")
def data() -> tuple:
    rng = np.random.default_rng(0)
    v = char_vocab("abcde")
    train = rng.integers(1, len(v), size=600)
    return v, train, rng.integers(0, len(v), size=80)


@pytest.fixture(scope="module", params=LM_NAMES)
def fitted(request: pytest.FixtureRequest, data: tuple):
    torch.manual_seed(0)
    v, train, _ = data
    m = models.build(request.param, v, TINY[request.param])
    cfg = TrainConfig(max_steps=6, batch_size=2, seq_len=8, eval_interval=3, progress=False)
    return m.fit(train, run=Run(train=cfg))


def _stepped(m, ids) -> np.ndarray:
    return stepped_log_probs(m, ids)[0]


def test_step_equals_full_pass(fitted, data) -> None:
    _, _, test = data
    lp = fitted.log_prob(test)
    assert lp.shape == (len(test),) and np.all(lp < 0)
    np.testing.assert_allclose(_stepped(fitted, test), lp, atol=1e-5)


def test_prime_equals_stepping(fitted, data) -> None:
    _, _, test = data
    logits, _ = fitted.prime(test[:10])
    ref, state = fitted.step(fitted.vocab.eos_id, fitted.initial_state())
    for tok in test[:10]:
        ref, state = fitted.step(int(tok), state)
    np.testing.assert_allclose(torch.log_softmax(logits.double(), -1),
                               torch.log_softmax(ref.double(), -1), atol=1e-5)


def test_save_load_roundtrip(fitted, data, tmp_path) -> None:
    _, _, test = data
    fitted.save(tmp_path / "m.safetensors")
    again = models.load(tmp_path / "m.safetensors")
    assert type(again) is type(fitted)
    np.testing.assert_array_equal(again.log_prob(test), fitted.log_prob(test))


def test_sampling_is_seeded_and_topk1_is_greedy(fitted) -> None:
    a = fitted.generate(30, seed=5, temperature=1.0)
    assert np.array_equal(a, fitted.generate(30, seed=5, temperature=1.0))
    assert a.min() >= 0 and a.max() < len(fitted.vocab)
    assert np.array_equal(fitted.generate(30, seed=1, top_k=1), fitted.generate(30, greedy=True))


def test_log_prob_respects_lengths(fitted, data) -> None:
    _, _, test = data
    joint = fitted.log_prob(test, lengths=[30, 50])
    np.testing.assert_allclose(
        joint, np.concatenate([fitted.log_prob(test[:30]), fitted.log_prob(test[30:])]), atol=1e-6)
