"""Encoder roles (arXiv 2606.03879): what each routed encoder contributes, from evaluated runs.

* Capacity(e): the score of the model that uses e alone beside the shared encoder (route shared+e);
  ``vs shared`` subtracts the shared-only model's score when it was evaluated.
* Necessity(e) = score(full set) - score(full set without e), measured two ways when the runs exist:
  *masked*: the full model's own checkpoint with e dropped at inference (``FULL@all/mask:e``);
  *retrained*: a separately trained model whose one route is the full set minus e.
  The two can rank encoders differently; both are reported side by side.
* effective rank: the mean entropy effective rank of e's pre-projector features in the full model,
  which runs every encoder on every sample (``erank:<encoder>`` columns of the routes table).

The full set is the largest fixed encoder set among the evaluated models. Models are recognised by
their routes (a fixed model takes one route for every sample) and, for masking, by a ``/mask:``
reference; routers and token-level MoE models (per the manifest's policy) take no part.
"""

from __future__ import annotations

import pandas as pd

from scopebench.analysis.aggregate import OVERALL, Aggregate
from scopebench.analysis.routing import routed_models
from scopebench.config import ROUTING_KINDS, Policy
from scopebench.run_dir import ModelEntry
from scopebench.tables import ERANK_PREFIX

COLUMNS = ["encoder", "group", "capacity", "capacity_vs_shared", "necessity_masked", "necessity_retrained",
           "erank", "capacity_model", "masked_model", "retrained_model", "full_model", "shared_model"]


def fixed_sets(routes: pd.DataFrame, policies: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Model -> the routed encoders of its single route, for models that take one route for every sample."""
    routers = set(routed_models(routes))
    out = {}
    for model, part in routes.groupby("model", sort=False):
        routing = Policy.kind_of(policies.get(model, "")) in ROUTING_KINDS
        if model in routers or routing or part["route"].nunique() != 1:
            continue
        out[model] = tuple(part["route"].iloc[0].split("+")[1:])
    return out


def mean_erank(routes: pd.DataFrame, model: str, encoder: str,
               categories: dict[str, str]) -> dict[str, float]:
    """Group (category, Overall) -> mean effective rank of ``encoder`` in ``model``; benchmarks weigh
    equally."""
    part = routes[routes["model"] == model]
    column = ERANK_PREFIX + encoder
    if column not in part or part[column].isna().all():
        return {}
    per_bench = pd.to_numeric(part[column], errors="coerce").groupby(part["benchmark"]).mean().dropna()
    out = per_bench.groupby(per_bench.index.map(categories)).mean().to_dict()
    return {**out, OVERALL: float(per_bench.mean())}


def encoder_roles(
    agg: Aggregate, routes: pd.DataFrame, models: dict[str, ModelEntry], categories: dict[str, str],
) -> tuple[pd.DataFrame, list[str]]:
    """Capacity, Necessity and effective rank per routed encoder of the full set, per category and overall;
    plus notes. ``categories`` maps benchmark -> category; ``models`` holds the manifests' entries: the policy
    each model ran with, its checkpoint's own and its checkpoint (a run of ``demo-scope@fixed:hires`` is
    neither a trained Baseline-1 nor a masked full model, and takes no part)."""
    def entry(m: str) -> ModelEntry:
        return models.get(m) or ModelEntry.of(m, None)

    sets = fixed_sets(routes, {m: entry(m).policy for m in routes["model"].unique()})
    masked = {m: s for m, s in sets.items() if "/mask:" in entry(m).policy}
    trained = {m: s for m, s in sets.items()
               if m not in masked and entry(m).trained_policy == entry(m).policy}
    if not trained or max(map(len, trained.values())) < 2:
        return pd.DataFrame(columns=COLUMNS), []
    size = max(map(len, trained.values()))
    fulls = [m for m, s in trained.items() if len(s) == size]
    full, full_set = fulls[0], trained[fulls[0]]
    checkpoint = entry(full).base  # masked runs of it are CHECKPOINT@<policy>/mask:e
    notes = [f"encoder roles: several full-set models ({', '.join(fulls)}); "
             f"Necessity is taken against {full}"] \
        if len(fulls) > 1 else []

    def find(pool: dict[str, tuple[str, ...]], encoders: set[str], base: str | None = None) -> str | None:
        hits = [m for m, s in pool.items() if set(s) == encoders and (base is None or entry(m).base == base)]
        return hits[0] if hits else None

    def at(model: str | None, group: str) -> float:
        return float(agg.categories.loc[model, group]) if model is not None else float("nan")

    shared = find(trained, set())
    groups = [*[g for g in agg.categories.columns if g != OVERALL], OVERALL]
    rows, lacking = [], False
    for e in full_set:
        without = set(full_set) - {e}
        cap, mask, retr = find(trained, {e}), find(masked, without, checkpoint), find(trained, without)
        lacking |= cap is None or (mask is None and retr is None)
        ranks = mean_erank(routes, full, e, categories)
        for g in groups:
            rows.append({
                "encoder": e, "group": g, "capacity": at(cap, g),
                "capacity_vs_shared": at(cap, g) - at(shared, g),
                "necessity_masked": at(full, g) - at(mask, g),
                "necessity_retrained": at(full, g) - at(retr, g),
                "erank": ranks.get(g, float("nan")),
                "capacity_model": cap, "masked_model": mask, "retrained_model": retr, "full_model": full,
                "shared_model": shared,
            })
    if lacking:
        notes.append(
            f"encoder roles: some values need more runs: Capacity(e) a model on route shared+e; Necessity(e) "
            f"`{checkpoint}@all/mask:e` (masked) or a model trained on the full set minus e"
        )
    return pd.DataFrame(rows, columns=COLUMNS), notes
