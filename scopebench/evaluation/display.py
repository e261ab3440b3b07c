"""Print a run's scores: per benchmark, per category (Cambrian-1 averaging) and overall."""

from __future__ import annotations

import json
import math
from pathlib import Path

from scopebench.analysis.aggregate import OVERALL, aggregate, groups
from scopebench.run_dir import RunDir
from scopebench.suites import Suite


def _cell(value: float, present: int, size: int) -> str:
    if present == 0 or value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if present == size else f"{value:.1f}*"


def score_summary(out: Path, suite: Suite, wanted: set[tuple[str, str]]) -> dict:
    """{model: {benchmarks, categories, overall, partial}} for the (model, benchmark) pairs asked for.

    Category and overall values are plain means; a group with missing benchmarks is marked partial.
    Values are unrounded: rounding before averaging (or twice) can flip the printed digit.
    """
    scores = RunDir(out).read("scores")
    scores = scores[[(m, b) in wanted for m, b in zip(scores["model"], scores["benchmark"], strict=True)]]
    agg = aggregate(scores, suite)
    summary = {}
    for model in agg.benchmarks.index:
        row = agg.benchmarks.loc[model]
        bench = {b: float(v) for b, v in row.items() if not math.isnan(v)}
        means, partial = {}, []
        for group, members in groups(suite).items():
            present = [bench[b] for b in members if b in bench]
            if present:
                means[group] = sum(present) / len(present)
                if len(present) < len(members):
                    partial.append(group)
        summary[model] = {"benchmarks": bench, "categories": {g: v for g, v in means.items() if g != OVERALL},
                          "overall": means.get(OVERALL), "partial": partial}
    return summary


def print_scores(out: Path, suite: Suite, wanted: set[tuple[str, str]], json_out: bool = False) -> None:
    """Rich table (or JSON on stdout) of the scores just computed."""
    summary = score_summary(out, suite, wanted)
    if json_out:
        models = {m: s | {"benchmarks": {b: round(v, 2) for b, v in s["benchmarks"].items()},
                          "categories": {c: round(v, 2) for c, v in s["categories"].items()},
                          "overall": None if s["overall"] is None else round(s["overall"], 2)}
                  for m, s in summary.items()}
        print(json.dumps({"suite": suite.name, "run_dir": str(out), "unit": "score 0-100", "models": models},
                         indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    models = list(summary)
    table = Table(title=f"{suite.name} · {out}", show_lines=False)
    table.add_column("category")
    table.add_column("benchmark")
    for m in models:
        table.add_column(m, justify="right")
    for cat in suite.categories:
        members = [b for b in suite.benchmarks if b.category == cat]
        for b in members:
            table.add_row(cat if b is members[0] else "", b.name,
                          *[_cell(summary[m]["benchmarks"].get(b.name), 1, 1) for m in models])
        table.add_row("", f"[bold]{cat} mean[/]", *[
            _cell(summary[m]["categories"].get(cat), 1, 1 + (cat in summary[m]["partial"])) for m in models
        ], end_section=True)
    table.add_row("", "[bold]Overall[/]", *[
        _cell(summary[m]["overall"], 1, 1 + (OVERALL in summary[m]["partial"])) for m in models
    ])
    console = Console(width=None if Console().is_terminal else 34 + 13 * len(models))
    console.print(table)
    if any(summary[m]["partial"] for m in models):
        console.print("* mean over the benchmarks evaluated so far (the group is incomplete)")
    console.print(f"run directory: {out} (scores, routes, manifest); next: `scopebench report {out}`")
