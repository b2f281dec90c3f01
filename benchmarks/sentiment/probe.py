"""Sentiment from a language model trained without labels (Radford et al. 2017, on a small scale).

    python -m benchmarks.sentiment.probe [--minutes 10] [--hidden 512]

1. A character LSTM is trained by ``seqlab train`` on the *sentences* of SST's training split,
   with no labels (about 0.85 M characters).
2. ``seqlab features`` gives each sentence's final state (h and c) and mean top-layer output.
3. A logistic regression with an L1 penalty, its strength chosen on the dev split, reads SST
   binary sentiment (neutral roots dropped) from those features; then again from only the top-k
   units by |weight|, k = 1, 2, 4, ..., all, and from the single unit that is best on dev.
4. The baseline: bag-of-words (unigrams and bigrams) logistic regression, tuned the same way.
5. What the best unit does: its value over a few test sentences (PNG), and text generated with it
   held high and low.

Writes ``benchmarks/sentiment/results.json``, ``unit.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SHARED_DATA, machine, markdown_table, write_results

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
SST = SHARED_DATA / "sst" / "trees"
C_GRID = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def sentences(split: str) -> tuple[list[str], np.ndarray]:
    """The split's sentences and binary root labels (neutral roots dropped), and all its text."""
    from seqlab.data.trees import read_trees

    text, labels = [], []
    for tree in read_trees(SST / f"{split}.txt"):
        if tree.label == 2:
            continue
        text.append(" ".join(tree.words()))
        labels.append(int(tree.label is not None and tree.label > 2))
    return text, np.array(labels)


def seqlab(*args: Any) -> None:
    subprocess.run([sys.executable, "-m", "seqlab", *map(str, args)], check=True)


def train_lm(minutes: float, hidden: int) -> Path:
    """The unlabelled LM: every training sentence, neutral ones included."""
    from seqlab.data.trees import read_trees

    corpus = WORK / "sst_train_sentences.txt"
    corpus.write_text("\n".join(" ".join(t.words()) for t in read_trees(SST / "train.txt"))
                      + "\n", encoding="utf-8")
    run = WORK / f"lm-{hidden}"
    if not (run / "best.safetensors").exists():
        seqlab("train", "--model", "lstm", "--data", corpus, "--out", run,
               "--max-minutes", minutes, "model.layers=1", f"model.hidden={hidden}",
               "model.emb_dim=64", "model.dropout=0.1", "train.batch_size=32",
               "train.seq_len=128", "train.lr=3e-3", "train.threads=1",
               "train.progress=false", "train.eval_interval=200")
    return run


def features(run: Path, split: str, text: list[str]) -> np.ndarray:
    lines = WORK / f"{split}.txt"
    lines.write_text("\n".join(text) + "\n", encoding="utf-8")
    out = WORK / f"{run.name}-{split}.npy"
    seqlab("features", run, "--data", lines, "--out", out, "--pool", "both")
    return np.load(out, allow_pickle=False)


