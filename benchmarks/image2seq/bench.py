"""Image-to-sequence (im2latex on a small scale): exact match, BLEU and image match on a held-out
test set drawn from another seed, with attention (``im2latex``) and without (``im2latex-noattn``,
the decoder sees only the mean-pooled image vector).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.image2seq.bench
    .venv/bin/python -m benchmarks.image2seq.bench --wrap /tmp/seqlab-slot --steps 4000

Both models are trained through the public CLI, at the same time, one thread each, on the same
formulas (``data.path=generate``: the package's grammar, seed 0 for train/valid, a derived seed
for test, test formulas never seen in training). The rendered images are cached once in
``_work/cache`` (``data.cache_dir``), so the two runs and the eval share them. Each run is then
scored by ``seqlab eval RUN --json`` on its test split, and the attention model transcribes a
test image with ``seqlab transcribe --attention-plot``. Writes ``results.json``,
``attention.png`` and prints a Markdown table. Each model runs in its own process (rendering
the shared cache if it is the first, training, evaluating); ``--wrap CMD`` starts it as
``CMD process...``, e.g. a CPU-slot queue. The reported CPU seconds are the training's (its
process and descendants'), the training wall time the trainer's own (``elapsed_s``), not the
time spent waiting for a slot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, write_results

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
WORK = HERE / "_work"
SEQLAB = [sys.executable, "-m", "seqlab"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "src")}


def run(cmd: list[str], log: Path | None = None) -> tuple[str, float, float]:
    """stdout, wall seconds and the child's CPU seconds (its descendants' included)."""
    t0 = time.monotonic()
    with open(log or os.devnull, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env(), cwd=ROOT,
                                text=True)
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}; see {log}")
    return out, time.monotonic() - t0, usage.ru_utime + usage.ru_stime


def data_keys(args: argparse.Namespace) -> list[str]:
    return ["--data", "generate", f"data.n_train={args.n_train}", f"data.n_valid={args.n_valid}",
            f"data.n_test={args.n_test}", "data.seed=0", f"data.max_depth={args.max_depth}",
            f"data.max_tokens={args.max_tokens}", f"data.cache_dir={WORK / 'cache'}"]


def model_keys(args: argparse.Namespace) -> list[str]:
    return [f"model.hidden={args.hidden}", f"model.channels={args.channels}",
            f"model.emb_dim={args.emb_dim}", f"model.height={args.height}",
            f"model.max_tgt_len={args.max_tokens}", f"model.decode.beam_size={args.beam}",
            f"train.max_steps={args.steps}", f"train.max_minutes={args.minutes}",
            f"train.batch_size={args.batch_size}", f"train.lr={args.lr}", "train.threads=1",
            f"train.eval_interval={args.eval_interval}", "train.progress=false", "train.seed=1"]


def warm_cache(args: argparse.Namespace) -> None:
    """Render the formulas once, before the two runs would each render them."""
    from seqlab.models.im2seq import Im2SeqConfig
    from seqlab.tasks.image2seq import ImageDataConfig, prepare

    cfg = ImageDataConfig(n_train=args.n_train, n_valid=args.n_valid, n_test=args.n_test,
                          seed=0, max_depth=args.max_depth, max_tokens=args.max_tokens,
                          cache_dir=str(WORK / "cache"))
    prepare(cfg, WORK, None, Im2SeqConfig(height=args.height, max_tgt_len=args.max_tokens))


def train_and_eval(model: str, args: argparse.Namespace) -> dict[str, Any]:
    out = WORK / model
    shutil.rmtree(out, ignore_errors=True)
    _, _, cpu = run([*SEQLAB, "train", "--model", model, "--out", str(out), *data_keys(args),
                        *model_keys(args)], WORK / f"{model}.train.log")
    text, eval_wall, _ = run([*SEQLAB, "eval", str(out), "--json"], WORK / f"{model}.eval.log")
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    trained = [r for r in records if r.get("kind") == "train"]
    curve = [{k: r[k] for k in ("step", "image_match", "exact_match", "token_accuracy",
                                "bits_per_token")}
             for r in records if r.get("kind") == "eval" and r.get("split") == "valid"]
    wall = round(trained[-1]["elapsed_s"]) if trained else None  # logged every 20 steps
    return {"model": model, **json.loads(text), "train_wall_s": wall,
            "train_cpu_s": round(cpu), "steps": max(r.get("step", 0) for r in records),
            "eval_wall_s": round(eval_wall), "valid_curve": curve,
            "train_loss": [(r["step"], round(r["loss"], 4)) for r in trained]}


def attention_example(args: argparse.Namespace) -> str:
    """Transcribe the first test image with the attention model; draw its attention."""
    import numpy as np
    from PIL import Image

    from seqlab.experiment import load_run
    from seqlab.tasks.image2seq import ImageDataConfig, prepare

    model, config = load_run(WORK / "im2latex")
    cfg = ImageDataConfig(**config["data"])
    test = prepare(cfg, WORK / "im2latex" / "data", model.vocab, model.config).test
    # the first test formula with a fraction: its attention has to move in two dimensions
    i = next((k for k, f in enumerate(test.formulas) if "\\frac" in f and len(f) <= 16), 0)
    png = WORK / "example.png"
    Image.fromarray((255 - test.images[i]).astype(np.uint8)).save(png)
    text, _, _ = run([*SEQLAB, "transcribe", str(WORK / "im2latex"), str(png),
                      "--attention-plot", str(WORK)])
    shutil.copy(WORK / "example.attention.png", HERE / "attention.png")
    return f"test image {i}: gold: {' '.join(test.formulas[i])} | output: {text.strip()}"


def one(model: str, args: argparse.Namespace) -> None:
    """Everything one model needs, in one process (one CPU slot under --wrap): the rendered
    formulas (the first of the two to get here renders them, the other waits on a lock), the
    training, the evaluation and, for the attention model, the attention plot."""
    import fcntl

    with open(WORK / "render.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        warm_cache(args)
    row = train_and_eval(model, args)
    if model == "im2latex":
        row["attention_example"] = attention_example(args)
    (WORK / f"{model}.row.json").write_text(json.dumps(row))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-valid", type=int, default=200)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--max-depth", type=int, default=1, help="data.max_depth")
    p.add_argument("--max-tokens", type=int, default=24, help="data.max_tokens")
    p.add_argument("--height", type=int, default=32, help="model.height")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--emb-dim", type=int, default=64)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--eval-interval", type=int, default=500)
    p.add_argument("--wrap", default="", help="command prefix for each model's process, e.g. "
                   "/tmp/seqlab-slot (a CPU-slot queue)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child process of one model
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.one:
        one(args.one, args)
        return
    models = ["im2latex", "im2latex-noattn"]
    for m in models:
        (WORK / f"{m}.row.json").unlink(missing_ok=True)
    child = [sys.executable, "-m", "benchmarks.image2seq.bench", *sys.argv[1:]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda m: run([*args.wrap.split(), *child, "--one", m],
                                    WORK / f"{m}.log"), models))
    rows = [json.loads((WORK / f"{m}.row.json").read_text()) for m in models]
    example = rows[0].pop("attention_example")
    columns = [("model", "model", ""), ("image_match", "image match", ".1%"),
               ("exact_match", "exact match", ".1%"), ("bleu", "BLEU", ".1f"),
               ("token_accuracy", "token acc. (TF)", ".1%"), ("steps", "steps", "d"),
               ("train_cpu_s", "train CPU s", "d"), ("train_wall_s", "train wall s", "d")]
    table = markdown_table(rows, columns)
    settings = {k: v for k, v in vars(args).items() if k != "one"}
    write_results(HERE / "results.json", {"settings": settings, "rows": rows,
                                          "attention_example": example})
    print(table)
    print(example)


if __name__ == "__main__":
    main()
