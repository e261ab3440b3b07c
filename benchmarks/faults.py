"""Fault injection: kill -9 `scopebench eval` at random points, resume, and compare with an uninterrupted run.

Each round starts a fresh run directory, SIGKILLs the eval's process group at a random moment of its
wall time (loading, inside a task, while writing tables), checks that what it left is readable, resumes
it to the end, and compares the final scores and routes with those of an uninterrupted run, value by value.

    python benchmarks/faults.py --rounds 20 [--seed 0] [--model demo-scope] [--tasks GQA,TextVQA,MMVP]

Prints, per round, the kill time and what the resume found; then rounds survived (tables readable after
the kill, resume exit 0, final tables equal to the reference, no temp file left) and results lost.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def eval_cmd(model: str, tasks: str, limit: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "scopebench.cli", "eval", model, "--tasks", tasks, "--limit", str(limit),
            "--output", str(out), "--json"]


def tables(out: Path) -> dict[str, pd.DataFrame]:
    """The run's scores and routes as scopebench reads them (raises ScopebenchError when unreadable)."""
    from scopebench.run_dir import RunDir

    scores = RunDir(out).read("scores").sort_values(["model", "benchmark"]).reset_index(drop=True)
    routes = RunDir(out).read("routes").sort_values(["model", "benchmark", "doc_id"]).reset_index(drop=True)
    return {"scores": scores[["model", "benchmark", "score", "n"]],
            "routes": routes[[c for c in routes.columns if c not in ("task",)]]}


def lost(final: dict[str, pd.DataFrame], ref: dict[str, pd.DataFrame]) -> int:
    """Reference rows missing from, or different in, the final tables."""
    count = 0
    for name, want in ref.items():
        keys = ["model", "benchmark"] + (["doc_id"] if name == "routes" else [])
        have = final[name].set_index(keys)
        for key, row in want.set_index(keys).iterrows():
            if key not in have.index or not _same(have.loc[key], row):
                count += 1
    return count


def _same(a: pd.Series, b: pd.Series) -> bool:
    return all((pd.isna(x) and pd.isna(y)) or x == y for x, y in zip(a[b.index], b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="demo-scope")
    parser.add_argument("--tasks", default="GQA,TextVQA,MMVP")
    parser.add_argument("--limit", type=int, default=12)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="scopebench-faults-"))
    ref_dir = root / "reference"
    start = time.perf_counter()
    subprocess.run(eval_cmd(args.model, args.tasks, args.limit, ref_dir), env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    ref = tables(ref_dir)
    print(f"reference: {args.model} on {args.tasks} (--limit {args.limit}): {wall:.1f} s wall, "
          f"{len(ref['scores'])} scores, {len(ref['routes'])} routes")
    survived, total_lost = 0, 0
    for i in range(args.rounds):
        out = root / f"round{i}"
        at = rng.uniform(0.5, wall)
        proc = subprocess.Popen(eval_cmd(args.model, args.tasks, args.limit, out), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(at)
        finished_first = proc.poll() is not None
        if not finished_first:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done = len(list(out.glob("parts/*/*/done")))
        problems = []
        if (out / "scores.parquet").exists():
            try:
                tables(out) if (out / "routes.parquet").exists() else None
            except Exception as err:  # what a user's next `report` or `check` would hit
                problems.append(f"unreadable after the kill: {err}")
        resumed = subprocess.run(eval_cmd(args.model, args.tasks, args.limit, out), env=ENV,
                                 capture_output=True, text=True)
        if resumed.returncode != 0:
            problems.append(f"resume exit {resumed.returncode}: {resumed.stderr.strip().splitlines()[-1:]}")
            n_lost = len(ref["scores"]) + len(ref["routes"])
        else:
            n_lost = lost(tables(out), ref)
            if n_lost:
                problems.append(f"{n_lost} results differ from the reference")
        leftovers = [p.name for p in out.rglob("*.tmp")]
        if leftovers:
            problems.append(f"temp files left: {leftovers[:3]}")
        total_lost += n_lost
        survived += not problems
        when = "finished before the kill" if finished_first else f"killed at {at:5.1f} s"
        print(f"round {i + 1:2d}: {when}, {done} parts done then; "
              f"{'ok' if not problems else '; '.join(problems)}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    print(f"rounds survived: {survived}/{args.rounds}; results lost: {total_lost} "
          f"(of {len(ref['scores']) + len(ref['routes'])} per round)")
    shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if survived == args.rounds else 1)


if __name__ == "__main__":
    main()
