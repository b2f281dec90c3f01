"""n-gram benchmark on tinyshakespeare: seqlab against KenLM (lmplz + query) and nltk.lm.

    benchmarks/classical/setup_kenlm.sh          # once: builds lmplz/query (~6 minutes)
    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.classical.ngram

Data: ../shared/data/tinyshakespeare/input.txt, split by lines: the first 90% train, the rest
test. Two models: order 3 on words and order 5 on characters, both in sentence mode (KenLM's
treatment of lines: ``reset_at_eos``). For KenLM, the character text is written one character
per token, spaces as ``<U+0020>`` (the spelling seqlab's ARPA files use), and lmplz runs with
``--discount_fallback`` (at character level the closed-form unigram discounts leave their range;
seqlab falls back the same way).

* build: seqlab ``fit`` on token ids (and, separately, fit plus writing the ARPA file) against
  ``lmplz -S 200M`` writing its ARPA file; nltk's ``KneserNeyInterpolated.fit``.
* query: seqlab encodes the test text and scores every token; KenLM ``query -v summary`` on a
  binary model (``build_binary``, not timed); nltk's ``logscore`` on the first 2,000 test tokens
  (it scores ~100-600 tokens/s), extrapolated to the whole test set.
* fidelity: perplexity of each against KenLM's, and the largest per-token |log10 p| difference
  from ``query -v word``. nltk's model is a different smoothing (one discount, 0.1), so its
  perplexity is shown but not expected to match.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from nltk.lm import KneserNeyInterpolated
from nltk.lm.preprocessing import padded_everygram_pipeline

from benchmarks.classical.timing import RESULTS, best_of, versions
from benchmarks.common import SHARED_DATA, check_quiet, markdown_table, write_results
from seqlab.data.vocab import Vocab, iter_units_from_text
from seqlab.models.ngram import NGramConfig, NGramLM

KENLM = Path(__file__).resolve().parent / "_work" / "kenlm" / "bin"
DATA = SHARED_DATA / "tinyshakespeare" / "input.txt"
NLTK_TOKENS = 2000


def kenlm_text(lines: list[str], level: str) -> str:
    if level == "word":
        return "".join(line + "\n" for line in lines)
    return "".join(" ".join("<U+0020>" if c == " " else c for c in line) + "\n"
                   for line in lines)


def run_kenlm(train: Path, test: Path, order: int, work: Path, fallback: bool
              ) -> dict[str, float | np.ndarray]:
    arpa, binary = work / "kenlm.arpa", work / "kenlm.bin"
    cmd = [str(KENLM / "lmplz"), "-o", str(order), "-S", "200M", "-T", str(work)]
    cmd += ["--discount_fallback"] if fallback else []

    def build() -> None:
        with train.open() as fin, arpa.open("w") as fout:
            subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.DEVNULL, check=True)

    t_build, _ = best_of(build, repeats=3, warmup=1)
    subprocess.run([str(KENLM / "build_binary"), str(arpa), str(binary)], check=True,
                   capture_output=True)

    def query(verbosity: str) -> str:
        with test.open() as fin:
            return subprocess.run([str(KENLM / "query"), "-v", verbosity, str(binary)],
                                  stdin=fin, capture_output=True, text=True, check=True).stdout

    t_query, summary = best_of(lambda: query("summary"), repeats=3)
    ppl = float(next(ln for ln in summary.splitlines()
                     if ln.startswith("Perplexity including OOVs")).split()[-1])
    per_token = np.array([float(x.rsplit(" ", 1)[1]) for x in query("word").split("\t")
                          if "=" in x])
    return {"build": t_build, "query": t_query, "perplexity": ppl, "log10": per_token,
            "arpa": arpa}


def run_seqlab(train_text: str, test_text: str, level: str, order: int, work: Path) -> dict:
    vocab = Vocab.build(iter_units_from_text(train_text, level), level)  # type: ignore[arg-type]
    ids = vocab.encode(train_text)
    model = NGramLM(NGramConfig(order=order, reset_at_eos=True), vocab)
    t_fit, _ = best_of(lambda: model.fit(ids), repeats=3)

    def fit_and_write() -> None:
        model.fit(ids)
        model.write_arpa(work / "seqlab.arpa")

    t_arpa, _ = best_of(fit_and_write, repeats=1)
    t_query, lp = best_of(lambda: model.log_prob(vocab.encode(test_text)), repeats=3)
    return {"build": t_fit, "build_arpa": t_arpa, "query": t_query, "log10": lp / math.log(10),
            "perplexity": math.exp(-lp.mean()), "tokens": len(lp)}


def run_nltk(train_lines: list[str], test_lines: list[str], level: str, order: int,
             n_test_tokens: int) -> dict:
    split = (lambda s: s.split()) if level == "word" else list
    t0 = time.perf_counter()
    grams, vocab = padded_everygram_pipeline(order, [split(s) for s in train_lines])
    lm = KneserNeyInterpolated(order)
    lm.fit(grams, vocab)
    t_build = time.perf_counter() - t0
    scores, t0 = [], time.perf_counter()
    for line in test_lines:
        padded = ["<s>"] * (order - 1) + split(line) + ["</s>"]
        for i in range(order - 1, len(padded)):
            scores.append(lm.logscore(padded[i], padded[i - order + 1 : i]))  # log2
            if len(scores) == NLTK_TOKENS:
                break
        if len(scores) == NLTK_TOKENS:
            break
    rate = len(scores) / (time.perf_counter() - t0)
    bits = -np.mean(scores)
    return {"build": t_build, "query": n_test_tokens / rate, "query_tokens_per_s": rate,
            "perplexity": 2**bits if np.isfinite(bits) else math.inf}


def bench(level: str, order: int, lines: list[str], work: Path, with_nltk: bool) -> list[dict]:
    cut = int(0.9 * len(lines))
    train_lines, test_lines = lines[:cut], lines[cut:]
    train_text, test_text = ("".join(x + "\n" for x in part) for part in (train_lines, test_lines))
    (work / "train.txt").write_text(kenlm_text(train_lines, level), encoding="utf-8")
    (work / "test.txt").write_text(kenlm_text(test_lines, level), encoding="utf-8")
    ken = run_kenlm(work / "train.txt", work / "test.txt", order, work, level == "char")
    ours = run_seqlab(train_text, test_text, level, order, work)
    name = f"{level} {order}-gram"
    rows = [{"model": name, "tool": "KenLM", "build": ken["build"], "query": ken["query"],
             "perplexity": ken["perplexity"]},
            {"model": name, "tool": "seqlab", "build": ours["build"], "query": ours["query"],
             "build_arpa": ours["build_arpa"], "perplexity": ours["perplexity"],
             "max_log10_diff": float(np.abs(ours["log10"] - ken["log10"]).max())}]
    if with_nltk:
        ref = run_nltk(train_lines, test_lines, level, order, ours["tokens"])
        rows.append({"model": name, "tool": "nltk.lm", **ref})
    for r in rows:
        r["tokens"] = ours["tokens"]
        r["build_vs_seqlab"] = r["build"] / ours["build"]
        r["query_vs_seqlab"] = r["query"] / ours["query"]
        r["ppl_rel_to_kenlm"] = r["perplexity"] / ken["perplexity"] - 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-nltk", action="store_true", help="skip nltk.lm (the slowest part)")
    args = ap.parse_args()
    if not (KENLM / "lmplz").exists():
        raise SystemExit(f"{KENLM}/lmplz not found: run benchmarks/classical/setup_kenlm.sh")
    quiet = check_quiet()
    lines = DATA.read_text(encoding="utf-8").splitlines()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level, order in (("word", 3), ("char", 5)):
            work = Path(tmp) / level
            work.mkdir()
            rows += bench(level, order, lines, work, not args.no_nltk)
    print(markdown_table(rows, [
        ("model", "model", "s"), ("tool", "tool", "s"), ("build", "build s", ".3f"),
        ("build_arpa", "build + ARPA s", ".3f"), ("query", "query s", ".3f"),
        ("build_vs_seqlab", "build / seqlab", ".1f"), ("query_vs_seqlab", "query / seqlab", ".1f"),
        ("perplexity", "perplexity", ".4f"), ("ppl_rel_to_kenlm", "vs KenLM", "+.1e"),
        ("max_log10_diff", "largest log10 p difference", ".1e")]))
    write_results(RESULTS / "ngram.json", {
        "benchmark": "ngram", "data": str(DATA), "quiet": quiet,
        "versions": {**versions("nltk", "numpy"), "kenlm": "0.3.0 (lmplz/query from the sdist)"},
        "rows": rows})


if __name__ == "__main__":
    main()
