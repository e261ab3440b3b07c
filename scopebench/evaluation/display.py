"""Print a run's scores: per benchmark, per category (Cambrian-1 averaging) and overall."""

from __future__ import annotations

import json
import math
import sys
import time
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
    from scopebench.reporting.terminal import Col, console, print_table

    models = list(summary)
    rows, styles, sections = [], [], set()
    for cat in suite.categories:
        members = [b for b in suite.benchmarks if b.category == cat]
        for b in members:
            rows.append([cat if b is members[0] else "", b.name,
                         *[_cell(summary[m]["benchmarks"].get(b.name), 1, 1) for m in models]])
        rows.append(["", f"{cat} mean", *[
            _cell(summary[m]["categories"].get(cat), 1, 1 + (cat in summary[m]["partial"])) for m in models]])
        styles += [None] * len(members) + ["bold"]
        sections.add(len(rows) - 1)
    rows.append(["", OVERALL, *[
        _cell(summary[m]["overall"], 1, 1 + (OVERALL in summary[m]["partial"])) for m in models]])
    styles.append("bold")
    term = console()
    cols = [Col("category", "left", key=True), Col("benchmark", "left", key=True), *map(Col, models)]
    print_table(term, f"{suite.name} · {out}", cols, rows, styles=styles, sections=sections, names=models)
    if any(summary[m]["partial"] for m in models):
        term.print("* mean over the benchmarks evaluated so far (the group is incomplete)")
    term.print(f"run directory: {out} (scores, routes, manifest); next: `scopebench report {out}`",
               highlight=False)


class EvalProgress:
    """Progress of an `eval` on stderr: one bar over all its (model, task) parts with the time left, and one
    bar for the part running (which says "setting up" until lmms-eval sends its first batch)."""

    def __init__(self, parts: int, disabled: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            # bound to the real stderr: lmms-eval's output is redirected to a log while the bars refresh
            console=Console(file=sys.stderr), disable=disabled, transient=False,
        )
        self.parts, self.finished = parts, 0
        self.overall = self.progress.add_task("(model, task) parts", total=parts, count=f"0/{parts}")
        self.current: tuple[int, str, float] | None = None  # bar, description, start time
        self.samples = 0

    def __enter__(self) -> EvalProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, description: str):
        """A bar for one part; returns the callback the adapter calls per batch: ``(samples, total)``."""
        bar = self.progress.add_task(description, total=None, count="setting up")
        self.current, self.samples = (bar, description, time.monotonic()), 0

        def on_batch(k: int, total: int) -> None:
            self.samples += k
            self.progress.update(bar, total=total, completed=self.samples, count=f"{self.samples}/{total}")

        return on_batch

    def finish(self) -> None:
        """One part done (here, or by another process): its bar becomes a line and the overall bar moves."""
        if self.current is not None:
            bar, description, started = self.current
            self.progress.remove_task(bar)
            if not self.progress.disable:
                self.progress.console.print(f"{description}: {self.samples} samples in "
                                            f"{time.monotonic() - started:.1f} s", highlight=False)
            self.current = None
        self.finished += 1
        self.progress.update(self.overall, advance=1, count=f"{self.finished}/{self.parts}")
