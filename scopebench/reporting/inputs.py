"""Read what a report joins: run directories (one suite) and an optional CSV of external scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.run_dir import ModelEntry, RunDir
from scopebench.suites import Suite, load_suite
from scopebench.tables import conform

EXTERNAL_COLUMNS = ("model", "benchmark", "score")


@dataclass
class Runs:
    suite: Suite
    dirs: list[Path]
    scores: pd.DataFrame  # + column "source" ("run" or "external")
    routes: pd.DataFrame
    costs: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    models: dict[str, ModelEntry] = field(default_factory=dict)  # what the manifests say of each model
    manifests: dict[str, dict] = field(default_factory=dict)  # run directory -> its manifest

    def entry(self, model: str) -> ModelEntry:
        """A model's manifest entry (derived from its name for a model no manifest lists)."""
        return self.models.get(model) or ModelEntry.of(model, None)


def _suite_of(run_dir: Path, manifest: dict, scores: pd.DataFrame) -> str:
    name = manifest.get("suite")
    if name:
        return str(name)
    found = sorted(set(scores["suite"].dropna().astype(str)))
    if len(found) != 1:
        what = "no suite" if not found else f"several suites ({', '.join(found)})"
        raise ScopebenchError(
            f"{run_dir}: manifest.json has no 'suite' and the scores table names {what}; "
            "add \"suite\": NAME to manifest.json"
        )
    return found[0]


def _same_suite(run_dir: Path, suite: Suite, scores: pd.DataFrame) -> None:
    """Refuse a scores table whose rows were made with another suite than ``suite`` (the manifest's)."""
    where = RunDir(run_dir).file("scores")
    other = sorted(set(scores["suite"].dropna().astype(str)) - {suite.name})
    if other:
        raise ScopebenchError(f"{run_dir / 'manifest.json'}: field 'suite' is '{suite.name}' but {where} "
                              f"column 'suite' says '{other[0]}'; set manifest.json's suite to the run's")
    for bench, task in scores[["benchmark", "task"]].dropna().drop_duplicates().itertuples(index=False):
        b = suite.benchmark(bench)
        if str(task) not in (b.task, b.judge_task):
            raise ScopebenchError(f"{where}: column 'task': '{task}' is not a task of {b.name} in suite "
                                  f"'{suite.name}' ({b.task}); report the run under the suite it used")


