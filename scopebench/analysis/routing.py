"""What the router does: encoder shares, confidence, entropy, load balance, and the oracle router.

Per-category and all-benchmark statistics weight every benchmark equally (each sample of a
benchmark with n samples weighs 1/n), as the Cambrian-1 averages do. Entropies are in nats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scopebench.errors import ScopebenchError
from scopebench.tables import PROB_PREFIX

ALL = "all"
_TIE = 1e-9


def _chosen(routes: pd.DataFrame) -> pd.Series:
    return routes["encoder"].fillna("").astype(str)


def routed_models(routes: pd.DataFrame) -> list[str]:
    """Models with a router (some sample has a chosen routed encoder), in table order."""
    return list(routes.loc[_chosen(routes) != "", "model"].unique())


def router_pool(routes: pd.DataFrame, model: str) -> list[str]:
    """The routed encoders of ``model``: its prob:<enc> columns with values, else the encoders it chose."""
    part = routes[routes["model"] == model]
    probs = [c.removeprefix(PROB_PREFIX) for c in part.columns
             if c.startswith(PROB_PREFIX) and part[c].notna().any()]
    return probs or sorted(set(_chosen(part)) - {""})


def _entropy(p: np.ndarray) -> np.ndarray:
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=-1)


def _stats(onehot: np.ndarray, probs: np.ndarray, w: np.ndarray) -> dict[str, float]:
    w = w / w.sum()
    shares = w @ onehot
    mean_dist = w @ probs
    n_enc = probs.shape[1]
    return {
        "shares": shares,
        "confidence": float(w @ probs.max(axis=1)),
        "entropy": float(w @ _entropy(probs)),
        "balance": float(_entropy(mean_dist) / np.log(n_enc)) if n_enc > 1 else np.nan,
        "max_min_share": float(shares.max() / shares.min()) if shares.min() > 0 else np.inf,
    }


def routing_stats(routes: pd.DataFrame, model: str, categories: dict[str, str]) -> pd.DataFrame:
    """Routing statistics of ``model`` per benchmark, per category and over all benchmarks.

    Columns: model, level (benchmark / category / all), name, n, share:<enc>..., confidence (mean top
    probability), entropy (mean per-sample entropy), balance (entropy of the mean routing
    distribution / log E) and max_min_share (largest / smallest share of chosen encoders).
    ``categories`` maps benchmark -> category; its order sets the row order.
    """
    encs = router_pool(routes, model)
    part = routes[routes["model"] == model]
    present = set(part["benchmark"].unique())
    order = [b for b in categories if b in present]
    part = part[part["benchmark"].isin(order)]
    pick = _chosen(part).map({e: i for i, e in enumerate(encs)}).to_numpy(float)
    onehot = (pick[:, None] == np.arange(len(encs))[None, :]).astype(float)
    cols = [f"{PROB_PREFIX}{e}" for e in encs]
    probs = part.reindex(columns=cols).apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bench = part["benchmark"].to_numpy()
    inv_n = 1.0 / part.groupby("benchmark")["benchmark"].transform("size").to_numpy(float)
    groups: list[tuple[str, str, np.ndarray]] = [("benchmark", b, bench == b) for b in order]
    for cat in dict.fromkeys(categories[b] for b in order):
        groups.append(("category", cat, np.isin(bench, [b for b in order if categories[b] == cat])))
    groups.append((ALL, ALL, np.ones(len(part), dtype=bool)))
    rows = []
    for level, name, mask in groups:
        s = _stats(onehot[mask], probs[mask], inv_n[mask])
        row = {"model": model, "level": level, "name": name, "n": int(mask.sum())}
        row |= {f"share:{e}": float(v) for e, v in zip(encs, s.pop("shares"), strict=True)}
        rows.append(row | s)
    return pd.DataFrame(rows)


def baseline1_models(routes: pd.DataFrame, encoders: list[str]) -> dict[str, str]:
    """For each encoder, a model without a router whose only route is ``shared+<enc>`` (first by name)."""
    fixed = routes[~routes["model"].isin(routed_models(routes))]
    only = fixed.groupby("model")["route"].agg(lambda r: r.iloc[0] if r.nunique() == 1 else None)
    found = {}
    for model, route in sorted(only.dropna().items()):
        enc = str(route).removeprefix("shared+")
        if route == f"shared+{enc}" and enc in encoders and enc not in found:
            found[enc] = model
    return found


def oracle_table(routes: pd.DataFrame, model: str, baselines: dict[str, str]) -> pd.DataFrame:
    """The oracle router of ``model`` from per-encoder Baseline-1 sample scores.

    Per benchmark (and "Overall", the mean over benchmarks): n samples scored by every baseline and
    by ``model``; oracle = mean over samples of the best baseline score (the upper bound of top-1
    routing); router = ``model``'s own mean sample score; agreement = share of samples where the
    router's pick is among the best encoders. ``baselines`` maps every routed encoder to its model.
    """
    encs = router_pool(routes, model)
    missing = [e for e in encs if e not in baselines]
    if missing:
        raise ScopebenchError(
            f"oracle for '{model}' needs a Baseline-1 run (route 'shared+{missing[0]}') "
            f"for encoder '{missing[0]}'"
        )
    keys = ["benchmark", "doc_id"]
    own = routes.loc[routes["model"] == model, [*keys, "encoder", "sample_score"]]
    table = own.rename(columns={"sample_score": "router"}).drop_duplicates(keys, keep="last")
    for e in encs:
        base = routes.loc[routes["model"] == baselines[e],
                          [*keys, "sample_score"]].drop_duplicates(keys, keep="last")
        table = table.merge(base.rename(columns={"sample_score": e}), on=keys)
    table = table.dropna(subset=["router", *encs])
    scores = table[encs].to_numpy(float)
    best = scores.max(axis=1)
    pick = table["encoder"].map({e: i for i, e in enumerate(encs)}).to_numpy(float)
    known = ~np.isnan(pick)
    picked = np.full(len(table), -np.inf)
    picked[known] = scores[np.flatnonzero(known), pick[known].astype(int)]
    table = table.assign(oracle=best, agree=(picked >= best - _TIE).astype(float))
    per = table.groupby("benchmark", sort=False).agg(
        n=("oracle", "size"), oracle=("oracle", "mean"), router=("router", "mean"),
        agreement=("agree", "mean")
    )
    per.loc["Overall"] = [per["n"].sum(), per["oracle"].mean(), per["router"].mean(), per["agreement"].mean()]
    per["n"] = per["n"].astype(int)
    return per.reset_index().assign(model=model)[["model", "benchmark", "n", "oracle", "router", "agreement"]]
