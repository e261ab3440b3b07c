"""Known-answer tests of scopebench.analysis: averaging, Pareto front, bootstrap, routing, oracle, costs."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from scopebench.analysis.aggregate import OVERALL, aggregate
from scopebench.analysis.bootstrap import bootstrap_delta, paired_delta
from scopebench.analysis.compute import (
    all_encoders_baseline,
    expected_costs,
    expected_latency,
    path_encoders,
    resolve_expected,
    saving,
)
from scopebench.analysis.pareto import front_order, pareto_front
from scopebench.analysis.routing import baseline1_models, oracle_table, routing_stats
from scopebench.errors import ScopebenchError
from scopebench.reporting.inputs import load_external
from scopebench.suites import load_suite

SUITE = load_suite("cambrian16")


# ---------------------------------------------------------------- averaging
def _scores(model: str, values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"model": model, "benchmark": list(values), "score": list(values.values())})


def test_category_and_overall_are_plain_means_of_benchmarks():
    # score i (0..15) for the i-th benchmark: General 0-3, Knowledge 4-7, OCR 8-11, Vision 12-15
    full = {b.name: float(10 + i) for i, b in enumerate(SUITE.benchmarks)}
    agg = aggregate(_scores("a", full), SUITE)
    assert agg.categories.loc["a"].to_dict() == {
        "General": 11.5, "Knowledge": 15.5, "OCR & Chart": 19.5, "Vision-Centric": 23.5, OVERALL: 17.5,
    }
    assert agg.sizes == {"General": 4, "Knowledge": 4, "OCR & Chart": 4, "Vision-Centric": 4, OVERALL: 16}
    assert all(agg.is_complete("a", g) for g in agg.sizes)


def test_missing_benchmark_makes_category_and_overall_incomplete_not_averaged_over_fewer():
    full = {b.name: 50.0 for b in SUITE.benchmarks}
    part = {k: v for k, v in full.items() if k != "MMMU"}
    agg = aggregate(pd.concat([_scores("a", full), _scores("b", part)]), SUITE)
    assert math.isnan(agg.categories.loc["b", "Knowledge"])
    assert math.isnan(agg.categories.loc["b", OVERALL])
    assert agg.categories.loc["b", "General"] == 50.0
    assert agg.coverage.loc["b", "Knowledge"] == 3 and agg.coverage.loc["b", OVERALL] == 15
    assert not agg.is_complete("b", "Knowledge") and agg.is_complete("b", "General")
    assert agg.categories.loc["a", OVERALL] == 50.0


def test_eval_summary_averages_unrounded_scores(tmp_path):
    from scopebench.evaluation.display import score_summary
    from scopebench.run_dir import RunDir

    # the demo's Baseline-0 case: the mean is 27.748 (27.7); rounded to 2 decimals first it prints 27.8
    full = {b.name: 27.748 for b in SUITE.benchmarks}
    scores = _scores("a", full).assign(suite=SUITE.name, task="t", category="c", metric="m", raw_score=0.0,
                                       n=1)
    RunDir(tmp_path).write("scores", scores)
    summary = score_summary(tmp_path, SUITE, {("a", b) for b in full})["a"]
    assert summary["overall"] == pytest.approx(aggregate(scores, SUITE).categories.loc["a", OVERALL])
    assert f"{summary['overall']:.1f}" == f"{summary['categories']['Knowledge']:.1f}" == "27.7"


def test_external_scores_are_converted_from_native_scale(tmp_path):
    csv = tmp_path / "ext.csv"
    csv.write_text("model,benchmark,score\npaper,MME-P,1500\npaper,gqa,61.2\n")  # by name and by task id
    out = load_external(csv, SUITE, measured=set()).set_index("benchmark")["score"]
    assert out["MME-P"] == 75.0
    assert out["GQA"] == pytest.approx(61.2)


# ---------------------------------------------------------------- Pareto
def test_pareto_front_on_hand_made_points():
    #              A     B     C     D(=B)  E     F      G        H
    acc = np.array([50.0, 60.0, 55.0, 60.0, 60.0, 70.0, np.nan, 40.0])
    cost = np.array([1.0, 2.0, 3.0, 2.0, 2.5, 10.0, 0.5, 1.0])
    # C: dominated by B; E: same accuracy as B, more compute; H: same compute as A, less accurate;
    # B and D tie exactly, neither dominates the other; G has no accuracy.
    assert pareto_front(acc, cost).tolist() == [True, True, False, True, False, True, False, False]
    assert front_order(acc, cost).tolist() == [0, 1, 3, 5]


def test_pareto_front_single_and_nan_cost():
    assert pareto_front([70.0], [1.0]).tolist() == [True]
    assert pareto_front([70.0, 80.0], [np.nan, 5.0]).tolist() == [False, True]


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_uses_cambrian_averaging_and_is_seeded():
    # benchmark 1: 10 samples, +100 each; benchmark 2: 90 samples, 0 each -> mean of means 50
    # (pooled would be 10)
    diffs = [np.full(10, 100.0), np.zeros(90)]
    r = bootstrap_delta(diffs, n_resamples=500, seed=3)
    assert (r.delta, r.low, r.high, r.n_samples, r.n_benchmarks) == (50.0, 50.0, 50.0, 100, 2)
    rng = np.random.default_rng(0)
    noisy = [rng.normal(1.0, 10.0, 200) for _ in range(3)]
    assert bootstrap_delta(noisy, seed=7) == bootstrap_delta(noisy, seed=7)
    assert bootstrap_delta(noisy, seed=7) != bootstrap_delta(noisy, seed=8)


def test_bootstrap_is_fast_for_16_benchmarks_of_1000_samples():
    rng = np.random.default_rng(1)
    diffs = [100.0 * (rng.integers(0, 2, 1000) - rng.integers(0, 2, 1000)) for _ in range(16)]
    start = time.perf_counter()
    r = bootstrap_delta(diffs, n_resamples=2000)
    assert time.perf_counter() - start < 1.0
    assert r.low < r.delta < r.high


def test_bootstrap_ci_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    p_ref = np.array([0.3, 0.5, 0.6, 0.8])
    p_model = np.array([0.35, 0.5, 0.7, 0.75])
    sizes = [60, 120, 80, 100]
    true = 100.0 * float(np.mean(p_model - p_ref))
    covered = 0
    for i in range(200):
        diffs = []
        for pr, pm, n in zip(p_ref, p_model, sizes, strict=True):
            u, v, w = rng.random((3, n))  # half the pairs share a latent difficulty u: correlated outcomes
            ref = np.where(w < 0.5, u, v) < pr
            diffs.append(100.0 * ((u < pm).astype(float) - ref))
        r = bootstrap_delta(diffs, n_resamples=400, seed=i)
        covered += r.low <= true <= r.high
    assert 0.90 <= covered / 200 <= 0.99


def test_paired_delta_pairs_samples_by_benchmark_and_doc():
    rows = []
    for doc, (a, b) in enumerate([(100, 0), (100, 100), (0, 0), (100, 0)]):
        rows += [{"model": "m", "benchmark": "X", "doc_id": str(doc), "sample_score": a},
                 {"model": "r", "benchmark": "X", "doc_id": str(doc), "sample_score": b}]
    rows.append({"model": "m", "benchmark": "X", "doc_id": "9", "sample_score": 100})  # unpaired: ignored
    rows.append({"model": "m", "benchmark": "Y", "doc_id": "0", "sample_score": 0})
    rows.append({"model": "r", "benchmark": "Y", "doc_id": "0", "sample_score": 100})
    r = paired_delta(pd.DataFrame(rows), "m", "r", n_resamples=200)
    assert r.delta == pytest.approx((50.0 + -100.0) / 2) and r.n_samples == 5 and r.n_benchmarks == 2
    assert paired_delta(pd.DataFrame(rows), "m", "nobody") is None
    # with the benchmark scores: Y's score (25) is not the mean of its samples (100) for r, so only X counts
    scores = pd.DataFrame({"X": [75.0, 25.0], "Y": [0.0, 25.0]}, index=["m", "r"])
    only_x = paired_delta(pd.DataFrame(rows), "m", "r", scores, n_resamples=200)
    assert only_x.delta == pytest.approx(50.0) and only_x.n_samples == 4 and only_x.n_benchmarks == 1


# ---------------------------------------------------------------- routing statistics
ENCS = ["a", "b", "c", "d"]


def _routes(model: str, bench: str, picks: list[str], probs: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"model": model, "benchmark": bench, "doc_id": [str(i) for i in range(len(picks))],
                       "route": [f"shared+{p}" for p in picks], "encoder": picks})
    return df.assign(**{f"prob:{e}": probs[:, i] for i, e in enumerate(ENCS)})


def _row(stats: pd.DataFrame, name: str) -> dict:
    return stats.set_index("name").loc[name].to_dict()


def test_uniform_probabilities_give_maximal_entropy_and_quarter_confidence():
    picks = ENCS * 5
    stats = routing_stats(_routes("m", "GQA", picks, np.full((20, 4), 0.25)), "m", {"GQA": "General"})
    r = _row(stats, "GQA")
    assert r["confidence"] == pytest.approx(0.25)
    assert r["entropy"] == pytest.approx(math.log(4))
    assert r["balance"] == pytest.approx(1.0)
    assert r["max_min_share"] == pytest.approx(1.0)
    assert [r[f"share:{e}"] for e in ENCS] == pytest.approx([0.25] * 4)
    assert list(stats["level"]) == ["benchmark", "category", "all"]


def test_one_hot_probabilities_give_zero_entropy_and_full_confidence():
    collapsed = _routes("m", "GQA", ["a"] * 8, np.tile([1.0, 0, 0, 0], (8, 1)))
    r = _row(routing_stats(collapsed, "m", {"GQA": "General"}), "GQA")
    assert (r["confidence"], r["entropy"], r["balance"], r["max_min_share"]) == (1.0, 0.0, 0.0, math.inf)
    spread = _routes("m", "GQA", ENCS * 2, np.tile(np.eye(4), (2, 1)))
    r = _row(routing_stats(spread, "m", {"GQA": "General"}), "GQA")
    assert ((r["confidence"], r["entropy"], r["balance"], r["max_min_share"])
            == pytest.approx((1.0, 0.0, 1.0, 1.0)))


def test_category_statistics_weight_benchmarks_equally():
    two = pd.concat([_routes("m", "GQA", ["a"] * 2, np.tile([1.0, 0, 0, 0], (2, 1))),
                     _routes("m", "MME-P", ["b"] * 8, np.tile([0, 1.0, 0, 0], (8, 1)))])
    stats = routing_stats(two, "m", {"MME-P": "General", "GQA": "General"})
    assert list(stats["name"]) == ["MME-P", "GQA", "General", "all"]
    r = _row(stats, "General")
    assert (r["share:a"], r["share:b"], r["n"]) == (0.5, 0.5, 10)
    assert r["balance"] == pytest.approx(math.log(2) / math.log(4))


# ---------------------------------------------------------------- oracle router
def _oracle_routes() -> pd.DataFrame:
    # benchmark X: doc0 a right; doc1 b right; doc2 both right; doc3 both wrong
    a_scores, b_scores = [100, 0, 100, 0], [0, 100, 100, 0]
    picks, own = ["a", "a", "b", "a"], [100, 0, 100, 0]
    rows = []
    for d in range(4):
        rows.append({"model": "scope", "benchmark": "X", "doc_id": str(d), "route": f"shared+{picks[d]}",
                     "encoder": picks[d], "sample_score": own[d], "prob:a": 0.6, "prob:b": 0.4})
        rows.append({"model": "b1-a", "benchmark": "X", "doc_id": str(d), "route": "shared+a", "encoder": "",
                     "sample_score": a_scores[d]})
        rows.append({"model": "b1-b", "benchmark": "X", "doc_id": str(d), "route": "shared+b", "encoder": "",
                     "sample_score": b_scores[d]})
        rows.append({"model": "all", "benchmark": "X", "doc_id": str(d), "route": "shared+a+b", "encoder": "",
                     "sample_score": 100})
    # benchmark Y: one doc, only b is right, the router picks b
    rows += [{"model": "scope", "benchmark": "Y", "doc_id": "0", "route": "shared+b", "encoder": "b",
              "sample_score": 100, "prob:a": 0.1, "prob:b": 0.9},
             {"model": "b1-a", "benchmark": "Y", "doc_id": "0", "route": "shared+a", "encoder": "",
              "sample_score": 0},
             {"model": "b1-b", "benchmark": "Y", "doc_id": "0", "route": "shared+b", "encoder": "",
              "sample_score": 100}]
    return pd.DataFrame(rows)


def test_oracle_router_on_a_hand_made_table():
    routes = _oracle_routes()
    found = baseline1_models(routes, ["a", "b"])
    assert found == {"a": "b1-a", "b": "b1-b"}
    table = oracle_table(routes, "scope", found).set_index("benchmark")
    assert table.loc["X", ["n", "oracle", "router", "agreement"]].tolist() == [4, 75.0, 50.0, 0.75]
    assert table.loc["Y", ["n", "oracle", "router", "agreement"]].tolist() == [1, 100.0, 100.0, 1.0]
    assert table.loc["Overall", ["n", "oracle", "router", "agreement"]].tolist() == [5, 87.5, 75.0, 0.875]


def test_oracle_needs_every_baseline():
    with pytest.raises(ScopebenchError, match="Baseline-1 run .*'b'"):
        oracle_table(_oracle_routes(), "scope", {"a": "b1-a"})


# ---------------------------------------------------------------- expected costs
def _cost_tables():
    routes = pd.DataFrame({
        "model": ["m"] * 4 + ["all"] * 2, "benchmark": ["X"] * 4 + ["X"] * 2,
        "doc_id": ["0", "1", "2", "3", "0", "1"],
        "route": ["shared+a", "shared+a", "shared+a", "shared+b", "shared+a+b", "shared+a+b"],
        "encoder": ["a", "a", "a", "b", "", ""], "prob:a": [0.9, 0.8, 0.7, 0.2, np.nan, np.nan],
        "prob:b": [0.1, 0.2, 0.3, 0.8, np.nan, np.nan],
    })
    costs = pd.DataFrame([
        {"model": "m", "kind": "path", "path": "shared+a", "component": "total", "macs": 100.0,
         "params": 50.0, "active_params": 30.0},
        {"model": "m", "kind": "path", "path": "shared+a", "component": "a", "macs": 20.0},
        {"model": "m", "kind": "path", "path": "shared+b", "component": "total", "macs": 300.0,
         "params": 50.0, "active_params": 40.0},
        {"model": "all", "kind": "path", "path": "shared+a+b", "component": "total", "macs": 400.0,
         "params": 45.0, "active_params": 45.0},
        {"model": "m", "kind": "latency", "path": "shared+a", "component": "total", "latency_median_ms": 10.0,
         "batch_size": 1, "device": "cpu"},
        {"model": "m", "kind": "latency", "path": "shared+b", "component": "total", "latency_median_ms": 30.0,
         "batch_size": 1, "device": "cpu"},
        {"model": "m", "kind": "latency", "path": "shared+b", "component": "total", "latency_median_ms": 99.0,
         "batch_size": 8, "device": "cpu"},
    ])
    return routes, costs


def test_expected_cost_is_routing_weighted_path_cost():
    routes, costs = _cost_tables()
    ex = expected_costs(routes, costs).set_index("model")
    # m on X: 3/4 of samples on shared+a (100 MACs), 1/4 on shared+b (300 MACs)
    assert ex.loc["m", "macs"] == 150.0 and ex.loc["m", "flops"] == 300.0
    assert ex.loc["m", "active_params"] == 0.75 * 30 + 0.25 * 40 and ex.loc["m", "params"] == 50.0
    assert ((ex.loc["m", "kind"], ex.loc["m", "path"], ex.loc["m", "component"])
            == ("expected", "expected", "total"))
    assert ex.loc["all", "macs"] == 400.0
    assert saving(ex.reset_index(), "m", "all") == (1 - 150 / 400, 1 - 150 / 400, 1 - 150 / 400)
    lat = expected_latency(routes, costs).set_index("model")
    assert lat.loc["m", "latency_ms"] == 0.75 * 10 + 0.25 * 30 and lat.loc["m", "batch_size"] == 1
    assert "all" not in lat.index


def test_stored_expected_rows_win_and_missing_path_rows_are_an_error():
    routes, costs = _cost_tables()
    stored = pd.DataFrame([{"model": "m", "kind": "expected", "path": "expected", "component": "total",
                            "benchmark": "X", "macs": 123.0}])
    out = resolve_expected(routes, pd.concat([costs, stored])).set_index("model")
    assert out.loc["m", "macs"] == 123.0 and out.loc["all", "macs"] == 400.0
    with pytest.raises(ScopebenchError,
                       match="model 'm' has no kind=path.*route 'shared\\+b'.*scopebench flops m"):
        expected_costs(routes, costs[costs["path"] != "shared+b"])


def test_all_encoders_baseline_is_the_single_path_model_holding_every_routed_encoder():
    routes, costs = _cost_tables()
    assert path_encoders("shared+a+b") == {"a", "b"} and path_encoders("shared") == frozenset()
    assert all_encoders_baseline(routes, costs, "m") == "all"
    bigger = routes[routes["model"] == "all"].assign(model="all-plus", route="shared+a+b+c")
    assert all_encoders_baseline(pd.concat([routes, bigger]), costs, "m") == "all"  # fewest encoders wins
    named_all = routes[routes["model"] == "all"].assign(model="all-named", route="shared+all")
    assert all_encoders_baseline(pd.concat([routes, named_all]), costs, "m") == "all"  # explicit lists first
    only_named = pd.concat([routes[routes["model"] == "m"], named_all])
    assert all_encoders_baseline(only_named, costs[costs["model"] == "m"], "m") == "all-named"
    one = routes[routes["model"] == "all"].assign(model="b1", route="shared+a")
    assert all_encoders_baseline(pd.concat([routes[routes["model"] == "m"], one]),
                                 costs[costs["model"] == "m"], "m") is None
