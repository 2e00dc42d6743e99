#!/usr/bin/env bash
# Measure GPU cells on a machine whose image already has torch and that has no network (the lent H100):
# nox comes from carried wheels, bitsandbytes from a carried wheelhouse, torch from the image (install mode
# "system"). Records are appended under OUT/results, which starts as a copy of results/, so cells already
# measured there are skipped (resume) and a call cut off at its time limit still returns what it measured.
#
#   bash scripts/device_run.sh WHEELS OUT PROFILE:BNB [PROFILE:BNB ...]
#   e.g. bash scripts/device_run.sh .whl "$OUT" cuda:0.50.2 cuda-budgets:0.50.2
#
# WHEELS holds nox and its dependencies (py3.12 wheels) and WHEELS/bnb the bitsandbytes wheels, slimmed by
# scripts/slim_wheel.py to the cpu and cuda130 binaries so they fit the 64 MiB carry.
set -u
wheels=$(realpath "$1"); out=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/noxsite "$wheels"/*.whl || exit 1
export PYTHONPATH=/tmp/noxsite  # for nox only: matrix/measure.py keeps it out of the cells
export BNB_MATRIX_INSTALL=system BNB_MATRIX_WHEELHOUSE="$wheels/bnb"
export BNB_MATRIX_INSTALL_NOTE="slim wheel: only the cpu and cuda130 binaries (scripts/slim_wheel.py)"
mkdir -p "$out/results" && cp results/*.jsonl "$out/results/"
export BNB_MATRIX_RESULTS="$out/results" PYTHONUNBUFFERED=1
BNB_MATRIX_RUN_ID=$(python3 -c "from matrix import measure; print(measure.new_run_id(measure.runner_facts()['slug']))")
export BNB_MATRIX_RUN_ID
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
torch=$(python3 -c "import torch; print(torch.__version__)")
for step in "$@"; do
    BNB_MATRIX_PROFILE=${step%%:*} python3 -m nox -s "probe(torch='$torch', bnb='${step#*:}')" 2>&1 \
        | grep -v "^\s*$" | tee -a "$out/nox.log" | grep -E "nox >|Error|error" | cut -c1-220
done
