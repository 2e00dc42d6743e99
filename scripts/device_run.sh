#!/usr/bin/env bash
# Measure GPU cells on a machine whose image already has torch and that has no network (the lent H100):
# nox comes from carried wheels, bitsandbytes (and transformers with its dependencies) from a carried wheelhouse,
# torch from the image (install mode "system"). Records go to a working copy of results/ (so cells already
# measured there are skipped: resume); after every step this run's file is copied to OUT/results, so a call cut
# off at its time limit still returns what it measured, and OUT holds only new files (the device tool returns 8).
#
#   bash scripts/device_run.sh WHEELS OUT PROFILE:BNB [PROFILE:BNB ...]
#   e.g. bash scripts/device_run.sh .whl "$OUT" cuda:0.50.2 cuda-budgets:0.50.2
#
# WHEELS holds nox and its dependencies (py3.12 wheels) and WHEELS/bnb the wheelhouse: bitsandbytes wheels slimmed
# by scripts/slim_wheel.py (every native library a cu130 torch could load, plus cpu) so they fit the 64 MiB carry,
# and transformers / tokenizers / huggingface-hub wheels for transformers releases the image does not have.
# BNB_MATRIX_DEADLINE (epoch seconds; default: 560 s from now) bounds the steps, so the copy after each happens
# before the device tool's 10-minute limit; steps left when it passes are not started.
set -u
wheels=$(realpath "$1"); out=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/noxsite "$wheels"/*.whl || exit 1
export PYTHONPATH=/tmp/noxsite  # for nox only: matrix/measure.py keeps it out of the cells
export BNB_MATRIX_INSTALL=system BNB_MATRIX_WHEELHOUSE="$wheels/bnb"
export BNB_MATRIX_INSTALL_NOTE="slim wheel: only the cpu and cuda130 binaries (scripts/slim_wheel.py)"
work=$(mktemp -d /tmp/bnb-results.XXXX)
mkdir -p "$out/results" && cp results/*.jsonl "$work/"
export BNB_MATRIX_RESULTS="$work" PYTHONUNBUFFERED=1
BNB_MATRIX_RUN_ID=$(python3 -c "from matrix import measure; print(measure.new_run_id(measure.runner_facts()['slug']))")
export BNB_MATRIX_RUN_ID
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
torch=$(python3 -c "import torch; print(torch.__version__)")
deadline=${BNB_MATRIX_DEADLINE:-$(( $(date +%s) + 560 ))}
for step in "$@"; do
    started=$(date +%s)
    left=$(( deadline - started ))
    if [ "$left" -lt 30 ]; then echo "step $step: not started (deadline)" | tee -a "$out/nox.log"; continue; fi
    BNB_MATRIX_PROFILE=${step%%:*} timeout -s INT "$left" \
        python3 -m nox -s "probe(torch='$torch', bnb='${step#*:}')" 2>&1 \
        | grep -v "^\s*$" | tee -a "$out/nox.log" | grep -E "nox >|Error|error" | cut -c1-220
    echo "step $step: $(( $(date +%s) - started )) s" | tee -a "$out/nox.log"
    [ -f "$work/$BNB_MATRIX_RUN_ID.jsonl" ] && cp "$work/$BNB_MATRIX_RUN_ID.jsonl" "$out/results/"
done
