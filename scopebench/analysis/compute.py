"""Compute under routing: expected MACs per sample, the all-encoders reference, savings, params.

Path names: ``shared`` (shared encoder only), ``shared+<enc>``, ``shared+<e1>+<e2>`` ... A model's
expected cost on a benchmark is sum over its routes of p(route) x cost(route), where p(route) is
the share of that benchmark's samples that took the route (from the ``routes`` table) and
cost(route) is the ``kind="path"``, ``component="total"`` row of the ``costs`` table.
FLOPs = 2 x MACs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.tables import conform

SHARED = "shared"
TOTAL = "total"
FLOPS_PER_MAC = 2
_KEYS = ["model", "benchmark"]


def path_encoders(path: str) -> frozenset[str]:
    """Routed encoders on a path: ``'shared+convnext+vit_hr'`` -> ``{'convnext', 'vit_hr'}``."""
    return frozenset(part for part in str(path).split("+") if part and part != SHARED)


def route_weights(routes: pd.DataFrame) -> pd.DataFrame:
    """Share of each benchmark's samples that took each path: columns model, benchmark, path, n, p."""
    counts = routes.groupby([*_KEYS, "route"], sort=False).size().rename("n").reset_index()
    counts["p"] = counts["n"] / counts.groupby(_KEYS)["n"].transform("sum")
    return counts.rename(columns={"route": "path"})


