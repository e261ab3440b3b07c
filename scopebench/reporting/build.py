"""Join a run's tables into the numbers a report shows (no formatting here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scopebench.analysis.aggregate import OVERALL, Aggregate, aggregate
from scopebench.analysis.bootstrap import paired_delta
from scopebench.analysis.compute import (
    FLOPS_PER_MAC,
    all_encoders_baseline,
    expected_latency,
    one_size_notes,
    path_totals,
    resolve_expected,
    saving,
)
from scopebench.analysis.pareto import pareto_front
from scopebench.analysis.roles import COLUMNS as ROLE_COLUMNS
from scopebench.analysis.roles import Roles, roles_from_runs
from scopebench.analysis.routing import (
    baseline1_models,
    oracle_table,
    routed_models,
    router_pool,
    routing_stats,
)
from scopebench.analysis.vision import blind_pairs, seeing_ref, vision_gains
from scopebench.errors import ScopebenchError
from scopebench.reporting.inputs import Runs
from scopebench.suites import Suite

_FIRST = ["model", "source", "type", "overall", "complete"]
_LAST = [
    "expected_macs", "expected_flops", "expected_tflops", "latency_ms", "latency_batch", "latency_device",
    "params", "active_params", "pareto", "reference", "saving", "saving_min", "saving_max", "delta",
    "delta_low", "delta_high",
    "delta_n",
]


@dataclass
class Report:
    suite: Suite
    runs: list[Path]
    agg: Aggregate
    models: pd.DataFrame  # one row per model: scores, costs, Pareto, saving and delta vs its reference
    expected: pd.DataFrame  # per (model, benchmark): expected macs / flops under routing
    paths: pd.DataFrame  # per (model, path): static cost and latency
    routing: pd.DataFrame
    oracle: pd.DataFrame
    roles: pd.DataFrame  # per (routed encoder, category / Overall): Capacity and Necessity
    vision: pd.DataFrame  # per (model with a blind run, benchmark / category / Overall): score, blind, gain
    notes: list[str]
    manifests: dict[str, dict] = field(default_factory=dict)  # run directory -> its manifest (provenance)
    stderr: pd.DataFrame = field(default_factory=pd.DataFrame)  # model x benchmark standard error (0-100)
    role_analysis: Roles | None = None  # the whole encoder-roles analysis (`scopebench roles`), when it runs


def _model_rows(scores: pd.DataFrame, routes: pd.DataFrame) -> pd.DataFrame:
    first = scores.drop_duplicates("model")[["model", "source"]].reset_index(drop=True)
    routers = set(routed_models(routes))
    by_model = routes.groupby("model")["route"]
    routes_of = by_model.first()[by_model.nunique() == 1]

    def kind(row) -> str:
        if row["source"] == "external":
            return "external"
        if row["model"] in routers:
            return f"router over {'/'.join(router_pool(routes, row['model']))}"
        return routes_of.get(row["model"]) or "mixed routes"

    return first.assign(type=first.apply(kind, axis=1))


def _costs(models: pd.DataFrame, scores: pd.DataFrame, routes: pd.DataFrame, costs: pd.DataFrame,
           notes: list[str]):
    """Per model: expected MACs / FLOPs per sample (mean over its benchmarks: NaN, with a note, unless every
    scored benchmark has an expected cost), parameters and routing-weighted latency; and the per-benchmark
    rows."""
    expected = resolve_expected(routes, costs)
    notes.extend(one_size_notes(routes, costs))
    latency = expected_latency(routes, costs)
    per = expected.groupby("model").agg(
        expected_macs=("macs", lambda s: s.mean(skipna=False)), params=("params", "max"),
        active_params=("active_params", "mean"),
    )
    scored = scores.dropna(subset=["score"]).groupby("model")["benchmark"].agg(set)
    costed = expected.dropna(subset=["macs"]).groupby("model")["benchmark"].agg(set)
    for m in per.index:
        missing = sorted(scored.get(m, set()) - costed.get(m, set()))
        if missing or pd.isna(per.loc[m, "expected_macs"]):
            per.loc[m, "expected_macs"] = float("nan")
            notes.append(f"no expected cost for {m}: no routes or path costs for "
                         f"{', '.join(missing) or 'some benchmarks'}; "
                         "rerun `scopebench eval` and `scopebench flops` for it")
    lat = latency.groupby("model").agg(
        latency_ms=("latency_ms", lambda s: s.mean(skipna=False)), latency_batch=("batch_size", "last"),
        latency_device=("device", "last"),
    )
    out = models.join(per, on="model").join(lat, on="model")
    out["expected_flops"] = FLOPS_PER_MAC * out["expected_macs"]
    out["expected_tflops"] = out["expected_flops"] / 1e12
    return out, expected


def _paths(costs: pd.DataFrame) -> pd.DataFrame:
    static = path_totals(costs, "path")[["model", "path", "macs", "params", "active_params", "visual_tokens"]]
    lat = path_totals(costs, "latency")
    lat = lat[["model", "path", "latency_median_ms", "latency_iqr_ms", "batch_size", "device"]]
    out = static.merge(lat, on=["model", "path"], how="outer")
    out["flops"] = FLOPS_PER_MAC * out["macs"]
    return out


def _references(models: pd.DataFrame, routes: pd.DataFrame, costs: pd.DataFrame,
                explicit: str | None) -> dict:
    measured = models.loc[models["source"] == "run", "model"].tolist()
    if explicit is not None:
        if explicit not in measured:
            raise ScopebenchError(f"reference: unknown model '{explicit}'; "
                                  f"choose from: {', '.join(measured)}")
        return {m: explicit for m in measured if m != explicit}
    routers = [m for m in routed_models(routes) if m in measured]
    refs = {m: all_encoders_baseline(routes, costs, m) for m in routers}
    shared = set(refs.values()) - {None}
    for m in measured:
        if m not in refs and len(shared) == 1:
            refs[m] = next(iter(shared))
    return {m: r for m, r in refs.items() if r is not None and r != m}


def _comparisons(models, refs, routes, expected, scores, n_resamples: int, seed: int) -> pd.DataFrame:
    cols = ["reference", "saving", "saving_min", "saving_max", "delta", "delta_low", "delta_high", "delta_n"]
    rows = {}
    for model, ref in refs.items():
        d = paired_delta(routes, model, ref, scores, n_resamples=n_resamples, seed=seed)
        rows[model] = [ref, *saving(expected, model, ref)] + (
            [d.delta, d.low, d.high, d.n_samples] if d else [np.nan, np.nan, np.nan, 0]
        )
    return models.join(pd.DataFrame.from_dict(rows, orient="index", columns=cols), on="model")


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model"])


def _routing(routes: pd.DataFrame, suite: Suite, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    categories = {b.name: b.category for b in suite.benchmarks}
    order = {b.name: i for i, b in enumerate(suite.benchmarks)}
    stats, oracles = [], []
    for model in routed_models(routes):
        stats.append(routing_stats(routes, model, categories))
        pool = router_pool(routes, model)
        found = baseline1_models(routes, pool)
        lacking = [e for e in pool if e not in found]
        if lacking:
            notes.append(
                f"no oracle for {model}: it needs Baseline-1 runs (route shared+ENC) for {', '.join(lacking)}"
            )
            continue
        table = oracle_table(routes, model, found)
        table["baselines"] = ", ".join(found[e] for e in pool)
        oracles.append(table.sort_values("benchmark", key=lambda s: s.map(order).fillna(len(order)),
                                         kind="stable"))
    return _concat(stats), _concat(oracles)


def build_report(
    runs: Runs, external: pd.DataFrame | None = None, reference: str | None = None,
    n_resamples: int = 2000, seed: int = 0,
) -> Report:
    """All the numbers of a report: scores, costs, Pareto front, savings and deltas, routing, oracle."""
    notes = list(runs.notes)
    keep = ["model", "benchmark", "category", "score", "source"]
    scores = pd.concat([f[keep] for f in (runs.scores, external) if f is not None and len(f)],
                       ignore_index=True)
    agg = aggregate(scores, runs.suite)
    # runs with vision disabled are compared with their own model only: no costs, no baseline, no front
    names = list(dict.fromkeys(runs.scores["model"]))
    blind = blind_pairs({m: runs.entry(m) for m in names}, names)
    seeing, costs = (t[~t["model"].isin(blind)] for t in (runs.routes, runs.costs))
    models, expected = _costs(_model_rows(scores, runs.routes), scores, seeing, costs, notes)
    models["overall"] = models["model"].map(agg.categories[OVERALL])
    models["complete"] = models["model"].map(lambda m: agg.is_complete(m, OVERALL))
    if blind:
        notes.append(f"blind runs ({', '.join(blind)}) are left out of compute, costs and the Pareto front: "
                     "they route on the real image, then encode a black one (the shared encoder runs twice)")
    for m, twin in blind.items():
        if twin is None:
            notes.append(f"no vision gain for {m}: evaluate the same model with vision "
                         f"({seeing_ref(runs.entry(m))})")
    is_blind = models["model"].isin(blind)
    models["pareto"] = pareto_front(models["overall"].where(~is_blind), models["expected_flops"])
    costed_runs = set(runs.costs["run"])
    for m in models.loc[(models["source"] == "run") & models["expected_macs"].isna() & ~is_blind, "model"]:
        run = runs.scores.loc[runs.scores["model"] == m, "run"].iloc[0]
        if run in costed_runs and m not in set(expected["model"]):  # else a note above or for the run already
            notes.append(f"no costs for {m}: run `scopebench flops {m} --output {run}`")
    refs = _references(models[~is_blind], seeing, costs, reference)
    for m in routed_models(seeing):
        if m not in refs and reference is None:
            pool = ", ".join(router_pool(runs.routes, m))
            notes.append(f"no all-encoders baseline for {m}: evaluate a model whose one path holds {pool}")
    models = _comparisons(models, refs, runs.routes, expected, agg.benchmarks, n_resamples, seed)
    cats = agg.categories.drop(columns=OVERALL).add_suffix(" (mean)")
    models = models.join(cats, on="model").join(agg.benchmarks, on="model")
    models["delta_n"] = models["delta_n"].astype("Int64")
    models = models[[*_FIRST, *cats.columns, *agg.benchmarks.columns, *_LAST]]
    routing, oracle = _routing(seeing, runs.suite, notes)
    categories = {b.name: b.category for b in runs.suite.benchmarks}
    analysis = roles_from_runs(agg, seeing, runs.models, categories)
    roles = pd.DataFrame(columns=ROLE_COLUMNS) if analysis is None else analysis.per_encoder
    role_notes = [] if analysis is None else analysis.notes + [
        f"encoder roles: left out: {x}" for x in dict.fromkeys(analysis.left_out)]
    vision = vision_gains(agg, runs.routes, blind, runs.suite, n_resamples, seed)
    return Report(runs.suite, runs.dirs, agg, models, expected, _paths(costs), routing, oracle, roles,
                  vision, notes + role_notes, runs.manifests,
                  runs.scores.pivot_table(index="model", columns="benchmark", values="stderr",
                                          aggfunc="first"), analysis)
