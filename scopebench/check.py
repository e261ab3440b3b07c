"""`scopebench check`: did a run regress against a baseline run? A CI gate on released checkpoints.

Reads the two runs' tables (nothing is re-run) and checks, for everything the baseline holds:

* score (0-100 per model and benchmark): regressed when it drops by more than its tolerance (points) and,
  where both runs hold per-sample scores of the same documents whose mean is the score, the drop is also
  significant (``scopebench.analysis.significance``: a one-sided paired test, Holm across the model's
  benchmarks, ``alpha``); a drop beyond tolerance that is not significant is "not significant" and passes.
  Without per-sample data on both sides the tolerance alone decides, and the finding says so. Missing when
  either run lacks the score (NaN too) or the run scored fewer samples (``n``) than the baseline;
* answers (only where a tolerance for them is set): the percent of samples whose per-sample score changed;
* routes (per model and benchmark): the share of the samples both runs scored (same doc_id) whose
  route changed, regressed above its tolerance (percent); missing when the run lacks some samples;
* costs: FLOPs of each path's total and each benchmark's expected FLOPs under routing, regressed when
  they grow by more than the tolerance (percent; or from 0); missing when either side has no count.
  Latency depends on the machine and is not checked.

Both runs must have scored the same documents: where both record a hash of them (the scores table's
``docs``, else the `done` marker of each part), a difference is bad input. Tolerances come from the
flags or a YAML file (``load_tolerances``). Benchmarks are matched by name or lmms-eval task id alike.

Exit code of the command: 0 passed, 1 regressed or missing, 2 bad input.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from scopebench.errors import ScopebenchError, suggest
from scopebench.run_dir import RunDir
from scopebench.suites import Suite, load_suite

FAILING = ("regressed", "missing")
STATUSES = ("ok", "improved", "not significant", "regressed", "missing")


@dataclass(frozen=True)
class Finding:
    """One compared value. ``change``: points (score), percent of samples (answers, route) or percent (cost).
    ``test``: how a score drop was judged (a paired test, or "tolerance alone: WHY"); ``p`` its one-sided
    p-value and ``p_holm`` the Holm-adjusted one."""

    check: str  # score | answers | route | cost
    model: str
    item: str  # benchmark (score, answers, route, expected cost) or "path <route>" (cost)
    baseline: float | None  # None: missing from the baseline
    value: float | None  # None: missing from the run
    change: float | None
    status: str  # one of STATUSES
    detail: str = ""
    tolerance: float | None = None
    test: str = ""
    p: float | None = None
    p_holm: float | None = None


Tables = dict[str, pd.DataFrame]  # "scores", "routes", "costs" of one run, benchmarks named by the suite


# ----- tolerances ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """Tolerances of one scope (a benchmark, a category, the default); None: not set there."""

    score: float | None = None  # points (0-100) a score may drop
    route: float | None = None  # percent of samples that may take another route
    cost: float | None = None  # percent FLOPs may grow
    answers: float | None = None  # percent of samples whose score may change (unchecked unless set)


DEFAULT_LIMITS = Limits(score=1.0, route=5.0, cost=1.0)
UNITS = {"score": "points", "answers": "% scored differently", "route": "% re-routed", "cost": "% FLOPs"}


@dataclass(frozen=True)
class ToleranceFile:
    """The fields of a tolerances YAML file."""

    default: dict | None = None
    categories: dict | None = None
    benchmarks: dict | None = None


@dataclass(frozen=True)
class Tolerances:
    """Per benchmark, then per category, then the default; ``source``: the file they came from."""

    default: Limits = DEFAULT_LIMITS
    categories: dict[str, Limits] = field(default_factory=dict)
    benchmarks: dict[str, Limits] = field(default_factory=dict)
    source: str | None = None

    def of(self, check: str, benchmark: str | None = None, category: str | None = None) -> float | None:
        for scope in (self.benchmarks.get(benchmark), self.categories.get(category)):
            if scope is not None and getattr(scope, check) is not None:
                return getattr(scope, check)
        return getattr(self.default, check)


def _limits(data, where: str) -> Limits:
    from scopebench.config import check_fields

    if not isinstance(data, dict):
        raise ScopebenchError(f"{where}: expected a mapping of {', '.join(UNITS)}, got {data!r}")
    check_fields(Limits, data, where)
    for name, value in data.items():
        top = 100.0 if name in ("answers", "route") else math.inf
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
            bound = "between 0 and 100" if top == 100 else "0 or more"
            raise ScopebenchError(f"{where}.{name} must be a number {bound} ({UNITS[name]}), got {value!r}")
    return Limits(**{k: float(v) for k, v in data.items()})


def load_tolerances(path: Path, suite: Suite | None, categories: set[str]) -> Tolerances:
    """A tolerances file::

        default: {score: 1.0, route: 5.0, cost: 1.0}      # points, % re-routed, % FLOPs
        categories: {OCR & Chart: {score: 2.0}}
        benchmarks: {MMVP: {score: 5.0, answers: 10}}     # by benchmark name or task id

    Every field is optional; a benchmark's value beats its category's, which beats the default's."""
    import yaml

    from scopebench.config import check_fields

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScopebenchError(f"{path}: tolerances file not found; pass an existing YAML file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ScopebenchError(f"{path}: not valid YAML ({err.__class__.__name__}); fix the file") from None
    if not isinstance(data, dict):
        raise ScopebenchError(f"{path}: expected a mapping with fields default, categories, benchmarks")
    check_fields(ToleranceFile, data, str(path))
    sections = {}
    for name in ("categories", "benchmarks"):
        section = data.get(name) or {}
        if not isinstance(section, dict):
            raise ScopebenchError(f"{path}: field '{name}' must be a mapping of {name[:-1]} -> tolerances")
        sections[name] = section
    by_category = {}
    for name, item in sections["categories"].items():
        if str(name) not in categories:
            raise ScopebenchError(f"{path}: categories: unknown category '{name}'"
                                  f"{suggest(str(name), categories)}; "
                                  f"choose from: {', '.join(sorted(categories))}")
        by_category[str(name)] = _limits(item, f"{path}: categories.{name}")
    by_benchmark = {}
    for name, item in sections["benchmarks"].items():
        try:
            bench = suite.benchmark(str(name)).name if suite else str(name)
        except ScopebenchError as err:
            raise ScopebenchError(f"{path}: benchmarks: {err}") from None
        by_benchmark[bench] = _limits(item, f"{path}: benchmarks.{name}")
    default = _limits(data.get("default") or {}, f"{path}: default")
    return Tolerances(_merged(DEFAULT_LIMITS, default), by_category, by_benchmark, str(path))


def _merged(base: Limits, over: Limits) -> Limits:
    return replace(base, **{f.name: getattr(over, f.name) for f in fields(Limits)
                            if getattr(over, f.name) is not None})


# ----- runs ------------------------------------------------------------------------------------------------
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


def documents(run: RunDir, scores: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(model, benchmark) -> the hash of the documents the run scored: the scores table's ``docs``, else (a
    run of an earlier scopebench) its parts' `done` markers; absent where neither records one."""
    from scopebench.evaluation.parts import read_done
    from scopebench.tables import read_table

    column = scores["docs"] if "docs" in scores else pd.Series(pd.NA, index=scores.index)
    found = {(str(r.model), str(r.benchmark)): str(d)
             for r, d in zip(scores.itertuples(), column, strict=True) if isinstance(d, str) and d}
    if len(found) == len(scores) or run.files:
        return found
    names = dict(zip(scores["task"].astype(str), scores["benchmark"].astype(str), strict=True))
    for part in run.finished_parts():
        digest = (read_done(part) or {}).get("docs")
        if not isinstance(digest, str) or not (part / "scores.parquet").is_file():
            continue
        for r in read_table(part / "scores.parquet", "scores").itertuples():
            found.setdefault((str(r.model), names.get(str(r.task), str(r.benchmark))), digest)
    return found


def same_documents(dirs: tuple[RunDir, RunDir], run: Tables, base: Tables) -> None:
    """Refuse runs that scored other documents for a (model, benchmark) both record a hash for."""
    new, old = documents(dirs[0], run["scores"]), documents(dirs[1], base["scores"])
    differ = sorted(key for key in old.keys() & new.keys() if old[key] != new[key])
    if differ:
        model, bench = differ[0]
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        raise ScopebenchError(
            f"{dirs[0]}: model '{model}' benchmark '{bench}'{more} scored other documents than the baseline "
            f"{dirs[1]} (another --limit, dataset revision or prompt); compare runs of the same documents")


# ----- comparisons -----------------------------------------------------------------------------------------
def _status(change: float, tolerance: float, worse_is_up: bool) -> str:
    worse = change > tolerance if worse_is_up else change < -tolerance
    better = change < -tolerance if worse_is_up else change > tolerance
    return "regressed" if worse else "improved" if better else "ok"


def _numbers(df: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
    """``column`` as floats (NaN where empty or not a number) keyed by ``keys``."""
    return pd.to_numeric(df[column], errors="coerce").set_axis(pd.MultiIndex.from_frame(df[keys]))


def _categories(*scores: pd.DataFrame) -> dict[str, str]:
    """Benchmark -> category, as the scores tables say."""
    rows = pd.concat([s[["benchmark", "category"]] for s in scores]).dropna()
    return dict(zip(rows["benchmark"].astype(str), rows["category"].astype(str), strict=True))


def _per_sample(routes: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """(model, benchmark) -> per-sample scores by doc_id (NaN where the metric defines none)."""
    if routes.empty:
        return {}
    scores = pd.to_numeric(routes.get("sample_score", pd.Series(np.nan, index=routes.index)), errors="coerce")
    df = routes[["model", "benchmark"]].assign(doc_id=routes["doc_id"].astype(str), s=scores.astype(float))
    return {key: g.set_index("doc_id")["s"] for key, g in df.groupby(["model", "benchmark"])}


Pairs = dict[tuple[str, str], tuple[np.ndarray, np.ndarray] | str]


def paired_samples(run: Tables, base: Tables) -> Pairs:
    """(model, benchmark) -> (baseline, run) per-sample scores of the same documents, in one order, where
    both runs hold them for every document; else why not ("tolerance alone: ...")."""
    new, old = _per_sample(run["routes"]), _per_sample(base["routes"])
    out: Pairs = {}
    for key in old.keys() | set(_numbers(base["scores"], ["model", "benchmark"], "score").index):
        before, after = old.get(key), new.get(key)
        if before is None or after is None:
            out[key] = f"no per-sample scores in the {'baseline' if before is None else 'run'}"
        elif before.isna().all() or after.isna().all():
            out[key] = "no per-sample scores for this metric"
        elif before.isna().any() or after.isna().any():
            out[key] = "per-sample scores missing for some samples"
        elif set(before.index) != set(after.index):
            out[key] = "the runs hold per-sample scores of different samples"
        else:
            out[key] = (before.to_numpy(), after.reindex(before.index).to_numpy())
    return {k: (v if isinstance(v, tuple) else f"tolerance alone: {v}") for k, v in out.items()}


def _score_means(pairs: Pairs, run: Tables, base: Tables) -> Pairs:
    """``pairs`` where the per-sample means are the two runs' scores; the others say why not."""
    keys = ["model", "benchmark"]
    score = (_numbers(base["scores"], keys, "score"), _numbers(run["scores"], keys, "score"))
    return {key: pair if not isinstance(pair, tuple) or all(
        math.isclose(float(np.mean(side)), table.get(key, math.nan), abs_tol=0.01)
        for side, table in zip(pair, score, strict=True))
        else "tolerance alone: the score is not the mean of its per-sample scores"
        for key, pair in pairs.items()}


def compare_scores(run: Tables, base: Tables, tol: Tolerances, alpha: float, pairs: Pairs) -> list[Finding]:
    """Per (model, benchmark) of the baseline: the run's score change in points, judged by the tolerance and,
    where ``pairs`` has per-sample scores, the Holm-corrected paired test (missing: no score on either side,
    or fewer samples in the run)."""
    from scopebench.analysis.significance import holm, paired_drop

    keys = ["model", "benchmark"]
    new, new_n = _numbers(run["scores"], keys, "score"), _numbers(run["scores"], keys, "n")
    old_n = _numbers(base["scores"], keys, "n")
    category = _categories(base["scores"], run["scores"])
    pairs = _score_means(pairs, run, base)
    tests = {key: paired_drop(*pair) for key, pair in pairs.items() if isinstance(pair, tuple)}
    adjusted = {}
    for model in {m for m, _ in tests}:
        adjusted |= {(model, b): p for b, p in holm({b: t for (m, b), t in tests.items() if m == model},
                                                    alpha).items()}
    out = []
    for key, old in _numbers(base["scores"], keys, "score").items():
        after, limit = new.get(key, math.nan), tol.of("score", key[1], category.get(key[1]))
        if math.isnan(old) or math.isnan(after):
            detail = "no score in the baseline" if math.isnan(old) else "not in the run"
            out.append(Finding("score", *key, _value(old), None, None, "missing", detail, limit))
            continue
        change, had, has = after - old, old_n[key], new_n.get(key, math.nan)
        if has < had or (math.isnan(has) and not math.isnan(had)):
            count = "an unknown number" if math.isnan(has) else f"{has:g}"
            out.append(Finding("score", *key, old, after, change, "missing",
                               f"the run scored {count} of the baseline's {had:g} samples", limit))
            continue
        status = _status(change, limit, False)
        if key not in tests:
            out.append(Finding("score", *key, old, after, change, status, pairs.get(key, ""), limit,
                               pairs.get(key, "tolerance alone")))
            continue
        t, p_holm = tests[key], adjusted[key]
        if status == "regressed" and p_holm > alpha:
            status = "not significant"
        detail = (f"{t.changed} of {len(pairs[key][0])} samples changed; "
                  f"{t.test} p={t.p:.2g}, Holm {p_holm:.2g}")
        out.append(Finding("score", *key, old, after, change, status, detail, limit, t.test, t.p, p_holm))
    return out


def compare_answers(pairs: Pairs, tol: Tolerances, category: dict[str, str]) -> list[Finding]:
    """Per (model, benchmark) with an ``answers`` tolerance and per-sample scores on both sides: the percent
    of samples whose score changed."""
    out = []
    for key, pair in sorted(pairs.items()):
        limit = tol.of("answers", key[1], category.get(key[1]))
        if limit is None or not isinstance(pair, tuple):
            continue
        changed, total = int(np.count_nonzero(pair[0] != pair[1])), len(pair[0])
        share = 100.0 * changed / total
        out.append(Finding("answers", *key, 0.0, share, share, "regressed" if share > limit else "ok",
                           f"{changed} of {total} samples scored differently", limit))
    return out


def compare_routes(run: Tables, base: Tables, tol: Tolerances, category: dict[str, str]) -> list[Finding]:
    """Per (model, benchmark) the baseline routed: the percent of shared samples whose route changed
    (missing when the run routed fewer of them than the baseline)."""
    out = []
    compared = _changed_samples(run["routes"], base["routes"], "route")
    routed = base["routes"].dropna(subset=["route"]).groupby(["model", "benchmark"]).size()
    for key, (changed, total) in compared.items():
        share, held, limit = 100.0 * changed / total, int(routed[key]), tol.of("route", key[1],
                                                                                category.get(key[1]))
        status = "missing" if total < held else "regressed" if share > limit else "ok"
        lacks = f"; the run lacks {held - total} of the baseline's {held}" if total < held else ""
        detail = f"{changed} of {total} samples re-routed{lacks}"
        out.append(Finding("route", *key, 0.0, share, share, status, detail, limit))
    for key, total in routed.items():
        if key not in compared:
            out.append(Finding("route", *key, 0.0, None, None, "missing",
                               f"none of the baseline's {total} samples in the run",
                               tol.of("route", key[1], category.get(key[1]))))
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


def compare_costs(run: Tables, base: Tables, tol: Tolerances, category: dict[str, str]) -> list[Finding]:
    """Per path total (the default tolerance) and per benchmark expected cost (the benchmark's) of the
    baseline: the run's FLOPs change in percent."""
    new, old = _cost_values(run["costs"]), _cost_values(base["costs"])
    if new.empty and not old.empty:  # one line per model, not one per row
        return [Finding("cost", model, "costs table", float(len(rows)), None, None, "missing",
                        f"{len(rows)} baseline rows; "
                        f"add them with `scopebench flops {model} --output RUN_DIR`", tol.of("cost"))
                for model, rows in old.groupby(level=0)]
    out = []
    for key, before in old.items():
        after = float(new.get(key, math.nan))
        limit = tol.of("cost", key[1], category.get(key[1]))
        if math.isnan(before) or math.isnan(after):
            detail = ("no FLOPs count in the baseline" if math.isnan(before) else
                      "no FLOPs count in the run" if key in new.index else "not in the run's costs table")
            out.append(Finding("cost", *key, _value(before), _value(after), None, "missing", detail, limit))
            continue
        change = 100.0 * (after - before) / before if before else None if after else 0.0  # None: up from 0
        status = "regressed" if change is None else _status(change, limit, True)
        detail = "FLOPs" if before else "FLOPs, from 0"
        out.append(Finding("cost", *key, before, after, change, status, detail, limit))
    return out


def _value(x: float) -> float | None:
    return None if math.isnan(x) else x


def detectable(base: Tables, pairs: Pairs, tol: Tolerances, alpha: float) -> list[dict]:
    """Per benchmark (and sample count) with 0/100 per-sample scores: the smallest drop the paired test can
    ever find at ``alpha`` (``significance.min_detectable_drop``) beside the score tolerance."""
    from scopebench.analysis.significance import is_binary, min_detectable_drop

    category = _categories(base["scores"])
    seen = {}
    for (_, bench), pair in sorted(_score_means(pairs, base, base).items()):
        if isinstance(pair, tuple) and is_binary(pair[0]) and (bench, len(pair[0])) not in seen:
            n = len(pair[0])
            seen[(bench, n)] = {"benchmark": bench, "n": n,
                                "min_detectable_drop": min_detectable_drop(n, alpha),
                                "tolerance": tol.of("score", bench, category.get(bench))}
    return list(seen.values())


def _benchmark_names(run: RunDir, tables: Tables, suite: Suite) -> Tables:
    """Every table's benchmarks named by the suite's benchmark names (a scores file may use task ids)."""
    return {name: suite.with_benchmark_names(df, run.file(name) or run.path) for name, df in tables.items()}


def versions_changed(run: dict, base: dict) -> dict[str, tuple[str | None, str | None]]:
    """Package versions that differ between the two runs' manifests (what might explain a change)."""
    old, new = base.get("versions", {}), run.get("versions", {})
    return {pkg: (old.get(pkg), new.get(pkg)) for pkg in sorted(set(old) & set(new)) if old[pkg] != new[pkg]}


@dataclass
class Result:
    """Everything `check` found, for every output."""

    run: str
    baseline: str
    alpha: float
    tolerances: Tolerances
    findings: list[Finding]
    detectable: list[dict]
    changed: dict[str, tuple[str | None, str | None]]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return not any(f.status in FAILING for f in self.findings)

    @property
    def failing(self) -> int:
        return sum(f.status in FAILING for f in self.findings)


def run_check(
    run_dir: Path, baseline: Path, tolerance: float | None = None, route_tolerance: float | None = None,
    cost_tolerance: float | None = None, json_out: bool = False, alpha: float = 0.05,
    tolerances: Path | None = None, junit: Path | None = None, markdown: Path | None = None,
) -> bool:
    """`scopebench check`: compare, print and write what was asked; True when nothing regressed or went
    missing. The flags' tolerances replace the default of the ``tolerances`` file (if any)."""
    flags = Limits(score=tolerance, route=route_tolerance, cost=cost_tolerance)
    for name, value in (("--tolerance", tolerance), ("--route-tolerance", route_tolerance),
                        ("--cost-tolerance", cost_tolerance)):
        if value is not None and not value >= 0:  # also refuses NaN
            raise ScopebenchError(f"{name} {value}: must be a number, 0 or more")
    if not 0 < alpha <= 1:
        raise ScopebenchError(f"--alpha {alpha}: must be a probability above 0 and at most 1, e.g. 0.05")
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
    suite = load_suite(known) if known else None
    if known:  # every benchmark must belong to the suite; task ids become benchmark names
        run, base = (_benchmark_names(d, t, load_suite(name or known))
                     for d, t, name in zip(dirs, (run, base), suites, strict=True))
    category = _categories(base["scores"], run["scores"])
    tol = Tolerances() if tolerances is None else load_tolerances(
        tolerances, suite, set(suite.categories if suite else category.values()))
    tol = replace(tol, default=_merged(tol.default, flags))
    same_documents(dirs, run, base)
    pairs = paired_samples(run, base)
    findings = [*compare_scores(run, base, tol, alpha, pairs), *compare_answers(pairs, tol, category),
                *compare_routes(run, base, tol, category), *compare_costs(run, base, tol, category)]
    notes = []
    if base["costs"].empty:
        notes.append("the baseline has no costs table: costs not checked")
    if base["routes"].empty:
        notes.append("routes not checked: the baseline has no routes table")
    result = Result(str(run_dir), str(baseline), alpha, tol, findings, detectable(base, pairs, tol, alpha),
                    versions_changed(dirs[0].manifest(), dirs[1].manifest()), notes)
    if junit is not None:
        write_junit(result, Path(junit))
    if markdown is not None:
        write_markdown(result, Path(markdown))
    if json_out:
        print(json.dumps(to_json(result), indent=2))
    else:
        print_check(result)
    return result.passed


# ----- outputs ---------------------------------------------------------------------------------------------
def to_json(result: Result) -> dict:
    tol = result.tolerances
    return {
        "passed": result.passed, "run": result.run, "baseline": result.baseline, "alpha": result.alpha,
        "tolerances": {"score_points": tol.default.score, "route_percent": tol.default.route,
                       "cost_percent": tol.default.cost, "answers_percent": tol.default.answers,
                       "file": tol.source},
        "versions_changed": {k: {"baseline": a, "run": b} for k, (a, b) in result.changed.items()},
        "detectable": result.detectable,
        "notes": result.notes, "findings": [asdict(f) for f in result.findings],
    }


def _summaries(result: Result) -> list[str]:
    """One line per check: how many compared, by status, and the default tolerance."""
    lines = []
    for check in UNITS:
        mine = [f for f in result.findings if f.check == check]
        if not mine:
            continue
        counts = ", ".join(f"{n} {s}" for s in STATUSES
                           if (n := sum(f.status == s for f in mine)) or s in ("ok", "regressed", "missing"))
        limit = result.tolerances.of(check)
        extra = ""
        if check == "score":
            paired = sum(f.p is not None for f in mine)
            extra = (f"; a paired test at alpha {result.alpha:g} on {paired}, "
                     f"the tolerance alone on {len(mine) - paired}")
        tolerance = "" if limit is None else f" (tolerance {limit:g} {UNITS[check]}{extra})"
        label = check if check == "answers" else f"{check}s"
        lines.append(f"{label}: {len(mine)} compared: {counts}{tolerance}")
    return lines


def _blind_spots(result: Result) -> list[str]:
    """"MMVP n=70: drops under 7.1 points are not detectable", benchmarks of one floor on one line."""
    groups: dict[tuple[int, float], list[str]] = {}
    for d in result.detectable:
        groups.setdefault((d["n"], d["min_detectable_drop"]), []).append(d["benchmark"])
    return [f"{', '.join(names)} n={n}: drops under {drop:.1f} points are not detectable at alpha "
            f"{result.alpha:g}" for (n, drop), names in sorted(groups.items())]


def _cells(f: Finding) -> list[str]:
    """baseline, run, change as printed."""
    return ["-" if v is None else f"{v:{fmt}}" for v, fmt in
            ((f.baseline, ".4g"), (f.value, ".4g"), (f.change, "+.2f"))]


def _shown(result: Result) -> list[Finding]:
    return sorted((f for f in result.findings if f.status != "ok"),
                  key=lambda f: (f.status not in FAILING, f.check, f.model, f.item))


def print_check(result: Result) -> None:
    """One summary line per check, every finding not ok (a table when it fits without cutting a name, else
    one block per finding), the blind spots, changed versions, notes and the verdict."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console = Console(highlight=False, width=150)  # a CI log
    for line in _summaries(result):
        console.print(line, soft_wrap=True)
    shown = _shown(result)
    if shown:
        table = Table(title="changes beyond tolerance", title_style="bold")
        heads = ("status", "check", "model", "benchmark / path", "baseline", "run", "change", "detail")
        rows = [[f.status, f.check, f.model, f.item, *_cells(f), f.detail] for f in shown]
        widths = [max(len(c) for c in (h, *(r[j] for r in rows))) for j, h in enumerate(heads)]
        widths[-1] = min(30, widths[-1])  # the detail wraps; every other cell is whole on one line
        for col, width in zip(heads, widths, strict=True):
            table.add_column(col, justify="right" if col in ("baseline", "run", "change") else "left",
                             no_wrap=col != "detail", min_width=width)
        for f, row in zip(shown, rows, strict=True):
            style = "red" if f.status in FAILING else "green" if f.status == "improved" else "yellow"
            table.add_row(Text(row[0], style=style), *row[1:])
        if sum(widths) + 3 * len(widths) + 1 <= console.width:
            console.print(table)
        else:  # too narrow for the table: a block per finding, never cut (the terminal wraps long lines)
            console.print("[bold]changes beyond tolerance[/]")
            for f in shown:
                base, value, change = _cells(f)
                console.print(Text.assemble((f.status, "red" if f.status in FAILING else "yellow"),
                                            f" {f.check} {f.model} {f.item}"), soft_wrap=True)
                console.print(f"  {base} -> {value} ({change} {UNITS[f.check]}); {f.detail}", soft_wrap=True)
    for line in _blind_spots(result):
        console.print(f"blind spot: {line}", soft_wrap=True)
    for pkg, (old, new) in result.changed.items():
        console.print(f"version changed: {pkg} {old} -> {new}", soft_wrap=True)
    for note in result.notes:
        console.print(f"note: {note}", soft_wrap=True)
    console.print("[bold green]PASS[/]: nothing regressed" if result.passed else
                  f"[bold red]FAIL[/]: {result.failing} regressed or missing", soft_wrap=True)


def _message(f: Finding) -> str:
    """A failure's numbers on one line."""
    base, value, change = _cells(f)
    limit = "" if f.tolerance is None else f", tolerance {f.tolerance:g}"
    return f"{f.check} {f.status}: {base} -> {value} ({change} {UNITS[f.check]}{limit}); {f.detail}"


def write_junit(result: Result, path: Path) -> None:
    """A JUnit XML file: a test suite per model, a test case per benchmark (or path) and check, a failure
    carrying the numbers for each regressed or missing value."""
    import xml.etree.ElementTree as ET

    from scopebench.tables import atomic_write_bytes

    root = ET.Element("testsuites", name="scopebench check", tests=str(len(result.findings)),
                      failures=str(result.failing), errors="0")
    for model in dict.fromkeys(f.model for f in result.findings):
        mine = [f for f in result.findings if f.model == model]
        suite = ET.SubElement(root, "testsuite", name=model, tests=str(len(mine)),
                              failures=str(sum(f.status in FAILING for f in mine)), errors="0", skipped="0")
        props = ET.SubElement(suite, "properties")
        for name, value in (("run", result.run), ("baseline", result.baseline),
                            ("alpha", f"{result.alpha:g}")):
            ET.SubElement(props, "property", name=name, value=value)
        for f in mine:
            case = ET.SubElement(suite, "testcase", classname=f"scopebench.{f.check}.{model}",
                                 name=f"{f.check} {f.item}", time="0")
            if f.status in FAILING:
                ET.SubElement(case, "failure", message=_message(f), type=f.status).text = _message(f)
            elif f.status != "ok" or f.detail:
                ET.SubElement(case, "system-out").text = _message(f)
    ET.indent(root)
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(result: Result) -> str:
    """A summary for a pull request or a CI job page: the verdict, the counts, what changed."""
    verdict = "PASS" if result.passed else f"FAIL ({result.failing} regressed or missing)"
    lines = [f"## scopebench check: {verdict}", "",
             f"Run `{result.run}` against the baseline `{result.baseline}`.", ""]
    lines += [f"- {line}" for line in _summaries(result)] + [""]
    shown = _shown(result)
    if shown:
        lines += ["| status | check | model | benchmark / path | baseline | run | change | detail |",
                  "|---|---|---|---|--:|--:|--:|---|"]
        lines += ["| " + " | ".join(map(_md, (f.status, f.check, f.model, f.item, *_cells(f), f.detail)))
                  + " |" for f in shown]
        lines.append("")
    extra = [f"Blind spot: {line}." for line in _blind_spots(result)]
    extra += [f"Version changed: {pkg} {old} -> {new}." for pkg, (old, new) in result.changed.items()]
    extra += [f"Note: {note}." for note in result.notes]
    return "\n".join(lines + [f"- {_md(e)}" for e in extra]) + "\n"


def write_markdown(result: Result, path: Path) -> None:
    """The Markdown summary to ``path``, and appended to ``$GITHUB_STEP_SUMMARY`` when that is set."""
    from scopebench.tables import atomic_write_text

    text = markdown(result)
    atomic_write_text(path, text)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(text + "\n")

