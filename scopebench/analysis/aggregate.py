"""Cambrian-1 averaging: per-benchmark scores (0-100), category = plain mean of its benchmarks,
overall = mean of all benchmarks. A category (or the overall score) with a missing benchmark is
incomplete: its value is NaN and its coverage says how many benchmarks were present."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scopebench.suites import Suite

OVERALL = "Overall"


@dataclass(frozen=True)
class Aggregate:
    benchmarks: pd.DataFrame  # model x benchmark, NaN where missing
    categories: pd.DataFrame  # model x (categories..., Overall), NaN where incomplete
    coverage: pd.DataFrame  # model x (categories..., Overall): benchmarks present
    sizes: dict[str, int]  # benchmarks in each category and Overall

    def is_complete(self, model: str, group: str) -> bool:
        return int(self.coverage.loc[model, group]) == self.sizes[group]


def groups(suite: Suite) -> dict[str, list[str]]:
    """Category (and ``Overall``) -> its benchmark names, in suite order."""
    out = {c: [b.name for b in suite.benchmarks if b.category == c] for c in suite.categories}
    return out | {OVERALL: [b.name for b in suite.benchmarks]}


def aggregate(scores: pd.DataFrame, suite: Suite) -> Aggregate:
    """Average a long (model, benchmark, score) table the Cambrian-1 way over ``suite``."""
    models = list(dict.fromkeys(scores["model"]))
    members_of = groups(suite)
    wide = scores.pivot_table(index="model", columns="benchmark", values="score", aggfunc="last")
    wide = wide.reindex(index=models, columns=members_of[OVERALL]).astype(float)
    means, coverage = {}, {}
    for group, members in members_of.items():
        part = wide[members]
        coverage[group] = part.notna().sum(axis=1)
        means[group] = part.mean(axis=1, skipna=False)
    return Aggregate(
        benchmarks=wide,
        categories=pd.DataFrame(means, index=wide.index),
        coverage=pd.DataFrame(coverage, index=wide.index),
        sizes={g: len(m) for g, m in members_of.items()},
    )
