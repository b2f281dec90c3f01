"""Tree accuracy: SST sentiment (recursive net, Tree-LSTM, sequential BiLSTM) and ListOps
(Tree-LSTM against the BiLSTM baseline), trained and scored through the public CLI on a stated
CPU budget.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.trees.accuracy            # both
    .venv/bin/python -m benchmarks.trees.accuracy --bench sst --sst-epochs 6 --jobs 2

Each run is ``seqlab train --model M --data train --valid dev --test test --out /tmp/...`` (one
thread), then ``seqlab eval RUN --data test --json``; ``best.safetensors`` is the checkpoint
with the best dev root accuracy (scored ``--evals-per-epoch`` times an epoch).

**SST** (``../shared/data/sst/trees``, train/dev/test): the three models share the embedding
size (random init, no GloVe), the hidden size, dropout, optimiser, batch and number of epochs.
The tree models are trained on the label of every node (``data.labels=nodes``), as in Socher et
al. and Tai et al.; the BiLSTM baseline of the task reads the leaves and labels the root only.
The Tree-LSTM is Tai et al.'s binary (N-ary, N = 2) cell, for SST's binarised trees. Two binary
accuracies over the non-neutral test roots (gold 0-1 negative, 3-4 positive):

* ``binary_accuracy``, the task's: the 5-way argmax must have the gold polarity (a predicted 2
  is wrong);
* ``binary_collapsed``: P(0) + P(1) against P(3) + P(4) of the same 5-class softmax, the
  5-class model's distribution collapsed onto the two polarities, computed here through the
  library (`seqlab.experiment.load_run`).

Tai et al. instead train a separate binary model on the non-neutral sentences: the runs named
``*-2class`` do that (``data.polarity=true``: 0-1 negative, 3-4 positive, neutral nodes
unlabelled, neutral-root sentences left out), and their test root accuracy is the binary one.

**ListOps**: training and dev data come from the package's generator (`seqlab.data.listops.
generate`, the official d20 settings: max depth 20, 2-5 arguments, value_p 0.25), written as
TSV files in the official format with the official test set's expressions excluded; the test
set is the official ``../shared/data/listops/test_d20s.tsv``. The child-sum Tree-LSTM reads the
n-ary trees (operator on the node, every node labelled with its value); the BiLSTM baseline
reads the expression's tokens (the gold binary parse's leaves, no parentheses) and labels the
root.

Writes ``accuracy.json`` next to this file (merged with the other benchmark's results when only
one is run) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED_DATA, markdown_table, write_results
from benchmarks.tagging.accuracy import Job, run_jobs

HERE = Path(__file__).parent
SST = SHARED_DATA / "sst" / "trees"
LISTOPS_TEST = SHARED_DATA / "listops" / "test_d20s.tsv"


def _train_keys(args: argparse.Namespace, epochs: float, n_train: int, batch: int) -> list[str]:
    per_epoch = math.ceil(n_train / batch)
    steps = max(1, math.ceil(epochs * per_epoch))
    return [f"train.max_steps={steps}", f"train.max_minutes={args.max_minutes}",
            f"train.eval_interval={max(1, per_epoch // args.evals_per_epoch)}",
            f"train.batch_size={batch}", f"train.lr={args.lr}", "train.optimizer=adamw",
            "train.schedule=cosine", "train.warmup_steps=100", f"train.clip_norm={args.clip}",
            "train.precision=fp32", f"train.seed={args.seed}", *args.set]


# --- SST ---------------------------------------------------------------------------------------
def collapsed_binary(run: str, test: str) -> dict[str, float]:
    """Binary accuracy of the 5-class model with P(0)+P(1) against P(3)+P(4), over the
    non-neutral test roots, and the task's strict version for comparison."""
    import torch

    from seqlab.experiment import load_run, task_of
    from seqlab.tasks.trees import make_batch

    torch.set_num_threads(1)
    model, config = load_run(run, "cpu")
    task = task_of(model, config)
    trees = task.read_eval_file(model, test, Path(run))
    hits = strict = total = 0
    with model._inference():
        for s in range(0, len(trees), 256):
            batch = make_batch(trees[s : s + 256], model.vocab)
            logits, _ = model(batch)
            if model.node_outputs:
                logits = logits[batch.roots]  # (num_trees, 5)
            p = logits.float().softmax(-1)
            gold = batch.labels[batch.roots]
            keep = gold != 2
            positive = gold[keep] > 2
            hits += int(((p[keep, 3:].sum(-1) > p[keep, :2].sum(-1)) == positive).sum())
            pred = p[keep].argmax(-1)
            strict += int(((pred > 2) & positive).sum() + ((pred < 2) & ~positive).sum())
            total += int(keep.sum())
    return {"binary_collapsed": hits / total, "binary_strict_check": strict / total,
            "binary_trees": total}


