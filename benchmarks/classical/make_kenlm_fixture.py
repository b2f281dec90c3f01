"""Regenerate the KenLM golden fixture in tests/data/kenlm/ (needs setup_kenlm.sh first).

    .venv/bin/python benchmarks/classical/make_kenlm_fixture.py

For each case it writes the training and test text as seqlab reads it (``NAME.train.txt``,
``NAME.test.txt``), runs ``lmplz`` on the training text (chars separated by spaces at char
level, whitespace spelled ``<U+0020>``), keeps its ARPA file (``NAME.arpa``) and the per-token
log10 probabilities that ``query`` gives the test text (``NAME.query.tsv``: token, log10 p) and
the discounts lmplz reports (``NAME.discounts.tsv``: order, D1, D2, D3+).
tests/models/test_ngram.py checks seqlab against these files.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KENLM = Path(__file__).resolve().parent / "_work" / "kenlm" / "bin"
OUT = ROOT / "tests" / "data" / "kenlm"
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"


def synthetic_lines(seed: int = 28) -> list[str]:
    """Random sentences over 21 words: small counts of counts, where lmplz's quirks show."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(rng.integers(4, 30))]
    p = rng.dirichlet(np.full(len(words), 0.3))
    n = rng.integers(20, 300)
    return [" ".join(rng.choice(words, size=rng.integers(0, 12), p=p)) for _ in range(n)]


def kenlm_text(lines: list[str], level: str) -> str:
    if level == "word":
        return "".join(line + "\n" for line in lines)
    return "".join(" ".join("<U+0020>" if c == " " else c for c in line) + "\n" for line in lines)


def run_case(name: str, train: list[str], test: list[str], order: int, level: str) -> None:
    (OUT / f"{name}.train.txt").write_text("".join(x + "\n" for x in train), encoding="utf-8")
    (OUT / f"{name}.test.txt").write_text("".join(x + "\n" for x in test), encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        src, arpa = Path(tmp) / "train", OUT / f"{name}.arpa"
        src.write_text(kenlm_text(train, level), encoding="utf-8")
        with src.open() as fin, arpa.open("w") as fout:
            log = subprocess.run([str(KENLM / "lmplz"), "-o", str(order), "-S", "100M", "-T", tmp,
                                  "--discount_fallback"], stdin=fin, stdout=fout, check=True,
                                 stderr=subprocess.PIPE, text=True).stderr
        q = subprocess.run([str(KENLM / "query"), "-v", "word", str(arpa)],
                           input=kenlm_text(test, level), capture_output=True, text=True,
                           check=True).stdout
    rows = [item.rsplit(" ", 2) for item in q.split("\t") if "=" in item]
    # lmplz's statistics lines: "ORDER COUNT D1=.. D2=.. D3+=..", printed with 6 digits
    stats = [ln.split() for ln in log.splitlines() if " D1=" in ln and ln[0].isdigit()]
    with (OUT / f"{name}.discounts.tsv").open("w", encoding="utf-8") as f:
        for order_k, _, *ds in stats:
            f.write(order_k + "\t" + "\t".join(d.split("=")[1] for d in ds) + "\n")
    with (OUT / f"{name}.query.tsv").open("w", encoding="utf-8") as f:
        for word_id, _, logp in rows:
            f.write(f"{word_id.rsplit('=', 1)[0]}\t{logp}\n")
    print(f"{name}: {len(rows)} test tokens, ARPA {arpa.stat().st_size:,} bytes")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    lines = SHAKESPEARE.read_text(encoding="utf-8").splitlines()
    run_case("word3", lines[:200], lines[200:260], order=3, level="word")
    run_case("char5", lines[:60], lines[60:80], order=5, level="char")
    synth = synthetic_lines()
    run_case("synth3", synth[:-40], synth[-40:], order=3, level="word")


if __name__ == "__main__":
    main()
