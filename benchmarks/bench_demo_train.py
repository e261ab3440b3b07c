"""Time the demo recipe (`scopebench demo train`) and compare its output with the shipped checkpoints.

Target on a 2-core machine: <= 30 min. Prints the wall time, peak memory (max RSS) and, for each
demo model, whether the retrained weights, config and tokenizer equal the shipped ones bit for bit
(safetensors headers may order metadata differently, so tensors are compared, not file bytes) and the
largest weight difference. The recipe is bit-identical from run to run on one machine, but CPUs differ
in their floating-point kernels and 1460 training steps amplify that: on another CPU expect every
model's weights to differ (evaluate DIR's models to compare scores).

    python benchmarks/bench_demo_train.py [OUTPUT_DIR]     # default: a temporary folder
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path


def main(output: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from scopebench.demo.train import train_all
    from scopebench.paths import demo_checkpoints_dir

    start = time.perf_counter()
    train_all(output=output)
    wall = time.perf_counter() - start
    shipped = demo_checkpoints_dir()
    for model in sorted(p.name for p in shipped.iterdir() if p.is_dir()):
        a, b = (load_file(root / model / "model.safetensors") for root in (shipped, output))
        same_keys = a.keys() == b.keys()
        weights = same_keys and all(torch.equal(a[k], b[k]) for k in a)
        gap = (f"{max((a[k].float() - b[k].float()).abs().max().item() for k in a):.3g}" if same_keys
               else "n/a: different tensor names")
        files = all((shipped / model / f).read_bytes() == (output / model / f).read_bytes()
                    for f in ("scopebench.json", "tokenizer.json"))
        print(f"{model:<26} same as shipped: weights {weights} (max abs difference {gap}), "
              f"config+tokenizer {files}")
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    print(f"recipe wall time {wall:.0f} s = {wall / 60:.1f} min (target <= 30 min), "
          f"peak memory {rss_gb:.2f} GB")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