def logreg(c: float, l1: bool) -> Any:
    """A liblinear logistic regression with an L1 (or L2) penalty of strength 1/`c`.

    scikit-learn 1.8 deprecated ``penalty`` for ``l1_ratio`` (1 = L1, 0 = L2); older releases
    (the test extra allows >= 1.3) ignore ``l1_ratio`` unless ``penalty='elasticnet'``, so the
    penalty is named the way the installed release wants it."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    how: dict[str, Any] = ({"l1_ratio": 1.0 if l1 else 0.0} if (major, minor) >= (1, 8)
                           else {"penalty": "l1" if l1 else "l2"})
    return LogisticRegression(C=c, solver="liblinear", max_iter=2000, **how)


def fit(x: Any, y: np.ndarray, xd: Any, yd: np.ndarray, l1: bool = True) -> tuple[Any, float]:
    """The logistic regression whose C is best on dev, and its dev accuracy."""
    best: tuple[Any, float] = (None, -1.0)
    for c in C_GRID:
        clf = logreg(c, l1).fit(x, y)
        acc = float(clf.score(xd, yd))
        if acc > best[1]:
            best = (clf, acc)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0, help="LM training budget")
    ap.add_argument("--hidden", type=int, default=512)
    args = ap.parse_args()
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import StandardScaler

    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    run = train_lm(args.minutes, args.hidden)
    data = {s: sentences(s) for s in ("train", "dev", "test")}
    feats = {s: features(run, s, data[s][0]) for s in data}
    scale = StandardScaler().fit(feats["train"])
    X = {s: scale.transform(f) for s, f in feats.items()}
    y = {s: data[s][1] for s in data}
    import json

    names = json.loads((WORK / f"{run.name}-train.json").read_text())["units"]

    rows = []
    clf, dev = fit(X["train"], y["train"], X["dev"], y["dev"])
    rows.append({"features": f"LM, all {X['train'].shape[1]} units (L1)",
                 "units": X["train"].shape[1], "dev": dev,
                 "test": float(clf.score(X["test"], y["test"]))})
    order = np.argsort(-np.abs(clf.coef_[0]))
    for k in [2 ** i for i in range(12) if 2 ** i < X["train"].shape[1]]:
        cols = order[:k]
        sub, dev_k = fit(X["train"][:, cols], y["train"], X["dev"][:, cols], y["dev"], l1=False)
        rows.append({"features": f"LM, top {k} units (largest L1 weights)", "units": k,
                     "dev": dev_k, "test": float(sub.score(X["test"][:, cols], y["test"]))})
    # The single most predictive unit: each unit alone, chosen on dev.
    single = []
    for u in range(X["train"].shape[1]):
        lr = logreg(1.0, l1=False).fit(X["train"][:, [u]], y["train"])
        single.append(lr.score(X["dev"][:, [u]], y["dev"]))
    best_unit = int(np.argmax(single))
    # The demo holds a unit of the recurrent state; a ``mean`` feature is not one, so the best
    # state unit gets its own row where the best feature is a mean.
    state_units = [u for u, n in enumerate(names) if not n.startswith("mean")]
    demo_unit = max(state_units, key=lambda u: single[u])
    for u in dict.fromkeys([best_unit, demo_unit]):
        lr = logreg(1.0, l1=False).fit(X["train"][:, [u]], y["train"])
        what = "best single unit" if u == best_unit else "best single state unit"
        rows.append({"features": f"LM, {what} ({names[u]})", "units": 1,
                     "dev": float(single[u]),
                     "test": float(lr.score(X["test"][:, [u]], y["test"]))})
    bow = CountVectorizer(ngram_range=(1, 2), binary=True, lowercase=True)
    B = {s: bow.fit_transform(data[s][0]) if s == "train" else bow.transform(data[s][0])
         for s in ("train", "dev", "test")}
    bclf, bdev = fit(B["train"], y["train"], B["dev"], y["dev"], l1=False)
    rows.append({"features": "bag of words (uni+bigrams, L2)", "units": B["train"].shape[1],
                 "dev": bdev, "test": float(bclf.score(B["test"], y["test"]))})
    values = feats["train"][:, demo_unit]
    lr = logreg(1.0, l1=False).fit(X["train"][:, [demo_unit]], y["train"])
    w, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    threshold = float(scale.mean_[demo_unit] + scale.scale_[demo_unit] * (-b / w))
    # Three short positive and three short negative test sentences.
    short = [(t, int(lab)) for t, lab in zip(*data["test"], strict=True) if len(t) <= 100]
    shown = ([p for p in short if p[1]][:3] + [p for p in short if not p[1]][:3])
    demo = unit_demo(run, demo_unit, names[demo_unit], [t for t, _ in shown],
                     [lab for _, lab in shown], positive=w > 0, threshold=threshold,
                     span=(float(values.min()), float(values.max())))
    cols = [("features", "features", "s"), ("units", "units", ",d"), ("dev", "dev acc", ".3f"),
            ("test", "test acc", ".3f")]
    print(markdown_table(rows, cols))
    write_results(HERE / "results.json", {
        "machine": machine(), "lm_run": str(run), "lm_minutes": args.minutes,
        "hidden": args.hidden, "rows": rows, "best_unit": names[best_unit],
        "demo_unit": names[demo_unit], "demo": demo,
        "seconds": time.time() - t0, "split_sizes": {s: len(y[s]) for s in y}})


def unit_demo(run: Path, unit: int, name: str, text: list[str], labels: list[int],
              positive: bool, threshold: float, span: tuple[float, float]) -> dict[str, Any]:
    """The unit over a few test sentences (unit.png), and samples with it held at the ends of
    its range on the training sentences (`span`). Only state units can be held (a ``mean``
    feature is not a unit of the recurrence). The colour is the unit's value relative to
    `threshold`, where its one-unit probe is at 50%: red reads positive, blue negative, on one
    scale for every row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqlab import features
    from seqlab.experiment import load_run

    model, _ = load_run(run)
    sign = 1.0 if positive else -1.0
    traces = [sign * (features.unit_trace(model, sentence, unit) - threshold)
              for sentence in text]
    lim = max(float(np.abs(t).max()) for t in traces)
    fig, axes = plt.subplots(len(text), 1, figsize=(14, 0.95 * len(text)))
    for ax, sentence, label, values in zip(np.atleast_1d(axes), text, labels, traces,
                                           strict=True):
        ax.imshow(values[None, :], cmap="coolwarm", aspect="auto", vmin=-lim, vmax=lim)
        ax.set_xticks(range(len(values)), list(sentence), fontsize=7)
        ax.set_yticks([0], ["pos" if label else "neg"], fontsize=8)
    fig.suptitle(f"unit {name} after each character of six test sentences (gold label at left): "
                 "red = the unit reads positive, blue = negative")
    fig.tight_layout()
    fig.savefig(HERE / "unit.png", dpi=100)
    plt.close(fig)
    pos, neg = (span[1], span[0]) if positive else (span[0], span[1])
    return {"unit": name, "span": span, "threshold": threshold,
            "held_positive": features.clamped_sample(model, unit, pos, 200, seed=1,
                                                     prompt="this film is "),
            "held_negative": features.clamped_sample(model, unit, neg, 200, seed=1,
                                                     prompt="this film is ")}


if __name__ == "__main__":
    main()
