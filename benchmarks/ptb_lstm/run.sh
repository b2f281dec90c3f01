#!/usr/bin/env bash
# Zaremba et al. small LSTM on PTB, in slices of at most ~14 minutes, each under the shared CPU
# lock (other heavy runs interleave between slices). Resumes exactly; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
until .venv/bin/python -m benchmarks.ptb_lstm.run --status; do
    flock /tmp/seqlab-cpu.lock nice -n 5 .venv/bin/python -m benchmarks.ptb_lstm.run --minutes 13
done
