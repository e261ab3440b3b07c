"""Eval speed on the built-in demo: wall time, samples/s, share of time outside the model,
and route-grouped batching vs one sample at a time.

    python benchmarks/bench_eval.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def full_demo_eval() -> None:
    """`scopebench eval` with no arguments (6 demo models x 16 mini tasks), in a fresh run dir."""
    import pandas as pd

    from scopebench.evaluation import adapter, runner

    adapters = []
    original = adapter.ScopeLMM.__init__

    def tracked(self, *a, **k):
        original(self, *a, **k)
        adapters.append(self)

    adapter.ScopeLMM.__init__ = tracked
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        runner.run_eval([], "cambrian16-mini", None, None, 16, "cpu", Path(tmp) / "run", False, json_out=True)
        wall = time.perf_counter() - start
        n = int(pd.read_parquet(Path(tmp) / "run" / "scores.parquet")["n"].sum())
    inside = sum(lm.model_seconds for lm in adapters)
    print(f"demo eval: {wall:.1f} s wall, {n} samples, {n / wall:.1f} samples/s, "
          f"{100 * (1 - inside / wall):.0f}% of wall time outside the model ({inside:.1f} s in the model)")


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
    grouped_vs_per_sample()
    full_demo_eval()