def _no_duplicates(df: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = df[df.duplicated(keys, keep=False)]
    if len(dup):
        row = dup.iloc[0]
        runs = ", ".join(dict.fromkeys(dup.loc[(dup[keys] == row[keys]).all(axis=1), "run"]))
        raise ScopebenchError(
            f"{what} of model '{row['model']}' on '{row['benchmark']}' appear more than once ({runs}); "
            "pass each (model, benchmark) in one run directory only"
        )


def load_runs(run_dirs: list[Path]) -> Runs:
    """Concatenate the tables of ``run_dirs``; they must share one suite."""
    if not run_dirs:
        raise ScopebenchError("no run directory given; pass a run directory written by `scopebench eval`")
    frames: dict[str, list[pd.DataFrame]] = {"scores": [], "routes": [], "costs": []}
    suites: dict[str, Path] = {}
    suite = None
    notes, models, manifests = [], {}, {}
    for run in map(RunDir, run_dirs):
        if not run.path.is_dir():
            raise ScopebenchError(f"{run}: not a directory; "
                                  "pass a run directory written by `scopebench eval`")
        scores = run.read("scores")
        if scores.empty:
            raise ScopebenchError(f"{run.file('scores')}: no rows; evaluate a model with `scopebench eval`")
        manifest = manifests[str(run)] = run.manifest()
        name = _suite_of(run.path, manifest, scores)
        try:
            suite = load_suite(name)
        except ScopebenchError as err:
            where = run.path / "manifest.json" if manifest.get("suite") else run.file("scores")
            raise ScopebenchError(f"{where}: suite: {err}") from None
        suites.setdefault(suite.name, run)
        if len(suites) > 1:
            (a, ra), (b, rb) = list(suites.items())[:2]
            raise ScopebenchError(
                f"{rb}: suite '{b}' differs from suite '{a}' of {ra}; report runs of one suite together"
            )
        scores = suite.with_benchmark_names(scores, run.file("scores"))
        _same_suite(run.path, suite, scores)
        routes = run.read("routes")
        costs = run.read("costs", required=False)
        models.update(run.models())
        if costs.empty:
            notes.append(f"{run}: no costs: run `scopebench flops MODEL --output {run}`")
        frames["scores"].append(scores.assign(run=str(run)))
        frames["routes"].append(suite.with_benchmark_names(routes, run.file("routes")).assign(run=str(run)))
        if len(costs):
            costs = suite.with_benchmark_names(costs, run.file("costs"))
        frames["costs"].append(costs.assign(run=str(run)))
    scores, routes, costs = (conform(pd.concat(frames[k], ignore_index=True), k)
                             for k in ("scores", "routes", "costs"))
    _no_duplicates(scores, ["model", "benchmark"], "scores")
    _no_duplicates(routes, ["model", "benchmark", "doc_id"], "routes")
    routes["doc_id"] = routes["doc_id"].astype(str)
    routes["encoder"] = routes["encoder"].fillna("").astype(str)
    scores["score"] = pd.to_numeric(scores["score"], errors="coerce")
    routes["sample_score"] = pd.to_numeric(routes["sample_score"], errors="coerce")
    return Runs(suite, [Path(d) for d in run_dirs], scores.assign(source="run"), routes, costs, notes, models,
                manifests)


def no_runs(suite: str | None) -> Runs:
    """No run directory: empty tables of ``suite``, for a report of external scores alone."""
    if suite is None:
        raise ScopebenchError("no run directory given; pass run directories, or --scores FILE.csv with "
                              "--suite NAME to tabulate published scores alone")
    frames = [conform(pd.DataFrame(), k).assign(run=pd.Series(dtype=object)) for k in ("scores", "routes",
                                                                                      "costs")]
    return Runs(load_suite(suite), [], frames[0].assign(source=pd.Series(dtype=object)), *frames[1:])


def scored_row(rec: dict, suite, where: str):
    """A CSV row's benchmark (by name or task id) and its score, checked against the native scale."""
    try:
        bench = suite.benchmark(str(rec["benchmark"]))
    except ScopebenchError as err:
        raise ScopebenchError(f"{where}: column 'benchmark': {err}") from None
    value = pd.to_numeric(rec["score"], errors="coerce")
    if not (pd.notna(value) and 0 <= value <= bench.native_max):
        what = "is outside" if pd.notna(value) else "is not a number in"
        raise ScopebenchError(f"{where}: score {rec['score']!r} of {bench.name} {what} "
                              f"0-{bench.native_max:g} (its native scale); fix the value")
    return bench, value


def load_external(path: Path, suite: Suite, measured: set[str]) -> pd.DataFrame:
    """External scores CSV (model,benchmark,score in each benchmark's native scale) -> 0-100 rows."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ScopebenchError(f"{path}: file not found; "
                              "pass a CSV with columns model,benchmark,score") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise ScopebenchError(f"{path}: not a readable CSV; write columns model,benchmark,score") from None
    missing = [c for c in EXTERNAL_COLUMNS if c not in df.columns]
    if missing:
        raise ScopebenchError(f"{path}: missing column '{missing[0]}'; "
                              "the header must be model,benchmark,score")
    rows = []
    for i, rec in enumerate(df.to_dict("records"), start=2):
        where = f"{path}: line {i}"
        if pd.isna(rec["model"]) or not str(rec["model"]).strip():
            raise ScopebenchError(f"{where}: column 'model' is empty; name the model")
        bench, value = scored_row(rec, suite, where)
        if rec["model"] in measured:
            raise ScopebenchError(
                f"{where}: model '{rec['model']}' is also a measured model; rename the external one"
            )
        rows.append({"model": str(rec["model"]), "benchmark": bench.name, "category": bench.category,
                     "score": bench.native_to_percent(value), "source": "external", "run": str(path)})
    out = pd.DataFrame(rows, columns=["model", "benchmark", "category", "score", "source", "run"])
    _no_duplicates(out, ["model", "benchmark"], f"{path}: scores")
    return out
