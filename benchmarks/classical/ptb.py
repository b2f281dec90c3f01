"""Published n-gram baselines on the Penn Treebank (Mikolov's version), next to seqlab's.

    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.classical.ptb

Data: ../shared/data/ptb (see its PROVENANCE.md). Word level: ptb.{train,valid,test}.txt, one
``<eos>`` per line, the corpus' own ``<unk>`` kept as the unknown token; test perplexity per
word (``<eos>`` included), beside the interpolated Kneser-Ney 5-gram's 141.2 reported by
Mikolov et al. (2011), "Empirical evaluation and combination of advanced language modeling
techniques" (Interspeech). Character level: ptb.char.*.txt, whose characters are already
separated by spaces (``_`` marks word boundaries), so seqlab reads them at word level: every
character is one token and every line ends with one end-of-line token, as in Mikolov's RNNLM
toolkit. Test bits per character beside the backoff 9-gram's 1.47 from Mikolov's
``simple-examples`` README. All models in sentence mode (``reset_at_eos``), as SRILM builds them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.classical.timing import RESULTS
from benchmarks.common import SHARED_DATA, markdown_table, write_results
from seqlab import models
from seqlab.data.corpus import DataConfig, prepare
from seqlab.scoring import evaluate

PTB = SHARED_DATA / "ptb"
PUBLISHED = {("word", 5): ("KN5, Mikolov et al. 2011", 141.2, "perplexity"),
             ("char", 9): ("backoff 9-gram, Mikolov simple-examples", 1.47, "bits/char")}


def corpus(prefix: str, work: Path):
    return prepare(DataConfig(path=str(PTB / f"{prefix}.train.txt"),
                              valid=str(PTB / f"{prefix}.valid.txt"),
                              test=str(PTB / f"{prefix}.test.txt"), level="word"), work)


def bench(level: str, orders: tuple[int, ...], work: Path) -> list[dict]:
    data = corpus("ptb" if level == "word" else "ptb.char", work / level)
    rows = []
    for order in orders:
        t0 = time.perf_counter()
        m = models.build("ngram", data.vocab, {"order": order, "reset_at_eos": True})
        m.fit(data.train)
        fit_s = time.perf_counter() - t0
        valid, test = evaluate(m, data.valid), evaluate(m, data.test)
        name, ref, unit = PUBLISHED.get((level, order), ("", None, ""))
        rows.append({"level": level, "order": order, "train_tokens": len(data.train),
                     "vocab": len(data.vocab), "valid_ppl": valid.perplexity,
                     "test_ppl": test.perplexity, "test_bits": test.bits_per_token,
                     "test_unk": test.unk_tokens, "fit_seconds": fit_s,
                     "published": ref, "published_as": f"{name} ({unit})" if ref else ""})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--word-orders", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument("--char-orders", type=int, nargs="+", default=[5, 7, 9, 11])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench("word", tuple(args.word_orders), Path(tmp))
        rows += bench("char", tuple(args.char_orders), Path(tmp))
    print(markdown_table(rows, [
        ("level", "level", "s"), ("order", "order", "d"), ("test_ppl", "test perplexity", ".1f"),
        ("test_bits", "test bits/token", ".4f"), ("valid_ppl", "valid perplexity", ".1f"),
        ("published", "published", "g"), ("published_as", "published figure", "s"),
        ("fit_seconds", "fit s", ".1f")]))
    write_results(RESULTS / "ptb.json", {"benchmark": "ptb", "rows": rows})


if __name__ == "__main__":
    main()
