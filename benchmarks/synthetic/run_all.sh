#!/usr/bin/env bash
# Every synthetic run of the README, each invocation under the shared CPU lock (<= ~13 min).
# Budget: 3 min per model at T=200/500, 6 min (adding T=600) and 5 min (copy T=1000) per model.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
run() { flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.synthetic.run --threads 2 "$@"; }
run --task adding --T 200 --minutes 3
run --task copy --T 500 --minutes 3
run --task adding --T 600 --minutes 6 --models rnn,lstm
run --task adding --T 600 --minutes 6 --models gru,tcn
run --task copy --T 1000 --minutes 5 --models rnn,lstm
run --task copy --T 1000 --minutes 5 --models gru,tcn
