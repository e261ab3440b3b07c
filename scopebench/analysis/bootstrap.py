"""Paired bootstrap of the overall-score difference between two models.

Samples are paired by (benchmark, doc_id) and resampled with replacement within each benchmark;
each resample is averaged the Cambrian-1 way (mean per benchmark, then mean over benchmarks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

_CHUNK = 4_000_000  # resampled indices drawn at once (bounds memory for large benchmarks)


@dataclass(frozen=True)
class PairedDelta:
    delta: float  # observed difference of the overall scores (points, 0-100 scale)
    low: float
    high: float
    n_samples: int
    n_benchmarks: int
    n_resamples: int


def bootstrap_delta(
    diffs: list[np.ndarray], n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> PairedDelta:
    """Percentile interval of mean-over-benchmarks of per-benchmark mean differences."""
    rng = np.random.default_rng(seed)
    totals = np.zeros(n_resamples)
    for d in diffs:
        d = np.asarray(d, dtype=float)
        n = len(d)
        step = max(1, _CHUNK // n)
        for start in range(0, n_resamples, step):
            stop = min(n_resamples, start + step)
            idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32)
            totals[start:stop] += d[idx].mean(axis=1)
    means = totals / len(diffs)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return PairedDelta(
        delta=float(np.mean([np.mean(d) for d in diffs])),
        low=float(low),
        high=float(high),
        n_samples=int(sum(len(d) for d in diffs)),
        n_benchmarks=len(diffs),
        n_resamples=n_resamples,
    )


def sample_diffs(
    routes: pd.DataFrame, model: str, reference: str, scores: pd.DataFrame | None = None
) -> dict[str, np.ndarray]:
    """Benchmark -> per-sample score differences (``model`` - ``reference``) over the samples both scored.

    With ``scores`` (model x benchmark, as ``Aggregate.benchmarks``), only benchmarks whose score is the
    mean of its per-sample scores for both models count (not, e.g., MME's per-image pairs or MMVP's pairs).
    """
    keys = ["benchmark", "doc_id"]

    def scored(name: str) -> pd.DataFrame:
        part = routes.loc[routes["model"] == name, [*keys, "sample_score"]]
        return part.dropna(subset=["sample_score"]).drop_duplicates(keys, keep="last")

    both = scored(model).merge(scored(reference), on=keys, suffixes=("_m", "_r"))
    out = {}
    for bench, g in both.groupby("benchmark", sort=True):
        m, r = g["sample_score_m"].astype(float), g["sample_score_r"].astype(float)
        if scores is not None and not all(
            name in scores.index and math.isclose(mean, scores.loc[name].get(bench, math.nan), abs_tol=0.01)
            for name, mean in ((model, m.mean()), (reference, r.mean()))
        ):
            continue
        out[bench] = (m - r).to_numpy()
    return out


def paired_delta(
    routes: pd.DataFrame, model: str, reference: str, scores: pd.DataFrame | None = None, **kwargs
) -> PairedDelta | None:
    """``model`` minus ``reference`` over their shared scored samples (see :func:`sample_diffs`); None when
    they share none."""
    diffs = sample_diffs(routes, model, reference, scores)
    return bootstrap_delta(list(diffs.values()), **kwargs) if diffs else None
