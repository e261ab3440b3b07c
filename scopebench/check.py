"""`scopebench check`: did a run regress against a baseline run? For CI on released checkpoints.

Reads the two runs' tables (nothing is re-run) and checks, for everything the baseline holds:

* score (0-100 per model and benchmark): regressed when it drops by more than ``tolerance`` points,
  missing when either run lacks it (NaN too) or the run scored fewer samples (``n``) than the baseline;
* routes (per model and benchmark): the share of the samples both runs scored (same doc_id) whose
  route changed, regressed above ``route_tolerance`` percent; missing when the run lacks some samples;
* costs: FLOPs of each path's total and each benchmark's expected FLOPs under routing, regressed when
  they grow by more than ``cost_tolerance`` percent (or from 0); missing when either side has no count.
  Latency depends on the machine and is not checked.

Benchmarks are matched by name or lmms-eval task id alike.

Exit code of the command: 0 passed, 1 regressed or missing, 2 bad input.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.run_dir import RunDir
from scopebench.suites import Suite, load_suite

FAILING = ("regressed", "missing")


@dataclass(frozen=True)
class Finding:
    """One compared value. ``change``: points (score), percent of samples (route) or percent (cost)."""

    check: str  # score | route | cost
    model: str
    item: str  # benchmark (score, route, expected cost) or "path <route>" (cost)
    baseline: float | None  # None: missing from the baseline
    value: float | None  # None: missing from the run
    change: float | None
    status: str  # ok | improved | regressed | missing
    detail: str = ""


Tables = dict[str, pd.DataFrame]  # "scores", "routes", "costs" of one run, benchmarks named by the suite


def load_run(path: Path, what: str) -> RunDir:
    """A run directory, or (for the baseline) a scores table file on its own."""
    path = Path(path)
    if path.is_dir():
        return RunDir(path)
    if path.is_file() and path.suffix in (".csv", ".parquet"):
        return RunDir(path.parent, files={"scores": path})
    hint = " or its scores.parquet / scores.csv" if what == "baseline" else ""
    raise ScopebenchError(f"{path}: {'not a run directory' if path.exists() else 'no such ' + what}; "
                          f"pass a run directory written by `scopebench eval`{hint}")


def _suite(run: RunDir, scores: pd.DataFrame) -> str | None:
    """The suite a run evaluated: its manifest's, else the one its scores table names (None if unknown)."""
    found = {str(v) for v in scores["suite"].dropna()}
    return run.manifest().get("suite") or (found.pop() if len(found) == 1 else None)


def _status(change: float, tolerance: float, worse_is_up: bool) -> str:
    worse = change > tolerance if worse_is_up else change < -tolerance
    better = change < -tolerance if worse_is_up else change > tolerance
    return "regressed" if worse else "improved" if better else "ok"


