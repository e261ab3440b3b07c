"""Vision dependence (Cambrian-1, section 3.1: "Who's answering: LLM or MLLM?").

A model evaluated twice, as itself and with vision disabled (``MODEL@blind``: the router reads the real
image, every encoder feeding the LLM a black one, so the routes are the same), shows per benchmark how
much of its score needs the image:
gain = score - blind score. A benchmark with a small gain is answered from the text (the question
and the LLM's priors) rather than from the image.

The 95% interval of a gain is a paired bootstrap over samples (pairs by benchmark and doc id) of the
benchmarks scored as the mean of their per-sample scores; a category or overall row holds its other
benchmarks (e.g. MME's per-image pairs, or benchmarks whose per-sample scores are not stored) at their
gain, and names them in ``fixed``.
"""

from __future__ import annotations

import math

import pandas as pd

from scopebench.analysis.aggregate import OVERALL, Aggregate, groups
from scopebench.analysis.bootstrap import bootstrap_delta, sample_diffs
from scopebench.run_dir import ModelEntry
from scopebench.suites import Suite

BLIND = "/blind"
COLUMNS = ["model", "blind_model", "group", "level", "score", "blind", "gain", "gain_low", "gain_high", "n",
           "fixed"]  # fixed: the row's benchmarks without per-sample scores (held at their gain)


def _gain(agg: Aggregate, model: str, blind: str, bench: str) -> float:
    return float(agg.benchmarks.loc[model, bench] - agg.benchmarks.loc[blind, bench])


def blind_pairs(models: dict[str, ModelEntry], names: list[str]) -> dict[str, str | None]:
    """Blind model -> the evaluated model it disables vision of (same checkpoint, same policy but
    ``/blind``, per the manifests' entries), or None."""
    out = {}
    for m in names:
        blind = models[m]
        if not blind.policy.endswith(BLIND):
            continue
        seeing = blind.policy.removesuffix(BLIND)
        twins = [o for o in names if o != m and models[o].base == blind.base and models[o].policy == seeing]
        out[m] = twins[0] if twins else None
    return out


def seeing_ref(blind: ModelEntry) -> str:
    """The reference of the model a blind run disables vision of: ``X@blind`` -> ``X``, ``X@P/blind`` ->
    ``X@P``."""
    return blind.ref.removesuffix("@blind").removesuffix(BLIND)


def vision_gains(
    agg: Aggregate, routes: pd.DataFrame, pairs: dict[str, str | None], suite: Suite,
    n_resamples: int = 2000, seed: int = 0,
) -> pd.DataFrame:
    """Per (model, benchmark / category / Overall): score, blind score, gain and its 95% interval."""
    rows_of = [(b, "benchmark", [b]) for b in agg.benchmarks.columns]
    rows_of += [(g, "overall" if g == OVERALL else "category", members)
                for g, members in groups(suite).items()]
    rows = []
    for blind, model in pairs.items():
        if model is None:
            continue
        diffs = sample_diffs(routes, model, blind, agg.benchmarks)
        for group, level, members in rows_of:
            source = agg.benchmarks if level == "benchmark" else agg.categories
            score, blind_score = source.loc[model, group], source.loc[blind, group]
            sampled = [b for b in members if b in diffs]
            ci = bootstrap_delta([diffs[b] for b in sampled], n_resamples=n_resamples, seed=seed) \
                if sampled else None
            gain = score - blind_score
            # benchmarks without per-sample scores are held at their gain: the interval of the row's mean
            fixed = sum(_gain(agg, model, blind, b) for b in members if b not in diffs)
            low, high = ((len(sampled) * x + fixed) / len(members) for x in (ci.low, ci.high)) if ci \
                else (math.nan, math.nan)
            rows.append({"model": model, "blind_model": blind, "group": group, "level": level, "score": score,
                         "blind": blind_score, "gain": gain, "gain_low": low, "gain_high": high,
                         "n": ci.n_samples if ci else 0, "fixed": [b for b in members if b not in diffs]})
    return pd.DataFrame(rows, columns=COLUMNS)
