#!/usr/bin/env bash
# scopebench's own gate run: two demo models on four mini tasks (20 samples each), then their FLOPs.
# Usage: demo_gate.sh RUN_DIR. tests/test_gate.py checks it against tests/baselines/demo-gate;
# `make gate-baseline` writes that baseline with this same script.
set -euo pipefail
out=${1:?usage: demo_gate.sh RUN_DIR}
scopebench=${SCOPEBENCH:-scopebench}
models=(demo-scope demo-baseline-all)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
"$scopebench" eval "${models[@]}" --tasks GQA,ChartQA,DocVQA,CV-Bench-2D --limit 20 --output "$out" --json \
    > /dev/null
"$scopebench" flops "${models[@]}" --output "$out" --json > /dev/null
