#!/usr/bin/env bash
# Wheels the GPU machine lacks (it has torch, transformers, timm, accelerate, safetensors, pandas, typer and
# rich, and reaches no registry), built here into gpu_wheels/ (git-ignored; about 6 MB) for the device
# tool to carry. lmms-eval's own dependency tree is not carried: gpu_check.sh skips eval without it.
#
#     bash benchmarks/gpu_wheels.sh        # then: run(carry=["gpu_wheels"], command="bash benchmarks/gpu_check.sh")
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
rm -rf gpu_wheels && mkdir gpu_wheels
pins=$(grep -iE '^(open_clip_torch|fvcore|iopath|yacs|portalocker|ftfy|filelock|lmms_eval)==' constraints.txt)
# shellcheck disable=SC2086
$PIP wheel --quiet --no-deps -c constraints.txt -w gpu_wheels $pins
du -sh gpu_wheels && ls gpu_wheels
