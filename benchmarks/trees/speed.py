"""Tree-LSTM training speed: level-wise batching against per-node recursion, in trees/s.

    flock /tmp/seqlab-cpu.lock .venv/bin/python -m benchmarks.trees.speed --seconds 2.5

Data: the SST train trees (../shared/data/sst/trees/train.txt; binary, a label at every node),
or, when they are absent, random binary bracketings of SST-sized sentences (2-52 words, mean
about 19). Model as Tai et al. (2015) on SST: 300-d word embeddings, 150 hidden units, a 5-class
softmax at every node, cross-entropy summed over the nodes of a batch. One step is forward +
backward for a batch of trees.

* **level-wise**: `seqlab.nn.tree` on a `TreeBatch`: one set of matrix products per tree level.
  Figures with and without building the `TreeBatch` in the timed loop.
* **per-node**: the same module's parameters, one node at a time by recursion, as in the
  original Lua implementation: small products per node, one backward per batch of 25 trees.
  Only the word lookups and input projections are hoisted into one GEMM per batch.

Both run in the same process, interleaved round by round, single-threaded (the machine is
shared; PERF-NOTES trap 1); each figure is the median over the rounds, in trees per second of
CPU time (steadier on a shared machine) and of wall time. The ratios are level-wise over
per-node, for the same model.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import SHARED_DATA, check_quiet, markdown_table, write_results
from seqlab.data.trees import Tree, read_trees
from seqlab.nn.tree import BinaryTreeLSTM, ChildSumTreeLSTM, TreeBatch

HERE = Path(__file__).parent
SST_TRAIN = SHARED_DATA / "sst" / "trees" / "train.txt"
EMB, HIDDEN, CLASSES = 300, 150, 5  # Tai et al.'s SST configuration


def load_trees(n: int, seed: int) -> tuple[list[Tree], str]:
    if SST_TRAIN.exists():
        trees = read_trees(SST_TRAIN, binary=True)
        random.Random(seed).shuffle(trees)
        return trees[:n], f"SST train ({SST_TRAIN.name}), {n} of {len(trees)} trees, shuffled"
    rng = random.Random(seed)
    return [random_binary(rng, rng.randint(2, 36)) for _ in range(n)], "random SST-sized trees"


def random_binary(rng: random.Random, n_words: int) -> Tree:
    """A random bracketing of n words, labels 0-4."""
    if n_words == 1:
        return Tree(rng.randrange(5), f"w{rng.randrange(5000)}")
    k = rng.randint(1, n_words - 1)
    kids = (random_binary(rng, k), random_binary(rng, n_words - k))
    return Tree(rng.randrange(5), None, kids)


class Model(nn.Module):
    """Embedding -> tree encoder -> per-node classifier."""

    encoder: BinaryTreeLSTM | ChildSumTreeLSTM

    def __init__(self, encoder: BinaryTreeLSTM | ChildSumTreeLSTM, vocab_size: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, EMB)
        self.encoder = encoder
        self.head = nn.Linear(HIDDEN, CLASSES)


def levelwise_states(model: Model, batch: TreeBatch) -> Tensor:
    return model.encoder(batch, model.emb(batch.tokens))  # (num_nodes, H)


def per_node_states(model: Model, trees: Sequence[Tree], ids: dict[str, int]) -> Tensor:
    """One node at a time, post-order, with the encoder's own parameters. The word lookups and
    projections are hoisted into one GEMM, as in the level-wise code; the rest is per node."""
    enc = model.encoder
    H = HIDDEN
    out: list[Tensor] = []
    zero = torch.zeros(1, H)
    words = [n.word for t in trees for n in t.nodes() if n.word is not None]  # post-order
    wx = iter(F.linear(model.emb(torch.tensor([ids[w] for w in words])), enc.weight_x)
              .unsqueeze(1).unbind(0))  # (1, 4H) each; unbind: one backward node for all

    def node(t: Tree) -> tuple[Tensor, Tensor]:
        kids = [node(c) for c in t.children]
        pre = enc.bias.unsqueeze(0)  # (1, 4H): i, o, u, f
        if t.word is not None:
            pre = pre + next(wx)
        if isinstance(enc, BinaryTreeLSTM):
            hl, cl = kids[0] if kids else (zero, zero)
            hr, cr = kids[1] if kids else (zero, zero)
            g = F.linear(torch.cat([hl, hr], 1), enc.weight_h)  # (1, 5H)
            i, o, u = (pre[:, : 3 * H] + g[:, : 3 * H]).chunk(3, 1)
            fl = torch.sigmoid(pre[:, 3 * H :] + g[:, 3 * H : 4 * H])
            fr = torch.sigmoid(pre[:, 3 * H :] + g[:, 4 * H :])
            c = torch.sigmoid(i) * torch.tanh(u) + fl * cl + fr * cr
        else:
            h_sum = sum((h for h, _ in kids), zero)
            i, o, u = (pre[:, : 3 * H] + F.linear(h_sum, enc.weight_iou)).chunk(3, 1)
            c = torch.sigmoid(i) * torch.tanh(u)
            for h_k, c_k in kids:
                c = c + torch.sigmoid(pre[:, 3 * H :] + F.linear(h_k, enc.weight_f)) * c_k
        h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
        return h, c

    for t in trees:
        node(t)
    return torch.cat(out)


def step(model: Model, states: Tensor, labels: Tensor) -> None:
    loss = F.cross_entropy(model.head(states), labels, reduction="sum")
    model.zero_grad(set_to_none=True)
    loss.backward()


def trees_per_second(run: Callable[[int], int], seconds: float) -> tuple[float, float]:
    """Call run(k) for batch k = 0, 1, ... (it returns its number of trees) for `seconds` of
    wall time; trees per second of wall time and of this process's CPU time. With one thread
    and a shared machine the CPU-time figure is the steadier one: waiting for a core is left out
    (contention for caches is not)."""
    run(0)  # warm-up
    n, k, t0, c0 = 0, 1, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        n += run(k)
        k += 1
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def summary(rates: list[tuple[float, float]], base: list[tuple[float, float]] | None) -> dict:
    """Medians over the rounds, and ratios to `base`'s medians."""
    wall, cpu = (statistics.median(r[i] for r in rates) for i in (0, 1))
    out = {"trees_per_sec": wall, "trees_per_cpu_sec": cpu, "rounds_wall": [r[0] for r in rates],
           "rounds_cpu": [r[1] for r in rates]}
    if base is not None:
        out["ratio_wall"] = wall / statistics.median(r[0] for r in base)
        out["ratio"] = cpu / statistics.median(r[1] for r in base)
    return out


