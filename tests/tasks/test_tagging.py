"""The tagging task: CoNLL and CoNLL-U readers, one-line errors, conlleval span scoring on
hand-worked cases, and a small BiLSTM-CRF trained, scored and run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab import models
from seqlab.cli import main
from seqlab.errors import SeqlabError
from seqlab.tasks.tagging import (
    SpanCounts,
    TaggingConfig,
    TagVocab,
    build_vocab,
    check_gold,
    chunks,
    detect_scheme,
    encode,
    read_sentences,
    score,
)

TINY = {"word_dim": 16, "char_dim": 8, "char_hidden": 8, "recurrent.hidden": 16,
        "recurrent.layers": 2, "dropout": 0.0}
DATA = ["train.batch_size=16", "train.lr=1e-2", "train.progress=false",
        "data.valid_fraction=0.1", "data.test_fraction=0.1"]
SMALL = [*DATA, *(f"model.{k}={v}" for k, v in TINY.items())]


def run(*args: object) -> int:
    return main([str(a) for a in args])


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def generate(n: int, seed: int) -> str:
    """CoNLL text with a learnable rule: a run of one letter is a chunk (x and y runs are X,
    z runs Z; a, b, c tokens are O), so a new chunk starts exactly where the letter changes."""
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(n):
        rows, prev = [], ""
        while len(rows) < 6:
            c = str(rng.choice([ch for ch in "xyzabc" if ch != prev]))
            k = int(rng.integers(1, 4)) if c in "xyz" else 1
            for i in range(k):
                kind = "Z" if c == "z" else "X"
                tag = "O" if c in "abc" else ("B-" if i == 0 else "I-") + kind
                rows.append(f"{c * int(rng.integers(1, 4))} {tag}")
            prev = c
        sentences.append("\n".join(rows))
    return "\n\n".join(sentences) + "\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- readers -----------------------------------------------------------------------------------
def test_conll_reader_skips_docstart_and_reads_the_chosen_columns(tmp_path: Path) -> None:
    text = ("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
            "Peter NNP B-NP B-PER\n")
    p = write(tmp_path / "a.txt", text)
    sents = read_sentences(str(p))
    assert [s.words for s in sents] == [["EU", "rejects"], ["Peter"]]
    assert [s.tags for s in sents] == [["B-ORG", "O"], ["B-PER"]]  # default: the last column
    assert [s.lines for s in sents] == [[3, 4], [7]]
    chunked = read_sentences(str(p), "conll", word=1, tag=3)
    assert [s.tags for s in chunked] == [["B-NP", "B-VP"], ["B-NP"]]


CONLLU = """# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_conllu_reader_skips_comments_multiword_tokens_and_empty_nodes(tmp_path: Path) -> None:
    p = write(tmp_path / "a.txt", CONLLU)  # detected by its 10 tab columns, not the suffix
    sents = read_sentences(str(p))
    assert [s.words for s in sents] == [["Do", "n't", "go", "."], ["Yes"]]
    assert [s.tags for s in sents] == [["AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]  # UPOS
    assert sents[0].lines == [4, 5, 6, 8]
    xpos = read_sentences(str(p), "conllu", word=3, tag=5)
    assert xpos[0].words == ["do", "not", "go", "."] and xpos[0].tags[:2] == ["VBP", "RB"]
    assert detect_scheme(t for s in sents for t in s.tags) == "none"


def test_bad_rows_are_one_line_errors_naming_file_and_line(tmp_path: Path, capsys) -> None:
    ragged = write(tmp_path / "ragged.txt", "a NN O\nb NN O\n\nc O\n")
    with pytest.raises(SeqlabError, match=r"ragged.txt:4: expected 3 columns .* got 2"):
        read_sentences(str(ragged))
    conllu = write(tmp_path / "bad.conllu", CONLLU.replace("2\tn't\tnot\tPART", "2\tn't PART"))
    with pytest.raises(SeqlabError, match=r"bad.conllu:5: expected 10 tab-separated"):
        read_sentences(str(conllu))
    # a gold I-X after O is what the BIO constraints forbid: refused before any run folder
    gold = write(tmp_path / "gold.txt", generate(30, 0) + "\na O\nb I-X\n")
    lines = gold.read_text().splitlines()
    out = tmp_path / "run"
    assert run("train", "--model", "bilstm-crf", "--data", gold, "--out", out, *SMALL) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert f"gold.txt:{len(lines)}: tag 'I-X' may not follow 'O'" in err


def test_gold_checks_under_bioes() -> None:
    from seqlab.tasks.tagging import Sentence

    ok = [Sentence(["a", "b", "c"], ["B-X", "E-X", "S-Y"], [1, 2, 3])]
    check_gold(ok, "BIOES", "f")
    with pytest.raises(SeqlabError, match="f:9: tag 'B-X' may not end a sentence"):
        check_gold([Sentence(["a", "b"], ["S-X", "B-X"], [8, 9])], "BIOES", "f")
    with pytest.raises(SeqlabError, match="f:2: tag 'O' may not follow 'B-X'"):
        check_gold([Sentence(["a", "b"], ["B-X", "O"], [1, 2])], "BIOES", "f")
    with pytest.raises(SeqlabError, match="f:1: tag 'NN' is not a BIO tag"):
        check_gold([Sentence(["a"], ["NN"], [1])], "BIO", "f")


# --- conlleval ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("tags", "expected"), [
    (["B-NP", "I-NP", "O", "B-VP"], {(0, 1, "NP"), (3, 3, "VP")}),
    (["O", "I-NP", "I-NP"], {(1, 2, "NP")}),  # conlleval's quirk: I after O starts a chunk
    (["I-NP", "B-NP"], {(0, 0, "NP"), (1, 1, "NP")}),
    (["B-NP", "I-VP", "I-VP"], {(0, 0, "NP"), (1, 2, "VP")}),  # a type change starts one
    (["B-NP", "B-NP", "I-NP"], {(0, 0, "NP"), (1, 2, "NP")}),
    (["S-X", "S-X", "B-Y", "I-Y", "E-Y", "O"], {(0, 0, "X"), (1, 1, "X"), (2, 4, "Y")}),
    (["E-X", "E-X"], {(0, 0, "X"), (1, 1, "X")}),  # an E after O or E starts a chunk
    (["O", "O"], set()),
])
def test_conlleval_chunks(tags: list[str], expected: set) -> None:
    assert chunks(tags) == expected


