#!/usr/bin/env bash
# Equal-parameter leaderboard (issue 15): every family sized to the same number of trainable
# parameters by `seqlab compare --params N`, K seeds each (`--seeds K`: mean ± sd), the same
# wall-clock budget per run, one torch thread per run, through the public CLI only.
#
#   benchmarks/leaderboard/run.sh            # the reduced run recorded in README.md
#   benchmarks/leaderboard/run.sh full       # the issue's protocol (~80 CPU-hours)
#
# Environment overrides: DATASETS ("tinyshakespeare ptb"), PARAMS ("500k 2M"), FAMILIES,
# SEEDS, MINUTES, EVAL_INTERVAL (steps between validations, default 50). Each family trains
# in its own `seqlab compare` invocation, started at once and each waiting for a CPU slot
# (SLOT, default /tmp/seqlab-slot when it exists), so two run side by side on a 2-core machine;
# `--resume` keeps the runs a previous invocation finished. A last invocation over all families
# (every run reused) writes the leaderboard, and record.py copies it here with the machine
# description.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-reduced}
if [ "$MODE" = full ]; then
    : "${DATASETS:=tinyshakespeare ptb}" "${PARAMS:=500k 2M}" "${SEEDS:=3}" "${MINUTES:=10}"
    : "${FAMILIES:=ngram rnn lstm gru window tcn wavenet transformer}"
else
    : "${DATASETS:=tinyshakespeare}" "${PARAMS:=500k}" "${SEEDS:=3}" "${MINUTES:=1.5}"
    : "${FAMILIES:=lstm gru rnn,ngram transformer tcn}"
fi
SLOT=${SLOT:-$( [ -x /tmp/seqlab-slot ] && echo /tmp/seqlab-slot || echo "" )}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
TRAIN=(train.threads=1 train.progress=false "train.eval_interval=${EVAL_INTERVAL:-50}"
       train.log_interval=10)

data_args() {
    case $1 in
        # nanoGPT's split: the first 90% trains, the last 10% validates (and is the score)
        tinyshakespeare) echo "--data ../shared/data/tinyshakespeare/input.txt
            data.valid_fraction=0.1 data.test_fraction=0" ;;
        # Mikolov's char-level PTB: space-separated symbols ('_' between words), so each
        # whitespace-separated symbol is one token (word level over the char files)
        ptb) echo "--data ../shared/data/ptb/ptb.char.train.txt
            --valid ../shared/data/ptb/ptb.char.valid.txt
            --test ../shared/data/ptb/ptb.char.test.txt --level word" ;;
        *) echo "unknown dataset $1" >&2; exit 2 ;;
    esac
}

for data in $DATASETS; do
    for params in $PARAMS; do
        out=benchmarks/leaderboard/_work/$data-$params-${MINUTES}min
        mkdir -p "$out"
        # shellcheck disable=SC2046
        common=($(data_args "$data") --params "$params" --seeds "$SEEDS"
                --max-minutes "$MINUTES" --out "$out" --resume "${TRAIN[@]}")
        for fam in $FAMILIES; do
            $SLOT .venv/bin/seqlab compare --models "$fam" "${common[@]}" \
                > "$out/log-$fam.txt" 2>&1 &
        done
        wait
        all=$(echo "$FAMILIES" | tr ' ' ',')
        .venv/bin/seqlab compare --models "$all" "${common[@]}" --json > "$out/stdout.txt" \
            2> "$out/stderr.txt"
        .venv/bin/python -m benchmarks.leaderboard.record "$out"
    done
done
