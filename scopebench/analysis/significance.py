"""Is a score drop between two runs of the same documents more than noise? Paired, one-sided tests on
per-sample scores (0-100), a Holm correction across a model's benchmarks, and the smallest drop a
benchmark's sample count can ever show.

* 0/100 scores on both sides: McNemar's exact test. Of the samples whose score changed, ``losses`` went
  100 -> 0 and ``gains`` 0 -> 100; under "no change" each change is a loss with probability 1/2, so
  p = P(X >= losses), X ~ Binomial(losses + gains, 1/2) (``scipy.stats.binomtest``).
* other scores (ANLS, relaxed accuracy, ...): the paired sign-flip permutation test of the mean
  difference (``scipy.stats.permutation_test``, ``permutation_type="samples"``: exact up to 2^13
  samples whose score changed, else 9,999 seeded resamples).
* Holm across the benchmarks of one model, counting only the benchmarks that can reach significance
  at all (Tarone's refinement for discrete tests): with k changed samples the smallest p-value either
  test can give is 2^-k, so a benchmark with fewer than ``floor_samples(alpha)`` changed samples
  (none, when its answers did not move) cannot be significant and does not count.
* Minimum detectable drop of a 0/100 benchmark of n samples: a net loss of k samples gives at best
  p = 2^-k (k losses, no gains), so a drop is detectable only from k = ceil(log2(1 / alpha)) samples,
  i.e. ``100 * ceil(log2(1 / alpha)) / n`` points: 7.14 points for n = 70 at alpha 0.05 (k = 5). A
  smaller drop never fails the test, whatever the tolerance. This is the floor for one benchmark; with
  several in a model's Holm family the first needs p <= alpha / m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 9_999


@dataclass(frozen=True)
class Paired:
    """One benchmark's paired test: ``p`` one-sided (the run scores lower), ``changed`` samples whose score
    differs, ``test`` its name."""

    p: float
    changed: int
    test: str


def floor_samples(alpha: float) -> int:
    """The fewest changed samples whose test can reach p <= alpha: ceil(log2(1 / alpha))."""
    return max(1, math.ceil(math.log2(1.0 / alpha) - 1e-12))


def min_detectable_drop(n: int, alpha: float) -> float:
    """Points (0-100) below which a drop on n samples of 0/100 scores is never significant at alpha."""
    return 100.0 * floor_samples(alpha) / n


def is_binary(*scores: np.ndarray) -> bool:
    """Whether every per-sample score is 0 or 100."""
    return all(bool(np.isin(s, (0.0, 100.0)).all()) for s in scores)


def paired_drop(before: np.ndarray, after: np.ndarray, seed: int = 0) -> Paired:
    """One-sided paired test that ``after`` (the run) scores lower than ``before`` (the baseline), sample by
    sample (same documents, same order)."""
    from scipy import stats

    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    diff = after - before
    changed = int(np.count_nonzero(diff))
    if is_binary(before, after):
        losses = int(np.count_nonzero(diff < 0))
        p = stats.binomtest(losses, changed, 0.5, alternative="greater").pvalue if changed else 1.0
        return Paired(float(p), changed, "McNemar exact")
    if not changed:
        return Paired(1.0, 0, "sign-flip permutation")
    moved = diff != 0  # unchanged samples flip to themselves: leaving them out keeps p, and more tests exact
    result = stats.permutation_test(
        (after[moved], before[moved]), lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples", alternative="less", n_resamples=RESAMPLES, vectorized=True,
        random_state=seed)
    return Paired(float(result.pvalue), changed, "sign-flip permutation")


def holm(tests: dict[str, Paired], alpha: float) -> dict[str, float]:
    """Holm-adjusted p-values of one model's benchmarks; those with too few changed samples to reach
    ``alpha`` are left out of the family and keep p = 1 (see the module docstring)."""
    family = sorted((t.p, key) for key, t in tests.items() if t.changed >= floor_samples(alpha))
    adjusted, running = {key: 1.0 for key in tests}, 0.0
    for i, (p, key) in enumerate(family):
        running = max(running, min(1.0, (len(family) - i) * p))
        adjusted[key] = running
    return adjusted
