#!/usr/bin/env bash
# Reproduce every table of benchmarks/classical/README.md, one benchmark at a time under the
# shared CPU lock. Results: benchmarks/classical/results/NAME.json (+ NAME.md, the printed table).
#
#   benchmarks/classical/run_all.sh ["NAME NAME ..." ...]   # default: all of them
#
# Each argument is a group of benchmarks run under one hold of the lock.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE  # every library single-threaded: a fair race
benchmarks/classical/setup_kenlm.sh
mkdir -p benchmarks/classical/results
# Two lock holds of under ~10 minutes each, rather than one wait per benchmark.
groups=("${@:-hmm kalman ngram particle}")
[ $# -eq 0 ] && groups+=("ptb entropy")
for group in "${groups[@]}"; do
    flock /tmp/seqlab-cpu.lock nice -n 5 bash -c '
        for b in '"$group"'; do
            .venv/bin/python -m "benchmarks.classical.$b" | tee "benchmarks/classical/results/$b.md"
        done'
done
