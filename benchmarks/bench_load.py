"""Loading at scale: peak memory and time of `load_checkpoint` against transformers' `from_pretrained`.

Assembles a ~1 B-parameter bf16 checkpoint (a Qwen2 LLM of 20 layers at hidden 1536, two small timm
encoders, a router; random weights, sharded at 500 MB) with `scopebench assemble`, saves its LLM as a
transformers folder, then, each in a fresh process, loads both and reports the peak RSS (ru_maxrss) right
after loading and after a forward pass plus a read of every weight, as a ratio to the weights' size on
disk, and the load time. Each load runs ``--repeats`` times; the medians are printed.

    python benchmarks/bench_load.py [--repeats 3] [--keep DIR]

Targets (issue #22): peak RSS / weights <= 0.6 after loading and <= 1.2 after touching every weight,
load time <= 1.5x transformers'. At 1 B the imports (torch, transformers, timm, open_clip: ~0.9 GB, half
the weights) weigh on every ratio; the script also prints each load's own memory (peak minus the imports)
and the ratio that gives at 10 B (20 GB), with the arithmetic; then the time of the model fingerprint
every `eval` computes, with and without the digest cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BIG_GB = 20.0  # a 10 B-parameter bf16 checkpoint

CONFIG = {
    "name": "bench-1b",
    "llm": {"spec": "hf:bench-1b-llm", "config": {
        "model_type": "qwen2", "vocab_size": 16384, "hidden_size": 1536, "intermediate_size": 8960,
        "num_hidden_layers": 20, "num_attention_heads": 12, "num_key_value_heads": 2,
        "max_position_embeddings": 4096, "tie_word_embeddings": False}},
    "shared": {"spec": "timm:vit_small_patch16_224", "image_size": 224},
    "routed": {"conv": {"spec": "timm:convnext_atto", "image_size": 224},
               "vit": {"spec": "timm:vit_tiny_patch16_224", "image_size": 224}},
    "policy": "router",
    "router": {"dim": 256, "heads": 4},
}

# Runs in a fresh process: load, measure, forward, touch every weight, measure; prints one JSON line.
CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
import torch
import transformers.models.qwen2.modeling_qwen2
which, path = sys.argv[1], sys.argv[2]
if which == "scopebench":  # what each needs imported first, timed apart from the load
    import accelerate, open_clip, timm
    import scopebench.models.checkpoint, scopebench.models.vlm
imported = time.perf_counter()
rss_imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if which == "scopebench":
    from scopebench.models.checkpoint import load_checkpoint
    model = load_checkpoint(path)
    llm = model.llm
else:
    from transformers import AutoModelForCausalLM
    model = llm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
loaded = time.perf_counter()
rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
dtypes = sorted({str(p.dtype) for p in model.parameters()})
with torch.no_grad():
    ids = torch.randint(0, 1000, (1, 32))
    if which == "scopebench":
        model(torch.rand(1, 3, 224, 224, dtype=torch.bfloat16), ids, torch.ones_like(ids))
    else:
        llm(input_ids=ids)
    for p in model.parameters():  # read every weight (a bf16 sum allocates no copy)
        float(p.sum())
rss_touched = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"load_s": loaded - imported, "import_s": imported - start, "rss_loaded": rss_loaded,
                  "rss_imported": rss_imported, "rss_touched": rss_touched, "dtypes": dtypes}))
"""


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def measure(which: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, which, str(path)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{which} load failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the checkpoints here and keep them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="scopebench-bench-load-"))
    root.mkdir(parents=True, exist_ok=True)
    ckpt, hf = root / "ckpt", root / "llm-hf"
    if not ckpt.exists():
        (root / "bench-1b.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "scopebench.cli", "assemble", str(root / "bench-1b.yaml"), "-o",
                        str(ckpt), "--dtype", "bfloat16", "--max-shard-size", "500MB", "--allow-random"],
                       check=True)
        print(f"assemble: {time.perf_counter() - start:.1f} s")
    if not hf.exists():
        subprocess.run([sys.executable, "-c", (
            "import sys; from scopebench.models.checkpoint import load_checkpoint\n"
            "load_checkpoint(sys.argv[1]).llm.save_pretrained(sys.argv[2], max_shard_size='500MB')"),
            str(ckpt), str(hf)], check=True)
    sizes = {"scopebench": weights_bytes(ckpt), "transformers": weights_bytes(hf)}
    shards = len(list(ckpt.glob("*.safetensors")))
    print(f"checkpoint: {sizes['scopebench'] / 1e9:.2f} GB in {shards} shards; its LLM as a transformers "
          f"folder: {sizes['transformers'] / 1e9:.2f} GB")
    runs = {w: [measure(w, ckpt if w == "scopebench" else hf) for _ in range(args.repeats)] for w in sizes}
    keys = ("load_s", "import_s", "rss_imported", "rss_loaded", "rss_touched")
    med = {w: {k: statistics.median(r[k] for r in rs) for k in keys} for w, rs in runs.items()}
    print(f"{'load (peak RSS as a ratio to the weights)':<42} {'after load':>10} {'touched':>8} "
          f"{'imports':>8} {'load':>6} {'imports':>8}  dtypes")
    for w, m in med.items():
        label = {"scopebench": "scopebench load_checkpoint"}.get(w, "transformers from_pretrained (its LLM)")
        print(f"{label:<42} {m['rss_loaded'] / sizes[w]:>10.2f} {m['rss_touched'] / sizes[w]:>8.2f} "
              f"{m['rss_imported'] / sizes[w]:>8.2f} {m['load_s']:>5.1f}s {m['import_s']:>7.1f}s  "
              f"{','.join(runs[w][0]['dtypes'])}")
    ratio = med["scopebench"]["load_s"] / med["transformers"]["load_s"]
    print(f"load time ratio scopebench / transformers: {ratio:.2f}; 'imports': the process after importing "
          f"what it needs, before loading (medians of {args.repeats} fresh processes each)")
    print(f"without the imports, which do not grow with the model; and extrapolated to a {BIG_GB:.0f} GB "
          f"(10 B bf16) checkpoint as (imports + own x {BIG_GB:.0f} GB) / {BIG_GB:.0f} GB:")
    for w, m in med.items():
        base = m["rss_imported"]
        own = {k: (m[k] - base) / sizes[w] for k in ("rss_loaded", "rss_touched")}
        gb, n = base / 1e9, f"{BIG_GB:.0f}"
        at_scale = [f"{k} ({gb:.2f} + {v:.2f} x {n}) / {n} = {(gb + v * BIG_GB) / BIG_GB:.2f}"
                    for k, v in (("after load", own["rss_loaded"]), ("touched", own["rss_touched"]))]
        print(f"  {w:<12} own: after load {own['rss_loaded']:.2f}, touched {own['rss_touched']:.2f}; "
              f"at {n} GB: {', '.join(at_scale)}")
    fingerprint_times(ckpt, sizes["scopebench"], root / "digest-cache")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


FINGERPRINT_CHILD = """
import sys, time
from scopebench.models.fingerprint import model_fingerprint
start = time.perf_counter()
model_fingerprint(sys.argv[1])
print(time.perf_counter() - start)
"""


def fingerprint_times(ckpt: Path, size: int, cache: Path) -> None:
    """The model fingerprint every `eval` computes, in fresh processes: with an empty digest cache (every
    byte hashed) and again with the digests it kept."""
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "SCOPEBENCH_CACHE": str(cache)}
    cold, warm = (float(subprocess.run([sys.executable, "-c", FINGERPRINT_CHILD, str(ckpt)], env=env,
                                       check=True, capture_output=True, text=True).stdout) for _ in range(2))
    gb = size / 1e9
    print(f"fingerprint ({gb:.2f} GB, page cache warm): {cold:.2f} s hashing every byte ({cold / gb:.2f} s "
          f"per GB, {cold / gb * BIG_GB:.0f} s at {BIG_GB:.0f} GB), {warm:.3f} s with the digest cache")


if __name__ == "__main__":
    main()