def test_conlleval_counts_precision_recall_f1() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "I-ORG"]]
    acc, counts = score(gold, pred, "BIO")
    # chunks: gold PER(0-1) LOC(3) ORG(0); predicted PER(0-1) ORG(3) ORG(0-1): one right
    assert (counts.correct, counts.gold, counts.predicted) == (1, 3, 3)
    assert acc == pytest.approx(3 / 6)  # tokens 0, 1, 2 of the first; none of the second
    p, r, f = counts.prf()
    assert (p, r, f) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert SpanCounts().prf() == (0.0, 0.0, 0.0)
    # no scheme (POS tags): conlleval -r, every non-O token its own chunk
    acc, raw = score([["NN", "VB", "NN"]], [["NN", "NN", "NN"]], "none")
    assert (raw.correct, raw.gold, raw.predicted, acc) == (2, 3, 3, pytest.approx(2 / 3))


def test_vocab_roundtrips_through_json(tmp_path: Path) -> None:
    sents = read_sentences(str(write(tmp_path / "t.txt", generate(20, 1))))
    vocab = build_vocab(sents, TaggingConfig(path="t.txt", lowercase=True))
    again = TagVocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again.to_json() == vocab.to_json() and again.scheme == "BIO"
    assert again.tags == ["B-X", "B-Z", "I-X", "I-Z", "O"]
    assert again.word_id("XX") == again.word_id("xx") != 1 and again.word_id("qq") == 1


# --- a trained tagger through the CLI ------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tagging")
    data = write(root / "train.txt", generate(300, 0))
    out = root / "crf"
    assert run("train", "--model", "bilstm-crf", "--data", data, "--out", out,
               "train.max_steps=150", "train.eval_interval=50", *SMALL) == 0
    return out, data


def test_crf_learns_the_chunks_and_eval_json_is_consistent(trained, tmp_path: Path,
                                                           capsys) -> None:
    out, _ = trained
    capsys.readouterr()
    assert run("eval", out, "--json") == 0
    r = last_json(capsys.readouterr().out)
    assert r["model"] == "bilstm-crf" and r["sentences"] == 30
    assert r["span_f1"] > 0.9 and r["token_accuracy"] > 0.95
    p, rec = r["span_precision"], r["span_recall"]
    assert r["span_f1"] == pytest.approx(2 * p * rec / (p + rec))
    test = write(tmp_path / "test.txt", generate(40, 7))
    assert run("eval", out, "--data", test, "--json") == 0
    r = last_json(capsys.readouterr().out)
    assert r["sentences"] == 40 and r["span_f1"] > 0.9


def test_tag_command_with_marginals_and_nbest(trained, tmp_path: Path, capsys,
                                              monkeypatch) -> None:
    out, _ = trained
    text = write(tmp_path / "in.txt", "x xx yy aa z\n\nzz b\n")
    capsys.readouterr()
    assert run("tag", out, "--input", text) == 0
    assert capsys.readouterr().out.splitlines() == ["B-X I-X B-X O B-Z", "", "B-Z O"]
    assert run("tag", out, "--input", text, "--marginals") == 0
    lines = capsys.readouterr().out.splitlines()
    pairs = [item.rsplit(":", 1) for item in lines[0].split()]
    assert [t for t, _ in pairs] == ["B-X", "I-X", "B-X", "O", "B-Z"]
    assert all(0.5 < float(p) <= 1 for _, p in pairs)  # the Viterbi tags are the likely ones
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("x xx yy aa z\n"))
    assert run("tag", out, "--nbest", 2) == 0
    best = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(best) == 2 and best[0][1] == "B-X I-X B-X O B-Z" and best[1][1] != best[0][1]
    assert 0 > float(best[0][0]) >= float(best[1][0])  # log-probabilities, best first


