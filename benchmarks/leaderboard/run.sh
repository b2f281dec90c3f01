#!/usr/bin/env bash
# seqlab compare on tinyshakespeare: n-gram, window MLP, RNN, GRU, LSTM and TCN with default
# configs, 4 minutes of training each (2 threads), the same char-level 90/5/5 split. Trains in
# three invocations under the shared CPU lock (--resume keeps finished models), then writes the
# leaderboard with the issue's command shape and copies the table, JSON and PNG here.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
OUT=benchmarks/leaderboard/_work/compare
ARGS=(--data ../shared/data/tinyshakespeare/input.txt --max-minutes 4 --out "$OUT" --resume
      train.seq_len=256 train.threads=2 train.progress=false)
locked() { flock /tmp/seqlab-cpu.lock nice -n 5 "$@"; }
locked .venv/bin/seqlab compare "${ARGS[@]}" --models ngram,window,rnn
locked .venv/bin/seqlab compare "${ARGS[@]}" --models gru,lstm
locked .venv/bin/seqlab compare "${ARGS[@]}" --models tcn
.venv/bin/seqlab compare "${ARGS[@]}" --models ngram,window,rnn,gru,lstm,tcn --json \
    > benchmarks/leaderboard/_work/stdout.txt
cp "$OUT/leaderboard.json" "$OUT/leaderboard.md" "$OUT/learning_curves.png" benchmarks/leaderboard/
