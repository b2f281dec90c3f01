"""Kneser-Ney n-gram: hand-counted values, a naive reference, normalisation, entropy rate."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import (
    SHARED_DATA,
    char_vocab,
    markov2_source,
    sample_markov2,
    stepped_log_probs,
)

from seqlab.data.vocab import Vocab, iter_units, iter_units_from_text
from seqlab.errors import SeqlabError
from seqlab.models.ngram import NGramConfig, NGramLM, kenlm_discounts
from seqlab.scoring import evaluate


def _fit(tokens: str, order: int, symbols: str = "abc", **kw: object) -> NGramLM:
    v = char_vocab(symbols)
    return NGramLM(NGramConfig(order=order, **kw), v).fit(v.encode(tokens))


def test_hand_counted_bigram() -> None:
    # Corpus "abab" + "ca" after a virtual newline: bigrams \na ab ba ab bc ca.
    # Counts of counts are too thin for the formula, so the fallback discounts 0.5/1/1.5 apply.
    # Unigram continuation counts: a <- {\n, b, c} = 3, b <- {a} = 1, c <- {b} = 1; total 5;
    # gamma = (1.5 + 0.5 + 0.5) / 5 = 0.5, so p1(a) = 1.5/5 + 0.5/5 = 0.4, p1(b) = p1(c) = 0.2,
    # p1(\n) = p1(<unk>) = 0.1.
    m = _fit("ababca", order=2)
    v = m.vocab
    a, b, c, nl, unk = (v.index[x] for x in ("a", "b", "c", "\n", "<unk>"))
    p = m.distribution
    assert p(())[[a, b, c, nl, unk]] == pytest.approx([0.4, 0.2, 0.2, 0.1, 0.1], abs=1e-12)
    # after "a": only "ab" (count 2, D=1): p(b|a) = 1/2 + 0.5 * 0.2; p(a|a) = 0.5 * 0.4
    assert p((a,))[[b, a, c, nl, unk]] == pytest.approx([0.6, 0.2, 0.1, 0.05, 0.05], abs=1e-12)
    # after "b": "ba", "bc" (count 1 each, D=0.5): p(a|b) = 0.25 + 0.5 * 0.4
    assert p((b,))[[a, c, b]] == pytest.approx([0.45, 0.35, 0.1], abs=1e-12)
    # after the virtual newline: "\na" (count 1): p(a|\n) = 0.5 + 0.5 * 0.4
    assert p((nl,))[a] == pytest.approx(0.7, abs=1e-12)
    # an unseen context backs off entirely to the unigram
    assert np.allclose(p((unk,)), p(()), atol=1e-15)
    # log_prob of the training text itself, token by token
    expected = np.log([0.7, 0.6, 0.45, 0.6, 0.35, p((c,))[a]])
    assert np.allclose(m.log_prob(v.encode("ababca")), expected, atol=1e-12)


def naive_kn(tokens: list[int], V: int, n: int, boundary: int, fallback=(0.5, 1.0, 1.5)):
    """Textbook interpolated modified KN with dicts of tuples (a slow, independent reference)."""
    s = [boundary, *tokens]
    grams = [Counter() for _ in range(n + 1)]  # grams[k][tuple] = raw count
    for t in range(1, len(s)):
        for k in range(1, n + 1):
            if t - k + 1 >= 0:
                grams[k][tuple(s[t - k + 1 : t + 1])] += 1
    adjusted = [Counter() for _ in range(n + 1)]
    adjusted[n] = grams[n]
    for k in range(1, n):
        left = defaultdict(set)
        for g in grams[k + 1]:
            left[g[1:]].add(g[0])
        for g in grams[k]:
            adjusted[k][g] = len(left[g])
        if k >= 2 and len(s) >= k:
            # the k-gram opening with the virtual boundary has no left extension: counts once
            adjusted[k][tuple(s[:k])] += 1

    def discounts(counts: Counter) -> list[float]:
        # KenLM's rule (adjust_counts.cc): n_j counts n-grams with adjusted count exactly j;
        # n_1..n_3 must be non-zero and every D_j in [0, j], else the whole order falls back.
        nn = Counter(c for c in counts.values() if c > 0)
        if any(nn[j] == 0 for j in (1, 2, 3)):
            return list(fallback)
        y = nn[1] / (nn[1] + 2 * nn[2])
        d = [j - (j + 1) * y * nn[j + 1] / nn[j] for j in (1, 2, 3)]
        ok = all(0 <= dj <= j for j, dj in zip((1, 2, 3), d, strict=True))
        return d if ok else list(fallback)

    D = [None] + [discounts(adjusted[k]) for k in range(1, n + 1)]

    def prob(w: int, h: tuple) -> float:
        lower = 1.0 / V if len(h) == 0 else prob(w, h[1:])
        k = len(h) + 1
        cont = {g[-1]: c for g, c in adjusted[k].items() if g[:-1] == h}
        total = sum(cont.values())
        if total == 0:
            return lower
        d = D[k]
        gamma = sum(d[min(c, 3) - 1] for c in cont.values()) / total
        c = cont.get(w, 0)
        return (c - d[min(c, 3) - 1] if c else 0.0) / total + gamma * lower

    return prob


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_naive_reference(order: int) -> None:
    rng = np.random.default_rng(order)
    v = char_vocab("abcd")
    train = rng.choice([2, 3, 4, 5], size=300, p=[0.4, 0.3, 0.2, 0.1])
    test = rng.choice([0, 2, 3, 4, 5], size=60)
    m = NGramLM(NGramConfig(order=order), v).fit(train)
    prob = naive_kn(list(train), len(v), order, v.eos_id)
    s = [v.eos_id, *test]
    ref = [math.log(prob(int(s[t]), tuple(s[max(0, t - order + 1) : t]))) for t in range(1, len(s))]
    # lmplz computes discounts in float32 (and so does the model); the reference in float64
    assert np.allclose(m.log_prob(test), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reset", [False, True])
def test_distributions_sum_to_one(reset: bool) -> None:
    rng = np.random.default_rng(0)
    v = char_vocab("abcdef")
    train = rng.integers(1, len(v), size=2000)
    m = NGramLM(NGramConfig(order=4, reset_at_eos=reset), v).fit(train)
    contexts = [(), (1,), (0, 0, 0), tuple(train[10:13]), tuple(train[100:103]), (7, 7, 0)]
    for ctx in contexts:
        p = m.distribution(ctx)
        assert p.min() > 0
        assert abs(p.sum() - 1) < 1e-9


@pytest.mark.parametrize("reset", [False, True])
def test_step_equals_log_prob(reset: bool) -> None:
    rng = np.random.default_rng(1)
    v = char_vocab("abcdef")
    m = NGramLM(NGramConfig(order=5, reset_at_eos=reset), v).fit(rng.integers(1, len(v), 3000))
    test = rng.integers(0, len(v), 400)
    stepped, _, _ = stepped_log_probs(m, test)
    assert np.allclose(stepped, m.log_prob(test), atol=1e-12)


def test_reset_at_eos_ignores_previous_sentence() -> None:
    v = char_vocab("abc")
    m = NGramLM(NGramConfig(order=3, reset_at_eos=True), v).fit(v.encode("ab\nca\nab\ncb\n"))
    # the token after "\n" depends only on "\n", whatever came before it
    assert np.array_equal(m.log_prob(v.encode("a\nc"))[-1:], m.log_prob(v.encode("b\nc"))[-1:])


def test_lengths_are_independent_sequences() -> None:
    v = char_vocab("abc")
    m = NGramLM(NGramConfig(order=3), v).fit(v.encode("abcabcab"))
    x = v.encode("abcbca")
    joint = m.log_prob(x, lengths=[3, 3])
    assert np.allclose(joint, np.concatenate([m.log_prob(x[:3]), m.log_prob(x[3:])]))
    with pytest.raises(ValueError, match="sum to len"):
        m.log_prob(x, lengths=[2, 2])


def test_save_load_roundtrip(tmp_path) -> None:
    m = _fit("abcabcaabbcc" * 5, order=3)
    m.save(tmp_path / "m.safetensors")
    m2 = NGramLM.load(tmp_path / "m.safetensors")
    x = m.vocab.encode("abcacb\nba")
    assert np.array_equal(m.log_prob(x), m2.log_prob(x))


def test_known_entropy_rate() -> None:
    """An order-2 Markov source (each symbol depends on the previous two), fitted by the n-gram
    of matching order (n = 3: two tokens of context), lands within 0.02 bits of the entropy rate.
    """
    P, H = markov2_source(8, seed=0)
    v = char_vocab("abcdefgh")
    train = sample_markov2(P, 200_000, seed=1) + 2  # ids 2..9 are the symbols
    test = sample_markov2(P, 100_000, seed=2) + 2
    m = NGramLM(NGramConfig(order=3), v).fit(train)
    bits = evaluate(m, test).bits_per_token
    assert abs(bits - H) < 0.02, (bits, H)


# --- KenLM fidelity ---------------------------------------------------------------------------
# tests/data/kenlm holds lmplz ARPA files and per-token `query` log10 probabilities for three
# small cases; benchmarks/classical/make_kenlm_fixture.py made them (see its docstring).
KENLM = Path(__file__).resolve().parents[1] / "data" / "kenlm"
CASES = [("word3", "word", 3), ("char5", "char", 5), ("synth3", "word", 3)]


def _kenlm_case(name: str, level: str, order: int) -> tuple[NGramLM, np.ndarray, np.ndarray]:
    """seqlab's model fitted on the case's training text, the test ids, and KenLM's log10 p."""
    train, test = (KENLM / f"{name}.{s}.txt" for s in ("train", "test"))
    v = Vocab.build(iter_units(train, level), level)
    ids = np.concatenate([v.encode_units(c) for c in iter_units(train, level)])
    m = NGramLM(NGramConfig(order=order, reset_at_eos=True), v).fit(ids)
    test_ids = np.concatenate([v.encode_units(c) for c in iter_units(test, level)])
    ref = np.loadtxt(KENLM / f"{name}.query.tsv", usecols=1, comments=None, delimiter="\t")
    return m, test_ids, ref


