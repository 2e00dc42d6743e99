#!/usr/bin/env bash
# Pre-quantized checkpoints on the lent GPU (no network, torch in the image): like scripts/device_run.sh, nox from
# carried wheels, bitsandbytes (slimmed) and transformers 4.57 from a carried wheelhouse, install mode "system",
# but the steps are `nox -s readback` cells, each with its phase, all in one call (a fresh machine has an empty
# checkpoint cache, so the writers must run on the same machine as the readers). After every step this run's
# records are copied to OUT/results, so a call cut off at its limit still returns what it measured.
#
#   bash scripts/device_readback.sh WHEELS OUT PHASE:BNB:TRANSFORMERS [...]
#   e.g. bash scripts/device_readback.sh .whl "$OUT" write:0.50.2:5.17.0 read:0.50.2:5.17.0
set -u
wheels=$(realpath "$1"); out=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/noxsite "$wheels"/*.whl || exit 1
export PYTHONPATH=/tmp/noxsite  # for nox only: the cells never see it (install.cell_env)
export BNB_MATRIX_INSTALL=system BNB_MATRIX_WHEELHOUSE="$wheels/bnb" BNB_MATRIX_PROFILE=${BNB_MATRIX_PROFILE:-prequant-cuda}
export BNB_MATRIX_INSTALL_NOTE="slim wheel: only the cpu and cuda130 binaries (scripts/slim_wheel.py)"
work=$(mktemp -d /tmp/bnb-results.XXXX)
mkdir -p "$out/results"
export BNB_MATRIX_RESULTS="$work" PYTHONUNBUFFERED=1
BNB_MATRIX_RUN_ID=$(python3 -c "from matrix.measure.jobs import new_run_id; from matrix.measure.runner import runner_facts
print(new_run_id(runner_facts()['slug']))")
export BNB_MATRIX_RUN_ID
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
torch=$(python3 -c "import torch; print(torch.__version__)")
deadline=${BNB_MATRIX_DEADLINE:-$(( $(date +%s) + 560 ))}
for step in "$@"; do
    IFS=: read -r phase bnb tf <<<"$step"
    started=$(date +%s)
    left=$(( deadline - started ))
    if [ "$left" -lt 20 ]; then echo "step $step: not started (deadline)" | tee -a "$out/nox.log"; continue; fi
    timeout -s INT "$left" python3 -m nox -s "readback(torch='$torch', bnb='$bnb', transformers='$tf')" \
        -- --phase "$phase" 2>&1 | grep -v "^\s*$" | tee -a "$out/nox.log" | grep -E "nox >|Error" | cut -c1-200
    echo "step $step: $(( $(date +%s) - started )) s" | tee -a "$out/nox.log"
    [ -f "$work/$BNB_MATRIX_RUN_ID.jsonl" ] && cp "$work/$BNB_MATRIX_RUN_ID.jsonl" "$out/results/"
done
df -h /root | tail -1; du -sh ~/.cache/bnb-matrix 2>/dev/null