def bench(kind: str, trees: list[Tree], ids: dict[str, int], batch_sizes: Sequence[int],
          per_node_batch: int, seconds: float, rounds: int) -> list[dict]:
    torch.manual_seed(0)
    encoder = BinaryTreeLSTM(EMB, HIDDEN) if kind == "binary" else ChildSumTreeLSTM(EMB, HIDDEN)
    model = Model(encoder, len(ids))
    labels = {id(t): torch.tensor([n.label for n in t.nodes()]) for t in trees}

    def chunk(k: int, size: int) -> list[Tree]:
        start = (k * size) % (len(trees) - size + 1)
        return trees[start : start + size]

    prebuilt = {b: [TreeBatch.build(chunk(k, b), ids.__getitem__)
                    for k in range(len(trees) // b)] for b in batch_sizes}

    def levelwise(size: int, build: bool) -> Callable[[int], int]:
        def run(k: int) -> int:
            part = chunk(k, size)
            batch = (TreeBatch.build(part, ids.__getitem__) if build
                     else prebuilt[size][k % len(prebuilt[size])])
            step(model, levelwise_states(model, batch), batch.labels)
            return size
        return run

    def per_node(k: int) -> int:
        part = chunk(k, per_node_batch)
        step(model, per_node_states(model, part, ids), torch.cat([labels[id(t)] for t in part]))
        return per_node_batch

    # The two must agree before their speeds mean anything.
    part = chunk(0, per_node_batch)
    with torch.no_grad():
        diff = (levelwise_states(model, TreeBatch.build(part, ids.__getitem__))
                - per_node_states(model, part, ids)).abs().max().item()

    runs: dict[tuple[str, int], Callable[[int], int]] = {("per-node", per_node_batch): per_node}
    for b in batch_sizes:
        runs[("level-wise", b)] = levelwise(b, build=False)
        runs[("level-wise + build", b)] = levelwise(b, build=True)
    speeds: dict[tuple[str, int], list[tuple[float, float]]] = {key: [] for key in runs}
    for _ in range(rounds):  # interleaved, so a noisy moment hits every method alike
        for key, run in runs.items():
            speeds[key].append(trees_per_second(run, seconds))
    base = speeds[("per-node", per_node_batch)]
    return [{"model": f"{kind} Tree-LSTM", "method": method, "batch": b,
             **summary(v, base), "max_abs_diff_vs_per_node": diff}
            for (method, b), v in speeds.items()]


def bench_build(trees: list[Tree], ids: dict[str, int], size: int, seconds: float,
                rounds: int) -> dict:
    """`TreeBatch.build` alone: the Python side of level-wise batching."""
    def run(k: int) -> int:
        start = (k * size) % (len(trees) - size + 1)
        TreeBatch.build(trees[start : start + size], ids.__getitem__)
        return size
    v = [trees_per_second(run, seconds) for _ in range(rounds)]
    return {"model": "-", "method": "TreeBatch.build only", "batch": size, **summary(v, None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.5, help="per figure and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--trees", type=int, default=2000, help="trees drawn from the data")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[25, 200])
    p.add_argument("--models", nargs="+", default=["binary", "child-sum"])
    args = p.parse_args()
    torch.set_num_threads(1)
    check_quiet()
    trees, source = load_trees(args.trees, seed=0)
    words = sorted({w for t in trees for w in t.words()})
    ids = {w: i for i, w in enumerate(words)}
    nodes = sum(len(t.nodes()) for t in trees)
    print(f"{source}: {nodes / len(trees):.1f} nodes per tree, "
          f"height up to {max(t.height() for t in trees)}")
    rows = []
    for kind in args.models:
        rows += bench(kind, trees, ids, args.batch_sizes, 25, args.seconds, args.rounds)
    rows.append(bench_build(trees, ids, 25, args.seconds, args.rounds))
    cols = [("model", "model", "s"), ("method", "method", "s"), ("batch", "trees/batch", "d"),
            ("trees_per_cpu_sec", "trees per CPU-s", ",.0f"), ("ratio", "vs per-node", ".1f"),
            ("trees_per_sec", "trees per wall-s", ",.0f"), ("ratio_wall", "vs per-node", ".1f")]
    table = markdown_table(rows, cols)
    print(table)
    print("max |level-wise - per-node| state difference (float32): "
          + ", ".join(f"{r['model']}: {r['max_abs_diff_vs_per_node']:.1e}" for r in rows
                      if r["method"] == "per-node"))
    write_results(HERE / "results.json", {
        "command": "python -m benchmarks.trees.speed " + " ".join(
            [f"--seconds {args.seconds}", f"--rounds {args.rounds}", f"--trees {args.trees}"]),
        "data": source, "nodes_per_tree": nodes / len(trees), "emb": EMB, "hidden": HIDDEN,
        "threads": torch.get_num_threads(), "rows": rows, "table": table})


if __name__ == "__main__":
    main()