@pytest.mark.parametrize(("name", "level", "order"), CASES)
def test_matches_kenlm_query_per_token(name: str, level: str, order: int) -> None:
    m, test, ref = _kenlm_case(name, level, order)
    ours = m.log_prob(test) / math.log(10)
    assert len(ours) == len(ref)
    # lmplz works in float32: agreement to float32 precision, token by token
    assert np.allclose(ours, ref, rtol=0, atol=2e-6)
    assert 10 ** -ours.mean() == pytest.approx(10 ** -ref.mean(), rel=1e-6)  # perplexity


def _arpa_table(path: Path) -> dict[str, tuple[float, float]]:
    table, k = {}, 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            k = int(line[1:-7])
        elif k and line and not line.startswith("\\"):
            f = line.split("\t")
            table[f[1]] = (float(f[0]), float(f[2]) if len(f) > 2 else 0.0)
    return table


@pytest.mark.parametrize(("name", "level", "order"), CASES)
def test_written_arpa_equals_lmplz(name: str, level: str, order: int, tmp_path: Path) -> None:
    m, _, _ = _kenlm_case(name, level, order)
    m.write_arpa(tmp_path / "ours.arpa")
    ours, theirs = _arpa_table(tmp_path / "ours.arpa"), _arpa_table(KENLM / f"{name}.arpa")
    assert ours.keys() == theirs.keys()  # the same n-grams, <s> and </s> spelled the same
    diff = np.array([np.subtract(ours[g], theirs[g]) for g in theirs])
    assert np.abs(diff).max() < 2e-6  # probabilities and back-offs, log10


