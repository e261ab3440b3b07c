"""How far above chance is each model on cambrian16-mini? Chance measured by lmms-eval's own scoring.

Scores a random guesser (``scopebench.demo.chance``: a random option letter, Yes/No, or a random
answer from the task's answer list) ``--draws`` times, prints each benchmark's mean chance score and
the 95th percentile over draws, and, for every model in the given run directories, the benchmarks
where its score is above that 95th percentile ("clearly above chance"):

    scopebench eval --output /tmp/demo-run
    python benchmarks/chance_levels.py /tmp/demo-run            # 40 draws: about 1-2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from scopebench.analysis.aggregate import groups  # noqa: E402
from scopebench.demo.chance import chance_scores  # noqa: E402
from scopebench.evaluation.runner import quiet_logs  # noqa: E402
from scopebench.run_dir import RunDir  # noqa: E402
from scopebench.suites import load_suite  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run directories written by `scopebench eval`")
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    quiet_logs()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        chance = chance_scores(args.draws, Path(tmp), args.seed)
    by_bench = chance.groupby("benchmark")["score"]
    mean, p95 = by_bench.mean(), by_bench.quantile(0.95)
    members_of = groups(load_suite("cambrian16-mini"))
    names = members_of["Overall"]
    print(f"chance: {args.draws} draws of a random guesser ({time.perf_counter() - start:.0f}s)")
    print(f"{'benchmark':14s} {'mean':>6s} {'p95':>6s}")
    for b in names:
        print(f"{b:14s} {mean[b]:6.1f} {p95[b]:6.1f}")
    for group, members in members_of.items():
        print(f"{group:14s} {mean[members].mean():6.1f}")
    for run in args.runs:
        table = RunDir(run).read("scores")
        for model, part in table.groupby("model", sort=False):
            score = dict(zip(part["benchmark"], part["score"], strict=True))
            above = [b for b in names if b in score and score[b] > p95[b]]
            overall = sum(score.get(b, float("nan")) for b in names) / len(names)
            print(f"{run.name}/{model}: overall {overall:.1f}; "
                  f"above the chance p95 on {len(above)}/{len(names)}: "
                  f"{', '.join(above) or 'none'}")


if __name__ == "__main__":
    main()
