"""Pareto front of (accuracy: higher is better, cost: lower is better)."""

from __future__ import annotations

import numpy as np


def pareto_front(accuracy, cost) -> np.ndarray:
    """Boolean mask of non-dominated points.

    A point is dominated when another point is at least as accurate and at most as costly, and
    strictly better in one of the two. Identical points do not dominate each other (both stay on
    the front). Points with a NaN accuracy or cost are never on the front.
    """
    acc = np.asarray(accuracy, dtype=float)
    cst = np.asarray(cost, dtype=float)
    valid = np.isfinite(acc) & np.isfinite(cst)
    aj, ai = acc[:, None], acc[None, :]
    cj, ci = cst[:, None], cst[None, :]
    # dominates[j, i]: point j dominates point i
    dominates = (aj >= ai) & (cj <= ci) & ((aj > ai) | (cj < ci))
    dominates &= valid[:, None]
    return valid & ~dominates.any(axis=0)


def front_order(accuracy, cost) -> np.ndarray:
    """Indices of the front's points sorted by increasing cost (for drawing the front as a step line)."""
    mask = pareto_front(accuracy, cost)
    idx = np.flatnonzero(mask)
    return idx[np.lexsort((np.asarray(accuracy, float)[idx], np.asarray(cost, float)[idx]))]
