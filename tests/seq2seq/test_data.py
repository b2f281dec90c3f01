"""Paired data: the special-token scheme, three file formats, levels, bucketing, bad lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.seq2seq.conftest import encoded, reversal_pairs, write_tsv

from seqlab.errors import SeqlabError
from seqlab.seq2seq.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    DataConfig,
    PairBatcher,
    Pairs,
    PairVocab,
    build_vocab,
    decode,
    encode,
    prepare,
    read_pairs,
)

MAX = (256, 256)


def test_special_token_scheme_and_batch_layout() -> None:
    v = build_vocab([["b", "a", "b"], ["c"]], "word")
    assert v.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "b", "a", "c"]  # by count, then a-z
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    # unknown words and literal special strings in the data both become <unk>
    assert encode(["a", "zzz", "<eos>", "<pad>", "<unk>"], v).tolist() == [5, 1, 1, 1, 1]
    assert decode([4, 5, EOS_ID, 6], v) == ["b", "a"]  # stops at <eos>

    pairs = Pairs.encode([(["a", "b", "c"], ["c"]), (["a"], ["b", "a"])], PairVocab(v, v))
    batch = pairs.batch([0, 1])
    assert batch.src.tolist() == [[5, 4, 6], [5, 0, 0]]
    assert batch.src_len.tolist() == [3, 1]
    assert batch.src_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.tgt_in.tolist() == [[BOS_ID, 6, 0], [BOS_ID, 4, 5]]
    assert batch.tgt_out.tolist() == [[6, EOS_ID, 0], [4, 5, EOS_ID]]
    assert batch.num_tokens == 5  # targets plus one <eos> each; padding not counted


def test_tsv_scan_and_parallel_files_give_the_same_pairs(tmp_path: Path) -> None:
    pairs = [(["jump", "twice"], ["I_JUMP", "I_JUMP"]), (["walk"], ["I_WALK"])]
    tsv = write_tsv(tmp_path / "p.tsv", pairs)
    scan = tmp_path / "p.txt"
    scan.write_text("IN: jump twice OUT: I_JUMP I_JUMP\n\nIN: walk OUT: I_WALK\n")
    (tmp_path / "p.src").write_text("jump twice\nwalk\n")
    (tmp_path / "p.tgt").write_text("I_JUMP I_JUMP\nI_WALK\n")
    texts = [[(s, t) for _, s, t in read_pairs(*args)] for args in
             [(tsv,), (scan,), (tmp_path / "p.src", tmp_path / "p.tgt")]]
    assert texts[0] == texts[1] == texts[2] == [("jump twice", "I_JUMP I_JUMP"),
                                                ("walk", "I_WALK")]


def test_char_level_separate_and_shared_vocabularies(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_text("ab c\tXY\nb\tY\n", encoding="utf-8")
    common = {"path": str(path), "valid_fraction": 0, "test_fraction": 0}
    sep = prepare(DataConfig(level="char", **common), MAX)
    assert sep.vocab.src.tokens[4:] == ["b", " ", "a", "c"]  # spaces are characters
    assert sep.vocab.tgt.tokens[4:] == ["Y", "X"]
    shared = prepare(DataConfig(level="char", shared_vocab=True, **common), MAX)
    assert shared.vocab.shared and shared.vocab.src.tokens[4:] == ["Y", "b", " ", "X", "a", "c"]
    mixed = prepare(DataConfig(level="word", tgt_level="char", **common), MAX)
    assert mixed.vocab.src.tokens[4:] == ["ab", "b", "c"]
    assert mixed.train.target(0).tolist() == [mixed.vocab.tgt.index[c] for c in "XY"]
    with pytest.raises(SeqlabError, match="one level for both sides"):
        DataConfig(level="word", tgt_level="char", shared_vocab=True)


def test_random_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    pairs = [([str(i // 20), str(i % 20)], ["x"]) for i in range(200)]  # 200 distinct sources
    cfg = DataConfig(path=str(write_tsv(tmp_path / "p.tsv", pairs)), valid_fraction=0.1,
                     test_fraction=0.2)
    a, b = prepare(cfg, MAX), prepare(cfg, MAX)
    assert (len(a.train), len(a.valid), len(a.test)) == (140, 20, 40)

    def words(data: object, split: str) -> set[int]:
        p, tokens = data.split(split), data.vocab.src.tokens  # type: ignore[attr-defined]
        return {20 * int(tokens[p.source(i)[0]]) + int(tokens[p.source(i)[1]])
                for i in range(len(p))}

    splits = [words(a, s) for s in ("train", "valid", "test")]
    assert sum(map(len, splits)) == 200 and set.union(*splits) == set(range(200))
    assert splits == [words(b, s) for s in ("train", "valid", "test")]


def test_batcher_buckets_by_length_covers_each_pair_once_and_resumes() -> None:
    pairs = encoded(reversal_pairs(1000, max_len=20, seed=3))
    batcher = PairBatcher(pairs, batch_size=10, seed=5, bucket=20)
    epoch = batcher.epoch_batches(0)
    assert sorted(np.concatenate(epoch).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(pairs.src_lengths[b]) for b in epoch])
    unbucketed = PairBatcher(pairs, batch_size=10, seed=5, bucket=1).epoch_batches(0)
    assert spread < 0.25 * np.mean([np.ptp(pairs.src_lengths[b]) for b in unbucketed])
    assert epoch[0].tolist() != batcher.epoch_batches(1)[0].tolist()  # reshuffled per epoch

    for _ in range(137):  # into the second epoch
        batcher.next()
    resumed = PairBatcher(pairs, batch_size=10, seed=5, bucket=20)
    resumed.load_state_dict(batcher.state_dict())
    for _ in range(3):
        (a, fa), (b, fb) = batcher.next(), resumed.next()
        assert fa == fb and a.src.equal(b.src) and a.tgt_out.equal(b.tgt_out)


@pytest.mark.parametrize(("content", "message"), [
    ("1 2\t2 1\n3 4\n", r"p\.tsv:2: expected source<TAB>target, got a line without a tab"),
    ("1\t1\n2\t2\t2\n", r"p\.tsv:2: expected source<TAB>target, got 2 tabs"),
    ("1\t1\n \t2\n", r"p\.tsv:2: expected a non-empty source, got an empty one"),
    ("1\t\n", r"p\.tsv:1: expected a non-empty target, got an empty one"),
    ("1\t1\n1 2 3 4 5\t1\n", r"p\.tsv:2: source has 5 tokens, more than the maximum "
                              r"model.max_src_len = 4"),
    ("1\t1 2 3 4 5 6\n", r"p\.tsv:1: target has 6 tokens, more than the maximum "
                         r"model.max_tgt_len = 5"),
    ("IN: walk OUT: I_WALK\nIN: run I_RUN\n", r"p\.tsv:2: expected 'IN: <command> OUT: "),
    ("\n\n", r"p\.tsv: expected source/target pairs, got an empty file"),
])
def test_bad_lines_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SeqlabError, match=message) as err:
        prepare(DataConfig(path=str(path)), (4, 5))
    assert "\n" not in str(err.value)


def test_bad_bytes_and_mismatched_parallel_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"1\t1\n\xff\xfe\t1\n")
    with pytest.raises(SeqlabError, match=r"bad\.tsv:2: expected UTF-8 text"):
        read_pairs(bad)
    (tmp_path / "a.src").write_text("1\n2\n3\n")
    (tmp_path / "a.tgt").write_text("1\n2\n")
    with pytest.raises(SeqlabError, match=r"a\.tgt: expected 3 lines, as in .*a\.src, got 2"):
        read_pairs(tmp_path / "a.src", tmp_path / "a.tgt")
    with pytest.raises(SeqlabError, match=r"data\.path: expected a file of pairs"):
        prepare(DataConfig(), MAX)
    with pytest.raises(SeqlabError, match=r"missing\.tsv: file not found"):
        read_pairs(tmp_path / "missing.tsv")
