"""Kneser-Ney n-gram: hand-counted values, a naive reference, normalisation, entropy rate."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from seqlab.evaluate import evaluate
from seqlab.models.ngram import NGramConfig, NGramLM
from tests.conftest import char_vocab, markov2_source, sample_markov2


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
        nn = Counter(min(c, 4) for c in counts.values() if c > 0)
        if any(nn[j] == 0 for j in (1, 2, 3, 4)):
            return list(fallback)
        y = nn[1] / (nn[1] + 2 * nn[2])
        d = [j - (j + 1) * y * nn[j + 1] / nn[j] for j in (1, 2, 3)]
        return [dj if 0 < dj <= j else fb for j, dj, fb in zip((1, 2, 3), d, fallback)]

    D = [None] + [discounts(adjusted[k]) for k in range(1, n + 1)]

    def prob(w: int, h: tuple) -> float:
        if len(h) == 0:
            lower = 1.0 / V
        else:
            lower = prob(w, h[1:])
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
    assert np.allclose(m.log_prob(test), ref, rtol=0, atol=1e-12)


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
    logits, state = m.step(v.eos_id, m.initial_state())
    stepped = []
    for tok in test:
        stepped.append(float(logits[tok]))
        logits, state = m.step(int(tok), state)
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