POLAR = "-2class"  # run-name suffix of the models trained on SST's binary task (data.polarity)


def sst(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    train, dev, test = (str(SST / f"{s}.txt") for s in ("train", "dev", "test"))
    roots = [line.split(maxsplit=1)[0] for line in Path(train).read_text().splitlines()
             if line.strip()]
    n_train, n_polar = len(roots), sum(r != "(2" for r in roots)  # 2-class: no neutral roots
    H, per_epoch = args.sst_hidden, math.ceil(n_train / args.sst_batch)
    model = ["data.labels=nodes", f"data.min_count={args.sst_min_count}",
             f"model.emb_dim={args.sst_emb or H}", f"model.hidden={H}",
             f"model.dropout={args.dropout}"]
    jobs = []
    for suffix, n, extra in (("", n_train, []), (POLAR, n_polar, ["data.polarity=true"])):
        common = [*_train_keys(args, args.sst_epochs, n, args.sst_batch), *model, *extra]
        jobs += [Job(f"sst-tree-rnn{suffix}", "tree-rnn", train, test, dev, common),
                 Job(f"sst-tree-lstm{suffix}", "tree-lstm", train, test, dev,
                     [*common, "model.encoder=binary"]),
                 Job(f"sst-tree-bilstm{suffix}", "tree-bilstm", train, test, dev, common)]
    rows = run_jobs(_only(jobs, args), out, "root_accuracy", args.jobs)
    for row in rows:
        if not row["name"].endswith(POLAR):  # a 2-class model's root accuracy is the binary one
            row.update(collapsed_binary(row["run"], test))
    return {"data": {"train": train, "dev": dev, "test": test, "train_trees": n_train},
            "budget": {"epochs": args.sst_epochs, "batch_size": args.sst_batch,
                       "max_steps": math.ceil(args.sst_epochs * per_epoch),
                       "max_minutes_per_run": args.max_minutes},
            "setup": {"emb_dim": args.sst_emb or H, "hidden": H, "min_count": args.sst_min_count,
                      "dropout": args.dropout, "embeddings": "random",
                      "lr": args.lr, "optimizer": "adamw, cosine"},
            "target": "Tree-LSTM > BiLSTM; Tree-LSTM >= 45% fine-grained, >= 83% binary",
            "runs": rows}


# --- ListOps -----------------------------------------------------------------------------------
def listops_files(args: argparse.Namespace, out: Path) -> tuple[Path, Path, float]:
    """Generated train and dev TSVs (official settings, test expressions excluded)."""
    from seqlab.data import listops

    t0 = time.monotonic()
    test = {" ".join(line.split("\t", 1)[1].split())
            for line in LISTOPS_TEST.read_text().splitlines()}
    exprs = listops.generate(args.listops_train + args.listops_dev, args.seed,
                             listops.ListOpsConfig(), exclude=test)
    train, dev = out / "listops_train.tsv", out / "listops_dev.tsv"
    listops.write_tsv(train, exprs[: args.listops_train])
    listops.write_tsv(dev, exprs[args.listops_train :])
    return train, dev, time.monotonic() - t0


def listops_bench(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    train, dev, gen_s = listops_files(args, out)
    n, test = args.listops_train, str(LISTOPS_TEST)
    H = args.listops_hidden
    model_keys = [f"model.emb_dim={H}", f"model.hidden={H}", "model.dropout=0.0"]
    jobs = [Job("listops-tree-lstm", "tree-lstm", str(train), test, str(dev),
                [*_train_keys(args, args.listops_epochs, n, args.listops_batch), *model_keys,
                 f"model.encoder={args.listops_encoder}"]),
            Job("listops-tree-bilstm", "tree-bilstm", str(train), test, str(dev),
                [*_train_keys(args, args.listops_baseline_epochs, n, args.listops_batch),
                 *model_keys])]
    rows = run_jobs(_only(jobs, args), out, "root_accuracy", args.jobs)
    sizes = [len(line.split("\t")[1].split()) for line in train.read_text().splitlines()]
    return {"data": {"train": f"{n:,} generated (seed {args.seed}, official d20 settings, test "
                             "expressions excluded)", "dev": f"{args.listops_dev:,} generated",
                     "test": test, "generation_s": round(gen_s, 1),
                     "train_mean_tokens": round(sum(sizes) / len(sizes), 1)},
            "budget": {"tree_lstm_epochs": args.listops_epochs,
                       "baseline_epochs": args.listops_baseline_epochs,
                       "batch_size": args.listops_batch, "max_minutes_per_run": args.max_minutes},
            "setup": {"emb_dim": H, "hidden": H, "dropout": 0.0, "lr": args.lr,
                      "tree_lstm_encoder": args.listops_encoder},
            "target": "Tree-LSTM >= 95% (test); LSTM baseline reported (published 71.5%)",
            "runs": rows}


def _only(jobs: list[Job], args: argparse.Namespace) -> list[Job]:
    return [j for j in jobs if not args.only or j.name in args.only]


# --- report ------------------------------------------------------------------------------------
COLUMNS = [("name", "run", ""), ("root_accuracy", "test root acc.", ".2%"),
           ("binary_collapsed", "binary (P(neg) vs P(pos))", ".2%"),
           ("binary_accuracy", "binary (5-way argmax)", ".2%"),
           ("node_accuracy", "all-node acc.", ".2%"), ("steps", "steps", ","),
           ("best_valid_step", "best dev step", ","),
           ("best_valid_root_accuracy", "best dev root acc.", ".2%"),
           ("train_wall_s", "train wall s", ".0f"), ("train_cpu_s", "train CPU s", ".0f")]


def table(results: dict[str, Any]) -> str:
    parts = []
    for key, title in (("sst", "SST"), ("listops", "ListOps")):
        if key in results:
            cols = COLUMNS if key == "sst" else [c for c in COLUMNS if "binary" not in c[0]]
            parts.append(f"{title}\n\n" + markdown_table(results[key]["runs"], cols))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench", nargs="*", choices=("sst", "listops"), default=["sst", "listops"],
                   help="benchmarks to run; none: print the stored table")
    p.add_argument("--only", nargs="*", default=[],
                   help="run names, e.g. sst-tree-lstm, or sst-tree-lstm-2class for SST's binary "
                   "task (data.polarity=true)")
    p.add_argument("--sst-epochs", type=float, default=4)
    p.add_argument("--sst-batch", type=int, default=25)
    p.add_argument("--sst-hidden", type=int, default=150, help="embedding and hidden size")
    p.add_argument("--sst-emb", type=int, default=0, help="SST embedding size (0: --sst-hidden)")
    p.add_argument("--sst-min-count", type=int, default=1,
                   help="SST: words seen fewer times in training become <unk>")
    p.add_argument("--dropout", type=float, default=0.5, help="SST dropout")
    p.add_argument("--listops-train", type=int, default=20000)
    p.add_argument("--listops-dev", type=int, default=1000)
    p.add_argument("--listops-epochs", type=float, default=2)
    p.add_argument("--listops-baseline-epochs", type=float, default=0.25)
    p.add_argument("--listops-batch", type=int, default=32)
    p.add_argument("--listops-hidden", type=int, default=128)
    p.add_argument("--listops-encoder", choices=("childsum", "binary"), default="childsum",
                   help="the Tree-LSTM: child-sum on the n-ary trees, or binary on the gold "
                        "(left-branching) parse")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak, cosine to 1e-4")
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--evals-per-epoch", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=30, help="wall-clock cap per run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    p.add_argument("--set", nargs="*", default=[], help="more overrides for every run")
    p.add_argument("--out", help="folder for data and run folders (default: a new /tmp folder)")
    p.add_argument("--results", default=str(HERE / "accuracy.json"))
    args = p.parse_args(argv)
    path = Path(args.results)
    if args.bench:
        out = Path(args.out or tempfile.mkdtemp(prefix="seqlab-tree-acc-"))
        out.mkdir(parents=True, exist_ok=True)
        new: dict[str, Any] = {}
        if "sst" in args.bench:
            new["sst"] = sst(args, out)
        if "listops" in args.bench:
            new["listops"] = listops_bench(args, out)
        old = json.loads(path.read_text()) if path.exists() else {}
        for key, part in new.items():
            part["argv"] = sys.argv[1:]
            if args.only and key in old:  # keep the stored runs that were not rerun
                names = {r["name"] for r in part["runs"]}
                part["runs"] = [*(r for r in old[key]["runs"] if r["name"] not in names),
                                *part["runs"]]
        write_results(path, {**{k: v for k, v in old.items() if k in ("sst", "listops")},
                             **new})
    print(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
