"""Eval speed on the built-in demo: wall time (imports included), samples/s, share of time outside the
model, and route-grouped batching vs one sample at a time. Each demo eval runs in a fresh process; with
``--repeats N`` the medians are printed (the machine is shared: single timings are noisy).

    python benchmarks/bench_eval.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def full_demo_eval() -> dict:
    """`scopebench eval` with no arguments (6 demo models x 16 mini tasks) in a fresh run dir, timed from
    before the imports of torch and lmms-eval."""
    start = time.perf_counter()
    import pandas as pd

    from scopebench.evaluation import adapter, runner

    adapters = []
    original = adapter.ScopeLMM.__init__

    def tracked(self, *a, **k):
        original(self, *a, **k)
        adapters.append(self)

    adapter.ScopeLMM.__init__ = tracked
    with tempfile.TemporaryDirectory() as tmp:
        runner.run_eval([], "cambrian16-mini", None, None, 16, "cpu", Path(tmp) / "run", False, json_out=True)
        wall = time.perf_counter() - start
        n = int(pd.read_parquet(Path(tmp) / "run" / "scores.parquet")["n"].sum())
    return {"wall": wall, "inside": sum(lm.model_seconds for lm in adapters), "samples": n,
            "models": len(adapters)}


def demo_evals(repeats: int) -> None:
    """``repeats`` demo evals, each in a fresh process; the median of each figure."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--one-eval"], capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout.splitlines()[-1]))
    wall = statistics.median(r["wall"] for r in runs)
    inside = statistics.median(r["inside"] for r in runs)
    outside = statistics.median(1 - r["inside"] / r["wall"] for r in runs)
    n, loads = runs[0]["samples"], runs[0]["models"]
    print(f"demo eval ({'median of ' + str(repeats) if repeats > 1 else '1 run'}): {wall:.1f} s wall, "
          f"{n} samples, {n / wall:.1f} samples/s, {100 * outside:.0f}% of wall time outside the model "
          f"({inside:.1f} s in the model; {loads} model loads); walls: "
          + ", ".join(f"{r['wall']:.1f}" for r in runs))


def grouped_vs_per_sample(n: int = 96, batch: int = 16) -> None:
    """Throughput of route-grouped batches vs batch size 1, on demo-scope generating answers."""
    from scopebench.demo.world import TASKS, TRAIN_SEED_START, training_examples
    from scopebench.evaluation.adapter import images_to_tensor
    from scopebench.models.registry import load_model

    model = load_model("demo-scope")
    examples = [ex for task in TASKS
                for ex in training_examples(task, range(TRAIN_SEED_START, TRAIN_SEED_START + 8))][:n]
    n = len(examples)
    images = images_to_tensor([ex["image"] for ex in examples], 128)
    prompts = [ex["prompt"] for ex in examples]
    rates = {}
    for size in (batch, 1):
        start = time.perf_counter()
        for i in range(0, n, size):
            model.generate(images[i : i + size], prompts[i : i + size])
        rates[size] = n / (time.perf_counter() - start)
    routes = len(set(model.generate(images, prompts).routes))
    print(f"route-grouped batch {batch}: {rates[batch]:.1f} samples/s; per-sample: {rates[1]:.1f} samples/s; "
          f"ratio {rates[batch] / rates[1]:.2f}x ({routes} distinct routes in the batch set)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="demo evals (fresh processes); medians")
    parser.add_argument("--one-eval", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_eval:
        print(json.dumps(full_demo_eval()))
    else:
        demo_evals(args.repeats)
        grouped_vs_per_sample()