@pytest.mark.parametrize(("name", "level", "order"), CASES)
def test_read_lmplz_arpa_scores_like_query(name: str, level: str, order: int) -> None:
    m = NGramLM.read_arpa(KENLM / f"{name}.arpa", level=level)
    assert m.config.order == order and m.config.reset_at_eos
    text = (KENLM / f"{name}.test.txt").read_text(encoding="utf-8")
    ref = np.loadtxt(KENLM / f"{name}.query.tsv", usecols=1, comments=None, delimiter="\t")
    assert np.allclose(m.log_prob(m.vocab.encode(text)) / math.log(10), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("name", "level", "order"), CASES)
def test_discounts_equal_lmplz(name: str, level: str, order: int) -> None:
    m, _, _ = _kenlm_case(name, level, order)
    theirs = np.loadtxt(KENLM / f"{name}.discounts.tsv", delimiter="\t", ndmin=2)[:, 1:]
    assert np.allclose(m.discounts_, theirs, rtol=5e-6, atol=0)  # lmplz prints 6 digits


def test_lmplz_flush_rule_matters_for_synth3() -> None:
    """lmplz records the n-grams still pending after the last one in its suffix-sorted stream
    with raw counts, not adjusted ones; in synth3 that moves order 2 off the fallback."""
    m, _, _ = _kenlm_case("synth3", "word", 3)
    assert not np.allclose(kenlm_discounts(m.counts_[1], (0.5, 1.0, 1.5)), m.discounts_[1])


