#!/usr/bin/env bash
# GPU check (under 5 minutes on a GPU machine): tiny train/eval/sample on the device, and the
# tinyshakespeare LSTM's training tokens/s on the device against the CPU. Writes results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
test -x .venv/bin/python || make .venv/.installed
.venv/bin/python -m benchmarks.device.check "$@"