def _numeric(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out


def path_totals(costs: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The component="total" rows of ``kind`` ("path" or "latency"), the last one per (model, path);
    latency rows at each model's smallest measured batch size. Numeric columns as floats."""
    costs = _numeric(conform(costs, "costs"), ["macs", "params", "active_params", "visual_tokens",
                                               "batch_size",
                                               "latency_median_ms", "latency_iqr_ms"])
    rows = costs[(costs["kind"] == kind) & (costs["component"] == TOTAL)]
    if kind == "latency":
        rows = rows[rows["batch_size"] == rows.groupby("model")["batch_size"].transform("min")]
    return rows.drop_duplicates(["model", "path"], keep="last")


def _weighted(weights: pd.DataFrame, values: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Per (model, benchmark): sum of p x value over routes; NaN where a route has no value."""
    merged = weights.merge(values[["model", "path", *cols]], on=["model", "path"], how="left")
    merged = _numeric(merged, cols)
    gaps = merged[cols].isna().groupby([merged["model"], merged["benchmark"]]).any()
    merged[cols] = merged[cols].mul(merged["p"], axis=0)
    return merged.groupby(_KEYS)[cols].sum().mask(gaps).reset_index()


def _sample_tokens(expected: pd.DataFrame, routes: pd.DataFrame) -> pd.DataFrame:
    """Expected visual tokens from each sample's own count (the routes table's ``visual_tokens``: they follow
    the image at native resolution) where every sample of a (model, benchmark) has one; else the routing-
    weighted path figure stays."""
    if "visual_tokens" not in routes or expected.empty:
        return expected
    tokens = pd.to_numeric(routes["visual_tokens"], errors="coerce").astype(float)
    per = tokens.groupby([routes["model"], routes["benchmark"]]).agg(["mean", "count", "size"])
    per = per[per["count"] == per["size"]]["mean"].rename("sample_tokens").reset_index()
    out = expected.merge(per, on=_KEYS, how="left")
    out["visual_tokens"] = out["sample_tokens"].fillna(out["visual_tokens"])
    return out.drop(columns="sample_tokens")


def has_grids(routes: pd.DataFrame) -> pd.Series:
    """Per routes row: whether it holds the sample's native-resolution token grids (``visual_grid``)."""
    if "visual_grid" not in routes:
        return pd.Series(False, index=routes.index)
    return routes["visual_grid"].notna() & (routes["visual_grid"].astype(str).str.strip() != "")


def sample_costs(routes: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """Per (model, benchmark) whose every sample has a counted size: the mean over its samples of their own
    MACs (``sizes``: model, route, visual_grid, reference, macs, visual_tokens: `scopebench flops`' counts at
    each distinct (route, grid)), of their visual tokens, and of the all-encoders reference at their grids
    (``reference_macs``, NaN without one). Columns: model, benchmark, macs, visual_tokens, reference_macs."""
    cols = [*_KEYS, "macs", "visual_tokens", "reference_macs"]
    if sizes.empty or routes.empty:
        return pd.DataFrame(columns=cols)
    routes = routes.assign(visual_grid=routes["visual_grid"].where(has_grids(routes)))
    own = sizes[~sizes["reference"].astype(bool)][["model", "route", "visual_grid", "macs", "visual_tokens"]]
    ref = sizes[sizes["reference"].astype(bool)][["model", "visual_grid", "macs"]]
    merged = routes[[*_KEYS, "route", "visual_grid"]].merge(own, on=["model", "route", "visual_grid"],
                                                            how="left")
    merged = merged.merge(ref.rename(columns={"macs": "reference_macs"}), on=["model", "visual_grid"],
                          how="left")
    merged = _numeric(merged, ["macs", "visual_tokens", "reference_macs"])
    grouped = merged.groupby(_KEYS)
    out = grouped[["macs", "visual_tokens", "reference_macs"]].mean()
    out = out[grouped["macs"].count() == grouped.size()]  # a sample without a counted size: no mean
    return out.reset_index()[cols]


def expected_costs(routes_df: pd.DataFrame, costs_df: pd.DataFrame,
                   sizes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Expected per-sample cost of each (model, benchmark) under the observed routing.

    Returns ``costs``-schema rows with kind="expected", path="expected", component="total":
    macs, flops, visual_tokens and active_params are routing-weighted means of the path totals (visual_tokens:
    the mean of the samples' own counts where the routes table has them);
    params is the model's largest path-total ``params``. Models without path rows are skipped;
    a route without a path row is an error (the costs were counted for another config).
    ``sizes``: counts at each sample's own image size (``sample_costs``); where they cover a benchmark, its
    macs and visual_tokens are the mean of its samples' own counts, and ``reference_macs`` is added.
    """
    paths = path_totals(costs_df, "path")
    weights = route_weights(routes_df[routes_df["model"].isin(paths["model"])])
    known = weights.merge(paths[["model", "path"]], on=["model", "path"], how="left", indicator=True)
    lost = known[known["_merge"] == "left_only"]
    if len(lost):
        m, p = lost.iloc[0]["model"], lost.iloc[0]["path"]
        raise ScopebenchError(
            f"costs table: model '{m}' has no kind=path, component=total row for route '{p}'; "
            f"re-count it with `scopebench flops {m} --output RUN_DIR`"
        )
    out = _weighted(weights, paths, ["macs", "visual_tokens", "active_params"])
    out = _sample_tokens(out, routes_df)
    if sizes is not None:
        own = sample_costs(routes_df, sizes).set_index(_KEYS)
        out = out.set_index(_KEYS)
        out.update(own[["macs", "visual_tokens"]])
        out = out.join(own["reference_macs"]).reset_index()
    per_model = paths.groupby("model").agg(params=("params", "max"), device=("device", "last"),
                                           counter=("counter", "last"))
    out = out.join(per_model, on="model")
    out["flops"] = FLOPS_PER_MAC * out["macs"]
    out["kind"], out["path"], out["component"] = "expected", "expected", TOTAL
    return conform(out, "costs")


def one_size_notes(routes: pd.DataFrame, costs: pd.DataFrame) -> list[str]:
    """A note per model whose routes hold per-sample token grids (native resolution) but whose expected costs
    are not stored: computed here from the one-size path figures, not from each sample's own size."""
    costs = conform(costs, "costs")
    stored = set(costs.loc[costs["kind"] == "expected", "model"])
    native = sorted(set(routes.loc[has_grids(routes), "model"]) - stored)
    return [f"expected compute of {m}: its shared encoder runs at native resolution, but the costs hold only "
            f"one image size; the per-sample figure needs `scopebench flops {m} --output RUN` after eval"
            for m in native]


def resolve_expected(routes: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """Stored kind="expected" rows, plus computed ones for the (model, benchmark) pairs none is stored for."""
    costs = conform(costs, "costs")
    stored = costs[(costs["kind"] == "expected") & (costs["component"] == TOTAL)]
    stored = stored.drop_duplicates(_KEYS, keep="last")
    have = pd.MultiIndex.from_frame(stored[_KEYS].astype(str))
    todo = routes[~pd.MultiIndex.from_frame(routes[_KEYS].astype(str)).isin(have)] if len(routes) else routes
    computed = expected_costs(todo, costs)
    frames = [f for f in (stored, computed) if len(f)]
    out = pd.concat(frames, ignore_index=True) if frames else computed
    return _numeric(out, ["macs", "flops", "params", "active_params", "visual_tokens"])


def expected_latency(routes: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, benchmark): routing-weighted median latency (ms) of the path totals.

    Uses each model's smallest measured batch size; NaN where a route was not measured.
    Columns: model, benchmark, latency_ms, batch_size, device.
    """
    totals = path_totals(costs, "latency").rename(columns={"latency_median_ms": "latency_ms"})
    weights = route_weights(routes[routes["model"].isin(totals["model"])])
    if weights.empty:
        return pd.DataFrame(columns=[*_KEYS, "latency_ms", "batch_size", "device"])
    out = _weighted(weights, totals, ["latency_ms"])
    return out.join(totals.groupby("model")[["batch_size", "device"]].last(), on="model")


def model_pool(routes: pd.DataFrame, costs: pd.DataFrame, model: str) -> tuple[frozenset[str], set[str]]:
    """(routed encoders, path names) of a model, from its routes and its costs path rows."""
    r = routes[routes["model"] == model]
    paths = {str(p) for p in r["route"].dropna().unique()}
    paths |= {str(p) for p in costs.loc[(costs["model"] == model) & (costs["kind"] == "path"),
                                        "path"].dropna().unique()}
    pool = {str(e) for e in r["encoder"].dropna().unique()} - {""}
    probs = [c for c in r.columns if c.startswith("prob:") and r[c].notna().any()]
    pool |= {c.removeprefix("prob:") for c in probs}
    for p in paths:
        pool |= path_encoders(p)
    return frozenset(pool), paths


def all_encoders_baseline(routes: pd.DataFrame, costs: pd.DataFrame, model: str) -> str | None:
    """The all-encoders baseline of a routed ``model``.

    It is another model with a single path (no routing) whose path contains every routed encoder
    of ``model`` (encoders from the router's probabilities, its choices and its path names); a path
    naming ``all`` (e.g. ``shared+all``) counts as holding every encoder. When several qualify, the
    one with the fewest listed encoders wins (``all`` last), then the first by name. None if none.
    """
    pool, _ = model_pool(routes, costs, model)
    candidates = []
    for other in sorted(set(routes["model"].unique()) | set(costs["model"].unique())):
        if other == model:
            continue
        _, paths = model_pool(routes, costs, other)
        if len(paths) == 1:
            encs = path_encoders(next(iter(paths)))
            if "all" in encs:
                candidates.append((math.inf, other))
            elif pool and pool <= encs:
                candidates.append((len(encs), other))
    return min(candidates)[1] if candidates else None


def saving(expected: pd.DataFrame, model: str, reference: str) -> tuple[float, float, float]:
    """(saving, lowest, highest): 1 - expected MACs / reference MACs, on the mean over the benchmarks
    both have, and the range of the per-benchmark savings. NaNs when they share no costed benchmark."""
    pair = expected.pivot_table(index="benchmark", columns="model", values="macs", aggfunc="last")
    if model not in pair or reference not in pair:
        return (np.nan, np.nan, np.nan)
    pair = pair[[model, reference]].dropna()
    if pair.empty:
        return (np.nan, np.nan, np.nan)
    per_bench = 1.0 - pair[model] / pair[reference]
    return (float(1.0 - pair[model].mean() / pair[reference].mean()), float(per_bench.min()),
            float(per_bench.max()))
