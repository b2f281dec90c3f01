"""CRF speed: `seqlab.nn.crf.LinearChainCRF` against pytorch-crf, sentences/s, same run.

    flock /tmp/seqlab-cpu.lock nice -n 5 env OMP_NUM_THREADS=1 \\
        .venv/bin/python -m benchmarks.tagging.crf_speed

CoNLL-2000-like batches: 32 sentences of 25-40 tokens (uniform), padded to the longest one in
the batch, K = 23 chunk tags (B-/I- for 11 chunk types, plus O). Emissions are random: the CRF
never looks at where they came from, so a tagger's time is its encoder's plus this.

* train: the mean NLL, forward and backward (gradients for the emissions and all three score
  tables), as a training step computes it;
* decode: Viterbi, paths returned as Python lists (what pytorch-crf's ``decode`` returns);
* marginals (no gradient) and 5-best: seqlab only, pytorch-crf has neither.

Both run on the same batches with the same scores, interleaved round by round so that a load
change on the shared machine hits both; each rate is the median over rounds, each ratio the
median of the per-round ratios. The run checks that the two agree: NLL to float32 rounding, and
Viterbi paths identical but for near ties. The BIO-constrained rows use well-formed gold tags.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import check_quiet, markdown_table, write_results
from seqlab.nn.crf import LinearChainCRF, bio_constraints

HERE = Path(__file__).parent
CHUNKS = ("ADJP", "ADVP", "CONJP", "INTJ", "LST", "NP", "PP", "PRT", "SBAR", "UCP", "VP")
TAGS = ["O"] + [f"{p}-{c}" for c in CHUNKS for p in "BI"]  # K = 23, as in CoNLL-2000

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # emissions (B, T, K), tags, mask


def make_batches(n: int, batch: int, min_len: int, max_len: int, seed: int) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lengths = torch.randint(min_len, max_len + 1, (batch,), generator=g)
        T = int(lengths.max())
        e = torch.randn(batch, T, len(TAGS), generator=g)
        tags = bio_repair(torch.randint(len(TAGS), (batch, T), generator=g))
        out.append((e, tags, torch.arange(T) < lengths[:, None]))
    return out


def bio_repair(tags: torch.Tensor) -> torch.Tensor:
    """Random tags made well-formed BIO (an I-X that continues no X chunk becomes B-X), so
    the constrained CRF sees allowed gold paths."""
    rows = tags.tolist()
    for row in rows:
        for t, y in enumerate(row):
            if TAGS[y].startswith("I-") and (t == 0 or TAGS[row[t - 1]][2:] != TAGS[y][2:]):
                row[t] = TAGS.index("B-" + TAGS[y][2:])
    return torch.tensor(rows)


def pair(seed: int) -> tuple[LinearChainCRF, LinearChainCRF, Any]:
    """seqlab unconstrained, seqlab with BIO constraints and pytorch-crf, the same scores."""
    import torchcrf

    torch.manual_seed(seed)
    ref = torchcrf.CRF(len(TAGS), batch_first=True)  # uniform(-0.1, 0.1) scores
    ours = LinearChainCRF(len(TAGS))
    ours.load_state_dict(ref.state_dict(), strict=False)  # same names and layout
    bio = LinearChainCRF(len(TAGS), *bio_constraints(TAGS, "BIO"))
    bio.load_state_dict(ref.state_dict(), strict=False)
    return ours, bio, ref


def tasks(ours: LinearChainCRF, bio: LinearChainCRF, ref: Any
          ) -> dict[str, Callable[[Batch], object]]:
    def train(nll: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
              params: list[torch.nn.Parameter]) -> Callable[[Batch], object]:
        def step(b: Batch) -> object:
            e = b[0].requires_grad_(True)
            return torch.autograd.grad(nll(e, b[1], b[2]), [e, *params])
        return step

    return {
        "train/seqlab": train(lambda e, y, m: ours(e, y, m), list(ours.parameters())),
        "train/pytorch-crf": train(lambda e, y, m: -ref(e, y, m, reduction="mean"),
                                   list(ref.parameters())),
        "decode/seqlab": lambda b: ours.viterbi(b[0], b[2]),
        "decode/pytorch-crf": lambda b: ref.decode(b[0], b[2]),
        "train/seqlab BIO-constrained": train(lambda e, y, m: bio(e, y, m),
                                              list(bio.parameters())),
        "decode/seqlab BIO-constrained": lambda b: bio.viterbi(b[0], b[2]),
        "marginals/seqlab": torch.no_grad()(lambda b: ours.marginals(b[0], b[2])),
        "5-best/seqlab": lambda b: ours.nbest(b[0], b[2], k=5),
    }


def agreement(ours: LinearChainCRF, ref: Any, batches: list[Batch]) -> dict[str, Any]:
    """Largest NLL difference, and the Viterbi paths that differ, each with how much lower (in
    float64) the seqlab path scores than pytorch-crf's: a difference is a near tie that float32
    rounding broke the other way, unless that deficit is positive and large."""
    exact = copy.deepcopy(ours).double()
    nll, differ, deficit = 0.0, 0, 0.0
    with torch.no_grad():
        for e, y, m in batches:
            nll = max(nll, float((ours(e, y, m, reduction="none")
                                  + ref(e, y, m, reduction="none")).abs().max()))
            for b, (p, q) in enumerate(zip(ours.viterbi(e, m)[0], ref.decode(e, m),
                                           strict=True)):
                if p != q:
                    differ += 1
                    pq = torch.tensor([p, q])
                    s = exact.score(e[b:b + 1, :len(p)].double().expand(2, -1, -1), pq)
                    deficit = max(deficit, float(s[1] - s[0]))
    return {"max_nll_difference": nll, "sentences": sum(len(b[0]) for b in batches),
            "different_viterbi_paths": differ, "max_viterbi_score_deficit": deficit}


def time_tasks(fns: dict[str, Callable[[Batch], object]], batches: list[Batch], rounds: int
               ) -> dict[str, dict[str, list[float]]]:
    """Sentences per wall second and per process CPU second of each task in every round, the
    tasks interleaved within a round. CPU time is the steadier of the two on a shared machine
    (one thread: it excludes the time another process held the core)."""
    sentences = sum(b[0].shape[0] for b in batches)
    for fn in fns.values():  # warm-up
        for b in batches[:3]:
            fn(b)
    rates: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for b in batches:
                fn(b)
            rates[name]["wall"].append(sentences / (time.perf_counter() - t0))
            rates[name]["cpu"].append(sentences / (time.process_time() - c0))
    return rates


def rows_of(rates: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """Median rates per task; a ratio is the median of the per-round ratios, so a load change
    between rounds cancels out."""
    rows = []
    for name, r in rates.items():
        task, impl = name.split("/")
        if impl == "pytorch-crf":
            continue
        ref = rates.get(f"{task}/pytorch-crf") if impl == "seqlab" else None
        row: dict[str, Any] = {"task": task, "implementation": impl}
        for clock, suffix in (("wall", "sec"), ("cpu", "cpu_sec")):
            row[f"sentences_per_{suffix}"] = statistics.median(r[clock])
            row[f"pytorch_crf_sentences_per_{suffix}"] = \
                statistics.median(ref[clock]) if ref else None
            row[f"ratio_{clock}"] = statistics.median(
                a / b for a, b in zip(r[clock], ref[clock], strict=True)) if ref else None
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=20, help="batches per timed round")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--min-len", type=int, default=25)
    p.add_argument("--max-len", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    check_quiet()
    batches = make_batches(args.batches, args.batch_size, args.min_len, args.max_len, args.seed)
    ours, bio, ref = pair(args.seed)
    agree = agreement(ours, ref, batches)
    rates = time_tasks(tasks(ours, bio, ref), batches, args.rounds)
    rows = rows_of(rates)
    cols = [("task", "task", "s"), ("implementation", "implementation", "s"),
            ("sentences_per_cpu_sec", "seqlab sent/CPU-s", ",.0f"),
            ("pytorch_crf_sentences_per_cpu_sec", "pytorch-crf sent/CPU-s", ",.0f"),
            ("ratio_cpu", "ratio (CPU)", ".2f"), ("sentences_per_sec", "seqlab sent/s", ",.0f"),
            ("pytorch_crf_sentences_per_sec", "pytorch-crf sent/s", ",.0f"),
            ("ratio_wall", "ratio (wall)", ".2f")]
    table = markdown_table(rows, cols)
    print(table)
    print(f"\nagreement: {agree}")
    import torchcrf

    write_results(HERE / "crf_speed.json", {
        "command": "python -m benchmarks.tagging.crf_speed " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "sizes": {"batch": args.batch_size, "lengths": [args.min_len, args.max_len],
                  "num_tags": len(TAGS), "batches_per_round": args.batches,
                  "rounds": args.rounds},
        "pytorch_crf": torchcrf.__version__, "rows": rows, "rounds": rates, "agreement": agree,
        "table": table})


if __name__ == "__main__":
    main()