def test_crf_outputs_never_break_the_bio_constraints(trained) -> None:
    out, _ = trained
    model = models.load(out / "best.safetensors")
    rng = np.random.default_rng(0)
    words = [["".join(rng.choice(list("xyzabcq"), int(rng.integers(1, 4))))
              for _ in range(int(rng.integers(1, 9)))] for _ in range(200)]
    batch = encode(words, model.vocab)
    with torch.no_grad():  # make the transitions favour forbidden moves; still never taken
        model.crf.transitions.copy_(torch.randn(5, 5) * 5)
        model.crf.start_transitions.copy_(torch.randn(5) * 5)
    from seqlab.tasks.tagging import Sentence

    paths = model.decode(batch)
    pred = [Sentence(w, [model.vocab.tags[k] for k in p], list(range(len(w))))
            for w, p in zip(words, paths, strict=True)]
    check_gold(pred, "BIO", "<predictions>")  # raises on any I-X after O or another type
    mu = model.marginals(batch)  # (B, T, K)
    real = torch.arange(mu.shape[1]) < batch.lengths[:, None]
    torch.testing.assert_close(mu.sum(-1)[real], torch.ones(int(real.sum())))
    best = model.nbest(batch, 1)
    assert [b[0][0] for b in best] == paths  # 1-best equals Viterbi


def test_compare_ranks_crf_and_softmax_by_span_f1(trained, tmp_path: Path, capsys) -> None:
    _, data = trained
    capsys.readouterr()
    tiny = ":".join(f"{k}={v}" for k, v in TINY.items() if "." not in k)  # flat keys only
    assert run("compare", "--models", f"bilstm-crf:{tiny},bilstm-softmax:{tiny}", "--data", data,
               "--out", tmp_path / "c", "--max-steps", 40, "--json", "train.eval_interval=20",
               *DATA) == 0
    rows = last_json(capsys.readouterr().out)["rows"]
    assert {r["metric"] for r in rows} == {"span_f1"}
    assert all(0 <= r["test_span_f1"] <= 1 for r in rows)
    board = json.loads((tmp_path / "c" / "leaderboard.json").read_text())
    scores = [r["span_f1"] for r in board["rows"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", ["bilstm-crf", "bilstm-softmax", "cnn-crf"])
def test_every_preset_fits_a_batch_and_its_nbest_is_a_distribution(name: str,
                                                                    tmp_path: Path) -> None:
    sents = read_sentences(str(write(tmp_path / "t.txt", generate(16, 2))))
    vocab = build_vocab(sents, TaggingConfig(path="t.txt"))
    torch.manual_seed(0)
    flat = {k: v for k, v in TINY.items() if "." not in k}
    model = models.build(name, vocab, {**flat, "recurrent": {"hidden": 8}})
    assert model.config.recurrent.bidirectional  # kept although the override left it out
    with pytest.raises(SeqlabError, match="bidirectional must be true"):
        models.build(name, vocab, {"recurrent": {"bidirectional": False}})
    batch = encode([s.words for s in sents], vocab, [s.tags for s in sents])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, _ = model.training_loss(batch, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    # every tag sequence of a two-word sentence: their probabilities sum to 1, best first
    two = encode([["xx", "a"]], vocab)
    every = model.nbest(two, len(vocab.tags) ** 2)[0]
    logp = [lp for _, lp in every]
    assert sum(np.exp(logp)) == pytest.approx(1.0, abs=1e-5) and logp == sorted(logp)[::-1]
    assert every[0][0] == model.decode(two)[0]
    if name.endswith("crf"):  # only the pairs BIO allows: B-X, B-Z or O first (3), then
        # 4 after B-X (B-X, B-Z, I-X, O), 4 after B-Z, 3 after O: 11 of the 25
        assert len(every) == 11 and all(vocab.tags[p[0]][0] != "I" for p, _ in every)


def test_batcher_is_resumable_and_trains_unk_on_singletons(tmp_path: Path) -> None:
    from seqlab.tasks.base import BatchSource
    from seqlab.tasks.tagging import Sentence, TagBatcher

    sents = [Sentence(["the", f"w{i}", "the"], ["O", "B-X", "O"], [1, 2, 3]) for i in range(6)]
    vocab = build_vocab(sents, TaggingConfig(path="t.txt"))
    source = TagBatcher(sents, vocab, 2, seed=3, singleton_unk=1.0)
    assert isinstance(source, BatchSource)
    batch, fresh = source.next()
    the = vocab.word_id("the")
    assert fresh and batch.words.tolist() == [[the, 1, the]] * 2  # every w_i was seen once
    assert batch.tags.tolist() == [[vocab.tag_ids[t] for t in ("O", "B-X", "O")]] * 2
    position = source.state_dict()
    after = source.next()[0]
    source.load_state_dict(position)
    again = source.next()[0]
    assert all(torch.equal(getattr(after, f), getattr(again, f))
               for f in ("words", "chars", "lengths", "tags"))
    kept = TagBatcher(sents, vocab, 6, seed=3).next()[0]  # singleton_unk=0 keeps every word
    assert sorted(vocab.words[i] for i in kept.words[:, 1].tolist()) == [f"w{i}" for i in
                                                                          range(6)]
