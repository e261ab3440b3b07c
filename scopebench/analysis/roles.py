"""Encoder roles (arXiv 2606.03879): what each routed encoder contributes, from a table of subset scores.

* Capacity(e): the score of the model that uses e alone (beside the shared encoder: route shared+e);
  ``vs shared`` subtracts the shared-only model's score when there is one.
* Necessity(e) = score(full set) - score(full set without e), two ways where the subsets exist:
  *masked*: the full model's own checkpoint with e dropped at inference (``FULL@all/mask:e``);
  *retrained*: a model trained on the full set minus e.
* rankings by each measure (1 = highest; ties share the best rank), Kendall tau-b and Spearman rho
  (``scipy.stats``, ties handled) between the masked and retrained Necessity rankings and between Capacity
  and each Necessity, with the number of encoders they rest on;
* the marginal-gain curve: the best subset of each size and its gap to the full set;
* the pair: the highest-Capacity encoder is the anchor, its complement the encoder whose pair with it
  scores highest; the best pair overall is either two high-Capacity encoders (the top two by Capacity)
  or an anchor + complement;
* rank dynamics: each encoder's mean pre-projector effective rank in a multi-encoder model over its rank
  in its own single-encoder model (``expanding`` above 1 + RANK_TOLERANCE, ``shrinking`` below
  1 - RANK_TOLERANCE, else ``stable``), for the best pair and the full set.

A measure the subsets cannot support is left out and named in ``left_out``, never filled in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pandas as pd

from scopebench.analysis.aggregate import OVERALL, Aggregate
from scopebench.analysis.routing import routed_models
from scopebench.config import ROUTING_KINDS, Policy
from scopebench.errors import ScopebenchError
from scopebench.run_dir import ModelEntry
from scopebench.tables import ERANK_PREFIX

COLUMNS = ["encoder", "group", "capacity", "capacity_vs_shared", "necessity_masked", "necessity_retrained",
           "erank", "capacity_model", "masked_model", "retrained_model", "full_model", "shared_model"]
MEASURES = {"capacity": "Capacity", "necessity_masked": "Necessity masked",
            "necessity_retrained": "Necessity retrained"}
HOWS = ("retrained", "masked")
RANK_TOLERANCE = 0.05  # |ratio - 1| within it: the encoder's effective rank is stable


@dataclass(frozen=True)
class Subset:
    """One evaluated model as an encoder subset: its routed encoders and how it was obtained."""

    model: str
    encoders: frozenset[str]
    how: str  # "retrained" (trained on exactly these encoders) or "masked" (the full checkpoint, masked)


@dataclass
class Roles:
    full: str
    encoders: tuple[str, ...]  # the full set, in pool order
    per_encoder: pd.DataFrame  # COLUMNS, per (encoder, group)
    rankings: pd.DataFrame  # encoder, group, rank by each measure present
    correlations: pd.DataFrame  # group, a, b, n, kendall_tau, spearman_rho
    curve: pd.DataFrame  # how, size, subset, model, score, gap_to_full
    pair: dict  # anchor, complement, pair scores, best pair and its kind (Overall)
    dynamics: pd.DataFrame  # model, role, encoder, erank, erank_alone, ratio, trend
    full_score: float = float("nan")  # Overall
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


def run_subsets(routes: pd.DataFrame, models: dict[str, ModelEntry], full: str | None = None,
                ) -> tuple[list[Subset], str | None, list[str]]:
    """The subsets a run holds: models on one fixed route, retrained (run with their checkpoint's own
    policy) or masked (``CHECKPOINT@POLICY/mask:...`` of the full model's checkpoint); the full model (the
    largest retrained set, or ``full``) and notes."""
    def entry(m: str) -> ModelEntry:
        return models.get(m) or ModelEntry.of(m, None)

    sets = fixed_sets(routes, {m: entry(m).policy for m in routes["model"].unique()})
    masked = {m for m in sets if "/mask:" in entry(m).policy}
    trained = {m: s for m, s in sets.items()
               if m not in masked and entry(m).trained_policy == entry(m).policy}
    notes = []
    if full is None:
        if not trained:
            return [], None, []
        size = max(map(len, trained.values()))
        fulls = [m for m, s in trained.items() if len(s) == size]
        full = fulls[0]
        if len(fulls) > 1:
            notes.append(f"encoder roles: several full-set models ({', '.join(fulls)}); "
                         f"Necessity is taken against {full}; choose another with --full")
    elif full not in trained:
        raise ScopebenchError(f"--full {full}: not a model of the runs on one fixed route with its own "
                              f"policy; choose from {', '.join(trained) or 'none'}")
    checkpoint = entry(full).base
    out = [Subset(m, frozenset(s), "retrained") for m, s in trained.items()]
    out += [Subset(full, frozenset(trained[full]), "masked")]
    out += [Subset(m, frozenset(sets[m]), "masked") for m in masked if entry(m).base == checkpoint]
    return out, full, notes


def check_subsets(subsets: list[Subset], full: str, benchmarks: dict[str, set[str]], where: str) -> None:
    """One error line for a subset named twice, an encoder outside the full set, or benchmark sets that
    differ (``benchmarks``: model -> the benchmarks it has scores for)."""
    full_set = next(s.encoders for s in subsets if s.model == full)
    seen: dict[tuple, str] = {}
    for s in subsets:
        key = (s.encoders, s.how)
        if key in seen and seen[key] != s.model:
            raise ScopebenchError(f"{where}: subset {'+'.join(sorted(s.encoders)) or 'shared only'} "
                                  f"({s.how}) appears twice ({seen[key]}, {s.model}); keep one")
        seen[key] = s.model
        extra = sorted(s.encoders - full_set)
        if extra:
            raise ScopebenchError(f"{where}: encoder '{extra[0]}' of {s.model} is in no full set (full set "
                                  f"{full}: {'+'.join(sorted(full_set))}); fix the name or the full set")
    ref = benchmarks.get(full, set())
    for s in subsets:
        got = benchmarks.get(s.model, set())
        if got != ref:
            diff = sorted(ref - got) or sorted(got - ref)
            what = "lacks" if ref - got else "has, unlike the full set,"
            raise ScopebenchError(f"{where}: {s.model} {what} benchmark {diff[0]}; give every subset the "
                                  f"same benchmarks as {full}")


def _ranks(values: pd.Series) -> pd.Series:
    return values.rank(ascending=False, method="min")


def _correlate(a: pd.Series, b: pd.Series) -> tuple[int, float, float]:
    from scipy.stats import kendalltau, spearmanr

    both = pd.concat([a, b], axis=1).dropna()
    if len(both) < 2 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return len(both), float("nan"), float("nan")
    x, y = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    return len(both), float(kendalltau(x, y).statistic), float(spearmanr(x, y).statistic)


def analyse(subsets: list[Subset], scores: pd.DataFrame, full: str, pool: list[str] | None = None,
            eranks: dict[str, dict[str, dict[str, float]]] | None = None) -> Roles:
    """The encoder-roles analysis. ``scores``: model x group (categories..., Overall), 0-100; ``eranks``:
    model -> encoder -> group -> its mean effective rank there, or None where no run holds them."""
    full_set = next(s.encoders for s in subsets if s.model == full and s.how == "retrained")
    encoders = tuple(e for e in (pool or sorted(full_set)) if e in full_set)
    by = {(s.encoders, s.how): s.model for s in subsets}
    groups = [*[g for g in scores.columns if g != OVERALL], OVERALL]
    left: list[str] = []

    def score(model: str | None, group: str) -> float:
        return float(scores.loc[model, group]) if model is not None else float("nan")

    shared = by.get((frozenset(), "retrained"))
    rows = []
    for e in encoders:
        without = full_set - {e}
        cap, mask, retr = (by.get((frozenset({e}), "retrained")), by.get((without, "masked")),
                           by.get((without, "retrained")))
        name = "+".join(x for x in encoders if x in without) or "the shared encoder only"
        for model, what in ((cap, f"Capacity: needs the model with {e} alone"),
                            (mask, f"Necessity masked: needs the full set masked to {name}"),
                            (retr, f"Necessity retrained: needs the full set without {e}")):
            if model is None:
                left.append(what)
        for g in groups:
            rows.append({
                "encoder": e, "group": g, "capacity": score(cap, g),
                "capacity_vs_shared": score(cap, g) - score(shared, g),
                "necessity_masked": score(full, g) - score(mask, g),
                "necessity_retrained": score(full, g) - score(retr, g),
                "erank": (eranks or {}).get(full, {}).get(e, {}).get(g, float("nan")),
                "capacity_model": cap, "masked_model": mask, "retrained_model": retr, "full_model": full,
                "shared_model": shared,
            })
    if shared is None:
        left.append("Capacity vs shared: needs the shared-only model")
    per = pd.DataFrame(rows, columns=COLUMNS)
    present = [m for m in MEASURES if per[m].notna().any()]

    rank_rows, corr_rows = [], []
    for g, part in per.groupby("group", sort=False):
        part = part.set_index("encoder")
        ranks = {m: _ranks(part[m]) for m in present}
        for e in part.index:
            rank_rows.append({"encoder": e, "group": g, **{m: ranks[m][e] for m in present}})
        for a, b in (("necessity_masked", "necessity_retrained"), ("capacity", "necessity_masked"),
                     ("capacity", "necessity_retrained")):
            if a in present and b in present:
                n, tau, rho = _correlate(part[a], part[b])
                corr_rows.append({"group": g, "a": MEASURES[a], "b": MEASURES[b], "n": n,
                                  "kendall_tau": tau, "spearman_rho": rho})
    for a, b in (("necessity_masked", "necessity_retrained"), ("capacity", "necessity_masked"),
                 ("capacity", "necessity_retrained")):
        if a not in present or b not in present:
            lacking = a if a not in present else b
            left.append(f"rank correlation {MEASURES[a]} vs {MEASURES[b]}: needs {MEASURES[lacking]}")
    rankings = pd.DataFrame(rank_rows, columns=["encoder", "group", *present])
    correlations = pd.DataFrame(corr_rows, columns=["group", "a", "b", "n", "kendall_tau", "spearman_rho"])

    full_score = score(full, OVERALL)
    curve_rows = []
    for how in HOWS:
        if not any(s.how == how and s.model != full for s in subsets):
            continue
        for size in range(1, len(encoders) + 1):
            cands = [(score(by[(frozenset(c), how)], OVERALL), by[(frozenset(c), how)], c)
                     for c in itertools.combinations(encoders, size) if (frozenset(c), how) in by]
            cands = [c for c in cands if pd.notna(c[0])]
            if not cands:
                left.append(f"marginal gain ({how}), size {size}: needs a {how} subset of {size}")
                continue
            best = max(cands, key=lambda c: c[0])
            curve_rows.append({"how": how, "size": size, "subset": "+".join(best[2]), "model": best[1],
                               "score": best[0], "gap_to_full": best[0] - full_score,
                               "of": len(list(itertools.combinations(encoders, size))),
                               "evaluated": len(cands)})
    curve = pd.DataFrame(curve_rows, columns=["how", "size", "subset", "model", "score", "gap_to_full", "of",
                                              "evaluated"])

    pair = _pair(per, by, encoders, score, full_score, left)
    dynamics = _dynamics(pair, full, encoders, by, eranks, left)
    return Roles(full, encoders, per, rankings, correlations, curve, pair, dynamics, full_score, left)


def _pair(per: pd.DataFrame, by: dict, encoders: tuple[str, ...], score, full_score: float,
          left: list[str]) -> dict:
    """Anchor (highest Capacity), its complement, and the best pair overall (Overall scores)."""
    cap = per[per["group"] == OVERALL].set_index("encoder")["capacity"].dropna()
    if len(encoders) < 2:
        return {}
    how = next((h for h in HOWS if any((frozenset(p), h) in by for p in itertools.combinations(encoders, 2))),
               None)
    if how is None:
        left.append("pair recommendation: needs the pairs of encoders (retrained or masked)")
        return {}
    pairs = {p: score(by[(frozenset(p), how)], OVERALL) for p in itertools.combinations(encoders, 2)
             if (frozenset(p), how) in by}
    best = max(pairs, key=pairs.get)
    out = {"how": how, "best_pair": "+".join(best), "best_pair_model": by[(frozenset(best), how)],
           "best_pair_score": pairs[best], "best_pair_gap_to_full": pairs[best] - full_score,
           "pairs_evaluated": len(pairs)}
    if len(cap) < len(encoders):
        left.append("anchor + complement: needs every encoder's Capacity")
        return out
    ranked = list(cap.sort_values(ascending=False, kind="stable").index)
    anchor = ranked[0]
    with_anchor = {p: s for p, s in pairs.items() if anchor in p}
    if not with_anchor:
        left.append(f"anchor + complement: needs the pairs with the anchor {anchor}")
        return out
    chosen = max(with_anchor, key=with_anchor.get)
    complement = next(e for e in chosen if e != anchor)
    top_two = all(cap[e] >= cap[ranked[1]] for e in best)  # the two highest Capacities (ties count)
    kind = "two high-Capacity encoders" if top_two else (
        "anchor + complement" if anchor in best else "neither (the anchor is not in it)")
    return out | {"anchor": anchor, "anchor_capacity": float(cap[anchor]), "complement": complement,
                  "complement_capacity_rank": ranked.index(complement) + 1, "pair": "+".join(chosen),
                  "pair_model": by[(frozenset(chosen), how)], "pair_score": with_anchor[chosen],
                  "pair_gap_to_full": with_anchor[chosen] - full_score, "best_pair_kind": kind}


def _dynamics(pair: dict, full: str, encoders: tuple[str, ...], by: dict,
              eranks: dict[str, dict[str, dict[str, float]]] | None, left: list[str]) -> pd.DataFrame:
    """Each encoder's effective rank in the best (retrained) pair and the full set over its rank alone."""
    cols = ["model", "role", "encoder", "erank", "erank_alone", "ratio", "trend"]
    if eranks is None:
        left.append("rank dynamics: needs run directories with effective ranks (erank:<encoder> columns)")
        return pd.DataFrame(columns=cols)
    targets = [(full, "full set", encoders)]
    if pair.get("how") == "retrained":
        targets.insert(0, (pair["best_pair_model"], "best pair", tuple(pair["best_pair"].split("+"))))
    rows = []
    for model, role, members in targets:
        for e in members:
            alone = by.get((frozenset({e}), "retrained"))
            there = eranks.get(model, {}).get(e, {}).get(OVERALL)
            base = eranks.get(alone, {}).get(e, {}).get(OVERALL) if alone else None
            if there is None or base is None or pd.isna(there) or pd.isna(base):
                left.append(f"rank dynamics of {e} in {model}: needs its effective rank there and in "
                            f"{alone or f'a model with {e} alone'}")
                continue
            ratio = there / base
            trend = ("expanding" if ratio > 1 + RANK_TOLERANCE else
                     "shrinking" if ratio < 1 - RANK_TOLERANCE else "stable")
            rows.append({"model": model, "role": role, "encoder": e, "erank": there, "erank_alone": base,
                         "ratio": ratio, "trend": trend})
    return pd.DataFrame(rows, columns=cols)


def encoder_order(routes: pd.DataFrame) -> list[str]:
    """The routed encoders in the order of the widest route (the full set's, in its config order), then any
    others as their routes appear: one naming of subsets across tables."""
    found = sorted(routes["route"].unique(), key=lambda r: -len(str(r).split("+")))
    return list(dict.fromkeys(e for r in found for e in str(r).split("+")[1:]))


def roles_from_runs(agg: Aggregate, routes: pd.DataFrame, models: dict[str, ModelEntry],
                    categories: dict[str, str], full: str | None = None) -> Roles | None:
    """The analysis over evaluated runs (None without a retrained multi-encoder model)."""
    subsets, full, notes = run_subsets(routes, models, full)
    if full is None or not next(s.encoders for s in subsets if s.model == full):
        return None
    pool = encoder_order(routes)
    eranks = {s.model: {e: mean_erank(routes, s.model, e, categories) for e in s.encoders}
              for s in subsets if s.how == "retrained"}
    out = analyse(subsets, agg.categories, full, pool, eranks)
    out.notes = notes + out.notes
    return out
