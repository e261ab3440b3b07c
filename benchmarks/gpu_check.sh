#!/usr/bin/env bash
# One prepared GPU check (issue #22), at most ~8 minutes: assemble a paper-scale random checkpoint in bf16,
# load it on one GPU (time, memory), time the scope-paper paths with CUDA events, and, where lmms-eval
# could be carried, evaluate the demo on two mini tasks in bf16 on CUDA. Figures go to $OUT/gpu_check/.
#
#     bash benchmarks/gpu_wheels.sh                                   # here: the wheels to carry
#     DEVICE=cpu PRESET=cambrian-1 SCALE=tiny bash benchmarks/gpu_check.sh   # CPU dry run of the same steps
#     device tool: run(carry=["gpu_wheels"], command="bash benchmarks/gpu_check.sh", timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-scope-paper}
SCALE=${SCALE:-paper}               # tiny: a toy-width copy of the preset, for the CPU dry run
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-check-out}
WORK=${WORK:-/tmp/gpu-check}
RES="$OUT/gpu_check"
mkdir -p "$RES" "$WORK"
log() { echo "[$(date +%T)] $*" | tee -a "$RES/log.txt"; }

if [ -d gpu_wheels ]; then
  log "installing carried wheels"
  $PY -m pip install --quiet --no-index --no-deps --find-links gpu_wheels gpu_wheels/*.whl >>"$RES/log.txt" 2>&1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee -a "$RES/log.txt"

config="$PRESET"
if [ "$SCALE" = tiny ]; then  # the preset's structure at toy width: the same code paths, in seconds
  config="$WORK/tiny.yaml"
  $PY - "$PRESET" "$config" <<'EOF'
import sys, yaml
from scopebench.models.registry import resolve
data = resolve(sys.argv[1]).config.to_dict()
data["llm"]["config"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=512)
for enc in [data["shared"], *data["routed"].values()]:
    enc["image_size"] = 112  # a multiple of every patch and merge size
    if enc.get("config"):
        enc["config"].update({k: v for k, v in dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              depth=1, num_attention_heads=2, num_heads=2, out_hidden_size=64).items()
                              if k in enc["config"]})
data["router"]["dim"] = 32
yaml.safe_dump(data, open(sys.argv[2], "w"), sort_keys=False)
EOF
fi

log "assemble $config (bf16, random, 5GB shards)"
rm -rf "$WORK/ckpt"
/usr/bin/time -v $PY -m scopebench.cli assemble "$config" -o "$WORK/ckpt" --dtype bfloat16 --allow-random \
  --json >"$RES/assemble.json" 2>"$RES/assemble.time" || log "assemble failed: $(tail -3 "$RES/assemble.time")"
grep -E "Elapsed|Maximum resident" "$RES/assemble.time" | tee -a "$RES/log.txt"

log "load on $DEVICE"
$PY - "$WORK/ckpt" "$DEVICE" >"$RES/load.json" 2>>"$RES/log.txt" <<'EOF'
import json, resource, sys, time
import torch
from scopebench.models.registry import load_model
folder, device = sys.argv[1], sys.argv[2]
start = time.perf_counter()
model = load_model(folder, device=device, dtype="bfloat16")
if device.startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"load_s": seconds, "weights_gb": weights / 1e9,
                  "gpu_allocated_gb": torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None,
                  "host_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "dtypes": sorted({str(p.dtype) for p in model.parameters()})}))
EOF
cat "$RES/load.json" | tee -a "$RES/log.txt"

log "latency of every path of $WORK/ckpt on $DEVICE (CUDA events there)"
$PY -m scopebench.cli latency "$WORK/ckpt" --device "$DEVICE" --dtype bfloat16 --repeats 10 --warmup 3 --json \
  >"$RES/latency.json" 2>>"$RES/log.txt" || log "latency failed"

if $PY -c "import lmms_eval" 2>/dev/null; then
  log "eval demo-scope on GQA and MMVP, --limit 20, bf16 on $DEVICE"
  $PY -m scopebench.cli eval demo-scope --tasks GQA,MMVP --limit 20 --device "$DEVICE" --dtype bfloat16 \
    --output "$RES/run" --json >"$RES/eval.json" 2>>"$RES/log.txt" || log "eval failed"
else
  log "lmms-eval is not installed here: eval skipped"
fi
log "done"
