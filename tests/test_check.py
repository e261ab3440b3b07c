"""`scopebench check` on synthetic run directories with known changes: exit codes, findings, bad input."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.run_dir import RunDir
from tests._report_data import make_run, write_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("check") / "baseline", n_docs=20)


@pytest.fixture
def run(baseline, tmp_path):
    """A copy of the baseline to perturb."""
    return shutil.copytree(baseline, tmp_path / "run")


def edit(run_dir, name, fn):
    RunDir(run_dir).write(name, fn(RunDir(run_dir).read(name)))


def check(run_dir, baseline, *options):
    result = runner.invoke(app, ["check", str(run_dir), "--baseline", str(baseline), "--json", *options])
    return result.exit_code, (json.loads(result.stdout) if result.exit_code in (0, 1) else result.output)


def not_ok(report):
    return {(f["check"], f["model"], f["item"], f["status"]): f
            for f in report["findings"] if f["status"] != "ok"}


def test_identical_runs_pass(run, baseline):
    code, report = check(run, baseline)
    assert code == 0 and report["passed"] and not not_ok(report)
    counts = pd.Series([f["check"] for f in report["findings"]]).value_counts()
    # 6 models x 16 benchmarks of scores and routes; one cost per path total
    assert counts["score"] == 96 and counts["route"] == 96
    assert counts["cost"] == len(RunDir(baseline).read("costs")
                                 .query("kind == 'path' and component == 'total'"))


def shift_score(model, benchmark, delta):
    def fn(df):
        df.loc[(df["model"] == model) & (df["benchmark"] == benchmark), "score"] += delta
        return df
    return fn


@pytest.mark.parametrize(("delta", "tolerance", "code", "status"), [
    (-2.0, "1", 1, "regressed"), (-0.5, "1", 0, None), (-0.5, "0", 1, "regressed"), (3.0, "1", 0, "improved"),
])
def test_score_change_against_tolerance(run, baseline, delta, tolerance, code, status):
    edit(run, "scores", shift_score("demo-scope", "GQA", delta))
    got, report = check(run, baseline, "--tolerance", tolerance)
    assert got == code
    found = not_ok(report)
    if status is None:
        assert not found
    else:
        f = found[("score", "demo-scope", "GQA", status)]
        assert f["change"] == pytest.approx(delta) and len(found) == 1


def test_missing_benchmark_fails(run, baseline):
    edit(run, "scores", lambda df: df[~((df["model"] == "demo-baseline-0") & (df["benchmark"] == "DocVQA"))])
    code, report = check(run, baseline)
    assert code == 1 and ("score", "demo-baseline-0", "DocVQA", "missing") in not_ok(report)


def test_rerouted_share(run, baseline):
    def reroute(df):
        rows = df.index[(df["model"] == "demo-scope") & (df["benchmark"] == "MMVP")][:6]
        df.loc[rows, "route"] = df.loc[rows, "route"].map(
            lambda r: "shared+siglip" if r != "shared+siglip" else "shared+vit_hr")
        return df

    edit(run, "routes", reroute)
    code, report = check(run, baseline)  # 6 of 20 samples = 30% > 5%
    f = not_ok(report)[("route", "demo-scope", "MMVP", "regressed")]
    assert code == 1 and f["change"] == pytest.approx(30.0) and f["detail"] == "6 of 20 samples re-routed"
    assert check(run, baseline, "--route-tolerance", "30")[0] == 0


def test_run_without_routes_misses_them(run, baseline):
    (run / "routes.parquet").unlink()
    code, report = check(run, baseline)
    missing = {k for k in not_ok(report) if k[0] == "route"}
    routed = RunDir(baseline).read("routes").groupby(["model", "benchmark"]).ngroups
    assert code == 1 and len(missing) == routed > 0 and {k[3] for k in missing} == {"missing"}


def test_flops_growth(run, baseline):
    def grow(df):
        m = (df["model"] == "demo-baseline-all") & (df["component"] == "total") & (df["kind"] == "path")
        df.loc[m, "flops"] *= 1.02
        return df

    edit(run, "costs", grow)
    code, report = check(run, baseline)
    f = not_ok(report)[("cost", "demo-baseline-all", "path shared+convnext+vit_hr+siglip", "regressed")]
    assert code == 1 and f["change"] == pytest.approx(2.0)
    assert check(run, baseline, "--cost-tolerance", "5")[0] == 0
    code, report = check(baseline, run)  # 2% cheaper: improved, passes
    assert code == 0 and [k[3] for k in not_ok(report)] == ["improved"]


def test_run_without_costs_misses_them_once_per_model(run, baseline):
    (run / "costs.parquet").unlink()
    code, report = check(run, baseline)
    missing = [k for k in not_ok(report) if k[0] == "cost"]
    assert code == 1 and len(missing) == 6 and {k[2] for k in missing} == {"costs table"}


def test_baseline_as_scores_file(run, baseline, tmp_path):
    scores = tmp_path / "release_scores.csv"
    RunDir(baseline).read("scores").to_csv(scores, index=False)
    code, report = check(run, scores)
    assert code == 0 and {f["check"] for f in report["findings"]} == {"score"}
    assert any("routes not checked" in n for n in report["notes"])


def test_changed_versions_are_listed(run, baseline, tmp_path):
    release = shutil.copytree(baseline, tmp_path / "release")
    write_manifest(release, {"suite": "cambrian16", "versions": {"torch": "2.14.1", "timm": "1.0.0"}})
    write_manifest(run, {"suite": "cambrian16", "versions": {"torch": "2.15.0", "timm": "1.0.0"}})
    code, report = check(run, release)
    assert code == 0 and report["versions_changed"] == {"torch": {"baseline": "2.14.1", "run": "2.15.0"}}
    result = runner.invoke(app, ["check", str(run), "--baseline", str(release)])
    assert "version changed: torch 2.14.1 -> 2.15.0" in result.stdout


def test_table_output_names_the_regression(run, baseline):
    edit(run, "scores", shift_score("demo-scope", "ChartQA", -4.0))
    result = runner.invoke(app, ["check", str(run), "--baseline", str(baseline)])
    assert result.exit_code == 1
    line = next(s for s in result.stdout.splitlines() if "ChartQA" in s)
    assert "regressed" in line and "demo-scope" in line and "-4.00" in line
    assert "FAIL: 1 regressed or missing" in result.stdout


def test_bad_input(run, baseline, tmp_path):
    def one_line(args):
        result = runner.invoke(app, ["check", *map(str, args)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error:") and result.output.count("\n") == 1, result.output
        return result.output

    assert "no such baseline" in one_line([run, "--baseline", tmp_path / "nope"])
    assert "no such run directory" in one_line([tmp_path / "nope", "--baseline", baseline])
    bad = tmp_path / "bad.csv"
    bad.write_text("model,benchmark\nx,GQA\n")
    assert f"{bad}: the scores table lacks column 'suite'" in one_line([run, "--baseline", bad])
    assert "must be a number, 0 or more" in one_line([run, "--baseline", baseline, "--tolerance", "-1"])
    assert "--tolerance nan: must be a number" in one_line([run, "--baseline", baseline,
                                                             "--tolerance", "nan"])
    scores = RunDir(baseline).read("scores")
    malformed = {  # a scores file as the baseline -> the one line it must give
        "text": (scores.astype({"score": object})
                 .assign(score=lambda d: d["score"].mask(d.index == 2, "abc")),
                 "row 3: column 'score' is 'abc', not a number"),
        "no-model": (scores.assign(model=lambda d: d["model"].mask(d.index == 0, "")),
                     "row 1: column 'model' is empty"),
        "twice": (pd.concat([scores, scores.iloc[[5]]]),
                  f"benchmark '{scores.iloc[5]['benchmark']}' appears more than once"),
        "foreign": (scores.assign(benchmark=lambda d: d["benchmark"].mask(d.index == 0, "NoBench")),
                    "column 'benchmark': unknown benchmark or task 'NoBench'"),
        "other-suite": (scores.assign(suite="cambrian16-mini"),
                        "evaluated suite 'cambrian16' but the baseline"),
        "no-rows": (scores.iloc[:0], "the baseline holds no scores"),
        "infinite": (scores.assign(score=lambda d: d["score"].mask(d.index == 1, float("inf"))),
                     "row 2: column 'score' is inf, outside 0-100"),
        "negative": (scores.assign(score=lambda d: d["score"].mask(d.index == 0, -500)),
                     "row 1: column 'score' is -500"),
    }
    for name, (df, needle) in malformed.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)
        assert needle in one_line([run, "--baseline", tmp_path / f"{name}.csv"]), name
    write_manifest(run, {"suite": "cambrian16-mini"})
    assert "same suite" in one_line([run, "--baseline", baseline])


def test_nan_baseline_scores_are_missing_not_dropped(run, baseline, tmp_path):
    scores = RunDir(baseline).read("scores")
    scores.assign(score=float("nan")).to_csv(tmp_path / "nan.csv", index=False)
    code, report = check(run, tmp_path / "nan.csv")
    missing = [f for f in report["findings"] if f["status"] == "missing"]
    assert code == 1 and len(missing) == 96 and {f["detail"] for f in missing} == {"no score in the baseline"}
    assert missing[0]["baseline"] is None
    edit(run, "scores", lambda df: df.assign(score=df["score"].mask(df["benchmark"] == "GQA")))
    code, report = check(run, baseline)
    assert code == 1 and {k for k in not_ok(report) if k[2] == "GQA"} == {
        ("score", m, "GQA", "missing") for m in scores["model"].unique()}


def test_a_run_with_fewer_samples_than_the_baseline_is_missing(run, baseline):
    def fewer(df):
        df.loc[(df["model"] == "demo-scope") & (df["benchmark"] == "GQA"), "n"] = 5
        return df

    edit(run, "scores", fewer)
    code, report = check(run, baseline)
    f = not_ok(report)[("score", "demo-scope", "GQA", "missing")]
    assert code == 1 and len(not_ok(report)) == 1
    assert f["detail"] == "the run scored 5 of the baseline's 20 samples" and f["change"] == 0.0


def test_routes_compared_on_fewer_samples_than_the_baseline_fail(run, baseline):
    def keep_one(df):
        mmvp = (df["model"] == "demo-scope") & (df["benchmark"] == "MMVP")
        return df[~mmvp | (df["doc_id"] == df.loc[mmvp, "doc_id"].min())]

    edit(run, "routes", keep_one)
    code, report = check(run, baseline)
    f = not_ok(report)[("route", "demo-scope", "MMVP", "missing")]
    assert code == 1 and f["detail"] == "0 of 1 samples re-routed; the run lacks 19 of the baseline's 20"


def test_nan_or_zero_baseline_flops_are_not_ok(run, baseline, tmp_path):
    release = shutil.copytree(baseline, tmp_path / "release")
    totals = RunDir(baseline).read("costs").query("kind == 'path' and component == 'total'")
    zero, nan, unset = (totals.index[i] for i in range(3))
    def counts(df, factor, blank):  # row `zero` times factor, row `blank` NaN
        flops = df["flops"].mask(df.index == zero, df["flops"] * factor)
        return df.assign(flops=flops.mask(df.index == blank))

    edit(release, "costs", lambda df: counts(df, 0.0, nan))
    edit(run, "costs", lambda df: counts(df, 10.0, unset))
    code, report = check(run, release, "--cost-tolerance", "1000")
    found = {(k[1], k[3]): f for k, f in not_ok(report).items()}
    assert code == 1 and len(found) == 3
    assert found[(totals.loc[zero, "model"], "regressed")]["detail"] == "FLOPs, from 0"
    assert found[(totals.loc[nan, "model"], "missing")]["detail"] == "no FLOPs count in the baseline"
    assert found[(totals.loc[unset, "model"], "missing")]["detail"] == "no FLOPs count in the run"
    edit(run, "costs", lambda df: counts(df, 0.0, unset))
    code, report = check(run, release, "--cost-tolerance", "1000")
    assert (totals.loc[zero, "model"], "regressed") not in {(k[1], k[3]) for k in not_ok(report)}


def test_baseline_naming_benchmarks_by_task_id_matches_run_rows_by_name(run, baseline, tmp_path):
    release = shutil.copytree(baseline, tmp_path / "release")
    for name in ("scores", "routes"):
        edit(release, name, lambda df: df.assign(benchmark=df["task"]))
    code, report = check(run, release)
    assert code == 0 and not not_ok(report) and len(report["findings"]) > 2 * 96
    RunDir(release).read("scores").to_csv(tmp_path / "by_task.csv", index=False)
    code, report = check(run, tmp_path / "by_task.csv")
    assert code == 0 and len(report["findings"]) == 96 and not not_ok(report)
    assert check(release, baseline)[0] == 0  # and the other way round