def _numbers(df: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
    """``column`` as floats (NaN where empty or not a number) keyed by ``keys``."""
    return pd.to_numeric(df[column], errors="coerce").set_axis(pd.MultiIndex.from_frame(df[keys]))


def compare_scores(run: Tables, base: Tables, tolerance: float) -> list[Finding]:
    """Per (model, benchmark) of the baseline: the run's score change in points (missing: no score on
    either side, or fewer samples in the run)."""
    keys = ["model", "benchmark"]
    new, new_n = _numbers(run["scores"], keys, "score"), _numbers(run["scores"], keys, "n")
    old_n = _numbers(base["scores"], keys, "n")
    flipped = _changed_samples(run["routes"], base["routes"], "sample_score")
    out = []
    for key, old in _numbers(base["scores"], keys, "score").items():
        after = new.get(key, math.nan)
        if math.isnan(old) or math.isnan(after):
            detail = "no score in the baseline" if math.isnan(old) else "not in the run"
            out.append(Finding("score", *key, _value(old), None, None, "missing", detail))
            continue
        change, had, has = after - old, old_n[key], new_n.get(key, math.nan)
        if has < had or (math.isnan(has) and not math.isnan(had)):
            count = "an unknown number" if math.isnan(has) else f"{has:g}"
            out.append(Finding("score", *key, old, after, change, "missing",
                               f"the run scored {count} of the baseline's {had:g} samples"))
            continue
        detail = f"{flipped[key][0]} of {flipped[key][1]} samples changed" if key in flipped else ""
        out.append(Finding("score", *key, old, after, change, _status(change, tolerance, False), detail))
    return out


def compare_routes(run: Tables, base: Tables, tolerance: float) -> list[Finding]:
    """Per (model, benchmark) the baseline routed: the percent of shared samples whose route changed
    (missing when the run routed fewer of them than the baseline)."""
    out = []
    compared = _changed_samples(run["routes"], base["routes"], "route")
    routed = base["routes"].dropna(subset=["route"]).groupby(["model", "benchmark"]).size()
    for key, (changed, total) in compared.items():
        share, held = 100.0 * changed / total, int(routed[key])
        status = "missing" if total < held else "regressed" if share > tolerance else "ok"
        lacks = f"; the run lacks {held - total} of the baseline's {held}" if total < held else ""
        detail = f"{changed} of {total} samples re-routed{lacks}"
        out.append(Finding("route", *key, 0.0, share, share, status, detail))
    for key, total in routed.items():
        if key not in compared:
            out.append(Finding("route", *key, 0.0, None, None, "missing",
                               f"none of the baseline's {total} samples in the run"))
    return out


def _changed_samples(new: pd.DataFrame, old: pd.DataFrame,
                     column: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(model, benchmark) -> (samples whose ``column`` differs, samples in both runs)."""
    keys = ["model", "benchmark", "doc_id"]
    if new.empty or old.empty:
        return {}
    both = (
        new[[*keys, column]].dropna().astype({"doc_id": str})
        .merge(old[[*keys, column]].dropna().astype({"doc_id": str}),
               on=keys, suffixes=("_new", "_old"))
    )
    both["changed"] = both[f"{column}_new"] != both[f"{column}_old"]
    counts = both.groupby(["model", "benchmark"])["changed"].agg(["sum", "size"])
    return {key: (int(r["sum"]), int(r["size"])) for key, r in counts.iterrows()}


def _cost_values(costs: pd.DataFrame) -> pd.Series:
    """FLOPs keyed by (model, item): each path's total ("path X") and each benchmark's expected cost
    (NaN: not counted)."""
    if costs.empty:
        return pd.Series(dtype=float)
    costs = costs.assign(flops=pd.to_numeric(costs["flops"], errors="coerce"))
    paths = costs[costs["kind"].isin(["path", "reference"]) & (costs["component"] == "total")]
    expected = costs[costs["kind"] == "expected"]
    rows = [((r.model, f"path {r.path}"), r.flops) for r in paths.itertuples()]
    rows += [((r.model, str(r.benchmark)), r.flops) for r in expected.itertuples()]
    return pd.Series(dict(rows), dtype=float)


def compare_costs(run: Tables, base: Tables, tolerance: float) -> list[Finding]:
    """Per path total and per benchmark expected cost of the baseline: the run's FLOPs change in percent."""
    new, old = _cost_values(run["costs"]), _cost_values(base["costs"])
    if new.empty and not old.empty:  # one line per model, not one per row
        return [Finding("cost", model, "costs table", float(len(rows)), None, None, "missing",
                        f"{len(rows)} baseline rows; "
                        f"add them with `scopebench flops {model} --output RUN_DIR`")
                for model, rows in old.groupby(level=0)]
    out = []
    for key, before in old.items():
        after = float(new.get(key, math.nan))
        if math.isnan(before) or math.isnan(after):
            detail = ("no FLOPs count in the baseline" if math.isnan(before) else
                      "no FLOPs count in the run" if key in new.index else "not in the run's costs table")
            out.append(Finding("cost", *key, _value(before), _value(after), None, "missing", detail))
            continue
        change = 100.0 * (after - before) / before if before else None if after else 0.0  # None: up from 0
        status = "regressed" if change is None else _status(change, tolerance, True)
        detail = "FLOPs" if before else "FLOPs, from 0"
        out.append(Finding("cost", *key, before, after, change, status, detail))
    return out


def _value(x: float) -> float | None:
    return None if math.isnan(x) else x


def _benchmark_names(run: RunDir, tables: Tables, suite: Suite) -> Tables:
    """Every table's benchmarks named by the suite's benchmark names (a scores file may use task ids)."""
    return {name: suite.with_benchmark_names(df, run.file(name) or run.path) for name, df in tables.items()}


def versions_changed(run: dict, base: dict) -> dict[str, tuple[str | None, str | None]]:
    """Package versions that differ between the two runs' manifests (what might explain a change)."""
    old, new = base.get("versions", {}), run.get("versions", {})
    return {pkg: (old.get(pkg), new.get(pkg)) for pkg in sorted(set(old) & set(new)) if old[pkg] != new[pkg]}


def run_check(
    run_dir: Path, baseline: Path, tolerance: float = 1.0, route_tolerance: float = 5.0,
    cost_tolerance: float = 1.0, json_out: bool = False,
) -> bool:
    """`scopebench check`: compare, print, and return True when nothing regressed or went missing."""
    for name, value in (("--tolerance", tolerance), ("--route-tolerance", route_tolerance),
                        ("--cost-tolerance", cost_tolerance)):
        if not value >= 0:  # also refuses NaN
            raise ScopebenchError(f"{name} {value}: must be a number, 0 or more")
    dirs = load_run(run_dir, "run directory"), load_run(baseline, "baseline")
    run, base = ({name: d.read(name, required=name == "scores") for name in ("scores", "routes", "costs")}
                 for d in dirs)
    if base["scores"].empty:
        raise ScopebenchError(f"{dirs[1].file('scores')}: the baseline holds no scores; "
                              "give a run directory or "
                              "scores file with rows")
    suites = (_suite(dirs[0], run["scores"]), _suite(dirs[1], base["scores"]))
    if all(suites) and suites[0] != suites[1]:
        raise ScopebenchError(f"{run_dir} evaluated suite '{suites[0]}' "
                              f"but the baseline {baseline} '{suites[1]}'; "
                              "compare runs of the same suite")
    known = suites[0] or suites[1]
    if known:  # every benchmark must belong to the suite; task ids become benchmark names
        run, base = (_benchmark_names(d, t, load_suite(name or known))
                     for d, t, name in zip(dirs, (run, base), suites, strict=True))
    findings = [*compare_scores(run, base, tolerance), *compare_routes(run, base, route_tolerance),
                *compare_costs(run, base, cost_tolerance)]
    passed = not any(f.status in FAILING for f in findings)
    notes = []
    if base["costs"].empty:
        notes.append("the baseline has no costs table: costs not checked")
    if base["routes"].empty:
        notes.append("routes not checked: the baseline has no routes table")
    changed = versions_changed(dirs[0].manifest(), dirs[1].manifest())
    if json_out:
        print(json.dumps({
            "passed": passed, "run": str(run_dir), "baseline": str(baseline),
            "tolerances": {"score_points": tolerance, "route_percent": route_tolerance,
                           "cost_percent": cost_tolerance},
            "versions_changed": {k: {"baseline": a, "run": b} for k, (a, b) in changed.items()},
            "notes": notes, "findings": [asdict(f) for f in findings],
        }, indent=2))
    else:
        print_check(findings, passed, (tolerance, route_tolerance, cost_tolerance), changed, notes)
    return passed


UNITS = {"score": "points", "route": "% re-routed", "cost": "% FLOPs"}


def print_check(findings: list[Finding], passed: bool, tolerances: tuple[float, float, float],
                changed: dict[str, tuple[str | None, str | None]], notes: list[str]) -> None:
    """One summary line per check, a table of everything not ok, the verdict."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if Console().is_terminal else 150)
    for check, tol in zip(UNITS, tolerances, strict=True):
        mine = [f for f in findings if f.check == check]
        if mine:
            counts = ", ".join(f"{sum(f.status == s for f in mine)} {s}"
                               for s in ("ok", "improved", "regressed", "missing"))
            console.print(f"{check}s: {len(mine)} compared: {counts} (tolerance {tol:g} {UNITS[check]})")
    shown = sorted((f for f in findings if f.status != "ok"),
                   key=lambda f: (f.status not in FAILING, f.check, f.model, f.item))
    if shown:
        table = Table(title="changes beyond tolerance", title_style="bold")
        for col in ("status", "check", "model", "benchmark / path", "baseline", "run", "change", "detail"):
            table.add_column(col, justify="right" if col in ("baseline", "run", "change") else "left")
        for f in shown:
            style = "red" if f.status in FAILING else "green"
            base, value, change = ("-" if v is None else f"{v:{fmt}}" for v, fmt in
                                   ((f.baseline, ".4g"), (f.value, ".4g"), (f.change, "+.2f")))
            table.add_row(f"[{style}]{f.status}[/]", f.check, f.model, f.item, base, value, change, f.detail)
        console.print(table)
    for pkg, (old, new) in changed.items():
        console.print(f"version changed: {pkg} {old} -> {new}")
    for note in notes:
        console.print(f"note: {note}")
    console.print("[bold green]PASS[/]: nothing regressed" if passed else
                  f"[bold red]FAIL[/]: {sum(f.status in FAILING for f in findings)} regressed or missing")
