#!/usr/bin/env bash
# seqlab compare on tinyshakespeare: n-gram, window MLP, RNN, GRU, LSTM and TCN with default
# model configs, 4 minutes of training each (2 threads; bf16 autocast, AdamW 3e-3 with the cosine
# schedule on the clock), the same char-level 90/5/5 split. Trains in five invocations under the
# shared CPU lock (--resume keeps the models a previous invocation finished), then writes the
# leaderboard with the issue's command shape and records it here with the machine description.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
OUT=benchmarks/leaderboard/_work/compare
ARGS=(--data ../shared/data/tinyshakespeare/input.txt --max-minutes 4 --out "$OUT" --resume
      train.lr=3e-3 train.warmup_steps=50 train.eval_interval=250 train.precision=bf16
      train.threads=2 train.progress=false)
for models in ngram,window rnn gru lstm tcn; do
    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/seqlab compare "${ARGS[@]}" --models "$models"
done
.venv/bin/seqlab compare "${ARGS[@]}" --models ngram,window,rnn,gru,lstm,tcn --json \
    > benchmarks/leaderboard/_work/stdout.txt
.venv/bin/python -m benchmarks.leaderboard.record