@pytest.mark.parametrize("reset", [False, True])
@pytest.mark.parametrize("level", ["word", "char"])
def test_arpa_round_trip(reset: bool, level: str, tmp_path: Path) -> None:
    text = "the cat sat\n\non the mat\tnow\nthe cat ate the rat \n" * 3
    v = Vocab.build(iter_units_from_text(text, level), level)
    m = NGramLM(NGramConfig(order=4, reset_at_eos=reset), v).fit(v.encode(text))
    m.write_arpa(tmp_path / "m.arpa")
    back = NGramLM.read_arpa(tmp_path / "m.arpa", level=level)
    assert back.config.reset_at_eos == reset
    probe = "the rat sat on the cat\nmat the\n"
    assert np.allclose(back.log_prob(back.vocab.encode(probe)), m.log_prob(v.encode(probe)),
                       rtol=0, atol=1e-8)
    back.save(tmp_path / "b.safetensors")  # a model read from ARPA has tables but no counts
    again = NGramLM.load(tmp_path / "b.safetensors")
    assert np.array_equal(again.log_prob(back.vocab.encode(probe)),
                          back.log_prob(back.vocab.encode(probe)))


def test_uninterpolated_unigrams_give_unk_the_leftover_mass() -> None:
    v = char_vocab("abc")
    text = v.encode("abcab\ncab\nbca\n")
    m = NGramLM(NGramConfig(order=2, interpolate_unigrams=False), v).fit(text)
    p = m.distribution(())
    a, d = m.counts_[0], m.discounts_[0]
    gamma = sum(d[min(c, 3) - 1] for c in a if c > 0) / a.sum()
    assert p[v.unk_id] == pytest.approx(gamma, abs=1e-12)  # the only zeroton
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("content", "match"), [
    ("no header\n", "sections match its header"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\ta\n\\end\\\n", "sections match its header"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\nx\ta\n\\end\\\n", "expected numbers"),
    ("\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1\ta\t0\n\n\\2-grams:\n-1\tb a\n\\end\\\n",
     "expected words of the given vocabulary"),
    ("\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1\t</s>\n0\t<s>\t-1\n\n\\2-grams:\n"
     "-1\t</s> <s>\n\\end\\\n", "<s> only first"),
])
def test_bad_arpa_is_a_clear_error(content: str, match: str, tmp_path: Path) -> None:
    (tmp_path / "bad.arpa").write_text(content, encoding="utf-8")
    with pytest.raises(SeqlabError, match=match):
        NGramLM.read_arpa(tmp_path / "bad.arpa")


def test_counts_only_checkpoint_rebuilds_the_tables(tmp_path: Path) -> None:
    """A checkpoint with counts and discounts but no back-off tables (seqlab's first n-gram
    format) is rebuilt by looking suffixes up in the tables: the same model."""
    from seqlab.io import load_tensors, save_tensors

    m = _fit("abcabcaabbcc\nacb\n" * 5, order=4, reset_at_eos=True)
    m.save(tmp_path / "m.safetensors")
    tensors, meta = load_tensors(tmp_path / "m.safetensors")
    save_tensors(tmp_path / "old.safetensors",
                 {k: v for k, v in tensors.items() if not k.startswith(("logp", "logbo"))}, meta)
    old = NGramLM.load(tmp_path / "old.safetensors")
    x = m.vocab.encode("abcacb\nba")
    assert np.allclose(old.log_prob(x), m.log_prob(x), rtol=0, atol=1e-12)


@pytest.mark.data
@pytest.mark.slow
def test_penn_treebank_published_baselines(tmp_path: Path) -> None:
    """Word level: the sentence-mode KN 5-gram gives the published KN5 test perplexity, 141.2
    (Mikolov et al. 2011). Character level: the 9-gram beats the backoff 9-gram's 1.47 bits
    per character (Mikolov's simple-examples). benchmarks/classical/ptb.py prints the table."""
    from seqlab.data.corpus import DataConfig, prepare

    ptb = SHARED_DATA / "ptb"
    results = {}
    for prefix, order in (("ptb", 5), ("ptb.char", 9)):
        data = prepare(DataConfig(path=str(ptb / f"{prefix}.train.txt"),
                                  valid=str(ptb / f"{prefix}.valid.txt"),
                                  test=str(ptb / f"{prefix}.test.txt"), level="word"),
                       tmp_path / prefix)
        m = NGramLM(NGramConfig(order=order, reset_at_eos=True), data.vocab).fit(data.train)
        results[prefix] = evaluate(m, data.test)
    assert results["ptb"].tokens == 82_430  # the usual count: words plus one <eos> per line
    assert results["ptb"].perplexity == pytest.approx(141.2, abs=0.1)
    assert results["ptb.char"].bits_per_token < 1.47
