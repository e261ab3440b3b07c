"""Speed of `scopebench flops scope-paper --meta`: wall time and peak memory (max RSS).

Counts the paper-scale SCOPE preset (Qwen2.5-7B LLM, Qwen2.5-VL shared encoder, 4 routed
encoders) on the meta device: every routed path plus the all-encoders reference path, each
component, prefill and decode. Target on a 2-core machine: <= 60 s and <= 4 GB, imports included.

    python benchmarks/bench_flops.py [MODEL ...]      # default: scope-paper
"""

from __future__ import annotations

import resource
import sys
import time

START = time.perf_counter()


def main(models: list[str]) -> None:
    from scopebench.profiling.flops import profile
    from scopebench.profiling.loading import load_for_flops

    imported = time.perf_counter()
    print(f"imports: {imported - START:.1f} s")
    for ref in models:
        t0 = time.perf_counter()
        target = load_for_flops(ref, None, meta=True)
        t1 = time.perf_counter()
        result = profile(target, prompt_tokens=64, generated_tokens=16, counter="torch")
        t2 = time.perf_counter()
        print(f"{ref}: build {t1 - t0:.1f} s, count {t2 - t1:.1f} s ({len(result['paths'])} paths)")
        for p in result["paths"]:
            saving = "" if p["saving_vs_all"] is None else f"  saving vs all {100 * p['saving_vs_all']:.1f}%"
            print(f"  {p['path']:<58} {p['total']['flops'] / 1e12:8.3f} TFLOPs{saving}")
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    wall = time.perf_counter() - START
    print(f"wall time {wall:.1f} s (target <= 60), peak memory {rss_gb:.2f} GB (target <= 4)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["scope-paper"])
