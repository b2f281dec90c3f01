#!/usr/bin/env bash
# Every synthetic run of the README, each invocation under the shared CPU lock (<= ~16 min).
# Budgets as in the README's table: see its "CPU budget" paragraph.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
run() { flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.synthetic.run "$@"; }
run --threads 2 --task adding --T 200 --minutes 3 --models lstm,tcn
run --threads 2 --task adding --T 200 --minutes 8 --models rnn,gru
run --threads 2 --task copy --T 500 --minutes 3
run --threads 2 --task adding --T 600 --minutes 6 --models rnn,lstm
# the GRU and the TCN at T = 600: 15 minutes each, one thread each, side by side
flock /tmp/seqlab-cpu.lock bash -c '
    .venv/bin/python -m benchmarks.synthetic.run --threads 1 --task adding --T 600 --minutes 15 --models gru &
    .venv/bin/python -m benchmarks.synthetic.run --threads 1 --task adding --T 600 --minutes 15 --models tcn
    wait'
run --threads 2 --task copy --T 1000 --minutes 5 --models rnn,lstm
run --threads 2 --task copy --T 1000 --minutes 5 --models gru,tcn
