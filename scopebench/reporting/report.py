"""`scopebench report`: join run directories (and external scores) into one compute-vs-accuracy report."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.tables import TABLES

FORMATS = ("table", "markdown", "csv", "json", "html")


def _records(df: pd.DataFrame) -> list[dict]:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return v.item() if hasattr(v, "item") else v

    return [{k: clean(v) for k, v in row.items()} for row in df.astype(object).to_dict("records")]


def to_json(report) -> str:
    """The joined tables as one JSON document (NaN -> null, infinity -> "inf")."""
    from scopebench.reporting.render import FLOPS_NOTE
    from scopebench.reporting.roles_view import to_json as roles_json

    doc = {
        "suite": report.suite.name, "runs": [str(r) for r in report.runs],
        "units": FLOPS_NOTE + "; MACs as counted",
        "models": _records(report.models),
        "expected": _records(report.expected[["model", "benchmark", "macs", "flops", "active_params"]]),
        "paths": _records(report.paths), "routing": _records(report.routing),
        "oracle": _records(report.oracle),
        "roles": _records(report.roles), "vision": _records(report.vision),
        "encoder_roles": (None if report.role_analysis is None
                          else json.loads(roles_json(report.role_analysis))),
        "notes": report.notes,
    }
    return json.dumps(doc, indent=2) + "\n"


def _table_text(report, to_terminal: bool) -> str | None:
    from scopebench.reporting.render import to_rich
    from scopebench.reporting.terminal import console

    if to_terminal:
        to_rich(report, console())
        return None
    buf = io.StringIO()
    to_rich(report, console(file=buf, no_color=True, force_terminal=False))
    return buf.getvalue()


def _check_output(output: Path, run_dirs: list[Path], scores: Path | None) -> None:
    """Refuse an ``--output`` that is a folder or would overwrite what the report reads."""
    if output.is_dir():
        raise ScopebenchError(f"--output {output}: is a folder; "
                              f"give a file path, e.g. {output / 'report.html'}")
    inputs = [Path(d) / f"{t}{x}" for d in run_dirs for t in TABLES for x in (".parquet", ".csv")]
    inputs += [Path(d) / "manifest.json" for d in run_dirs] + ([Path(scores)] if scores else [])
    if any(output.resolve() == p.resolve() for p in inputs):
        raise ScopebenchError(f"--output {output}: is one of the report's inputs; "
                              "write the report to another file")


def run_report(
    run_dirs: list[Path], scores: Path | None, fmt: str, plot_dir: Path | None, output: Path | None,
    reference: str | None = None, suite: str | None = None,
) -> None:
    """Write the report of ``run_dirs`` in ``fmt`` to ``output`` (or stdout) and plots into ``plot_dir``.

    ``reference`` names the model every other model is compared with (saving, accuracy delta); by
    default each routed model is compared with its all-encoders baseline (see
    ``analysis.compute.all_encoders_baseline``).
    """
    from rich.console import Console

    from scopebench.reporting import plots, render
    from scopebench.reporting.build import build_report
    from scopebench.reporting.inputs import load_external, load_runs, no_runs
    from scopebench.suites import load_suite
    from scopebench.tables import atomic_write_text

    if fmt not in FORMATS:
        raise ScopebenchError(f"--format: unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
    if output is not None:
        _check_output(Path(output), run_dirs, scores)
    runs = load_runs(run_dirs) if run_dirs or scores is None else no_runs(suite)
    if suite is not None and run_dirs and load_suite(suite).name != runs.suite.name:
        raise ScopebenchError(f"--suite {suite}: the runs are of suite '{runs.suite.name}'; "
                              "leave --suite out")
    external = load_external(scores, runs.suite, set(runs.scores["model"])) if scores else None
    report = build_report(runs, external, reference=reference)
    figs = plots.figures(report) if plot_dir is not None or fmt == "html" else {}
    info = Console(stderr=True)
    try:
        if plot_dir is not None:
            written = plots.save(figs, plot_dir)
            info.print(f"plots: {len(written)} files (PNG and SVG) in {plot_dir}", highlight=False)
        if fmt == "table":
            text = _table_text(report, to_terminal=output is None)
        else:
            text = {
                "markdown": lambda: render.to_markdown(report),
                "csv": lambda: report.models.to_csv(index=False),
                "json": lambda: to_json(report),
                "html": lambda: render.to_html(report, plots.data_uris(figs)),
            }[fmt]()
    finally:
        plots.close(figs)
    if fmt == "csv":  # the CSV holds numbers only: say what is missing on stderr
        for note in report.notes:
            info.print(f"note: {note}", highlight=False, soft_wrap=True)
    if output is not None:
        atomic_write_text(Path(output), text)
        info.print(f"report: {output}", highlight=False)
    elif text is not None:
        sys.stdout.write(text)
