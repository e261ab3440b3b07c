"""`scopebench check` as a CI gate: significance, same documents, tolerances, JUnit, Markdown, widths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from junitparser import Failure, JUnitXml
from scipy import stats
from typer.testing import CliRunner

from scopebench.analysis.significance import holm, min_detectable_drop, paired_drop
from scopebench.cli import app
from scopebench.run_dir import RunDir
from tests._report_data import make_run

runner = CliRunner()
MODEL, BENCH = "demo-baseline-1-convnext", "GQA"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("gate") / "baseline", n_docs=200)


@pytest.fixture
def run(baseline, tmp_path):
    return shutil.copytree(baseline, tmp_path / "run")


def check(run_dir, baseline, *options, env=None):
    result = runner.invoke(app, ["check", str(run_dir), "--baseline", str(baseline), "--json", *options],
                           env=env)
    return result.exit_code, (json.loads(result.stdout) if result.exit_code in (0, 1) else result.output)


def flip(run_dir, model, bench, losses, gains):
    """Turn ``losses`` right answers wrong and ``gains`` wrong ones right; the score follows."""
    rd = RunDir(run_dir)
    routes, scores = rd.read("routes"), rd.read("scores")
    mine = (routes["model"] == model) & (routes["benchmark"] == bench)
    right = routes.index[mine & (routes["sample_score"] == 100.0)][:losses]
    wrong = routes.index[mine & (routes["sample_score"] == 0.0)][:gains]
    assert len(right) == losses and len(wrong) == gains
    routes.loc[right, "sample_score"], routes.loc[wrong, "sample_score"] = 0.0, 100.0
    at = (scores["model"] == model) & (scores["benchmark"] == bench)
    scores.loc[at, "score"] = routes.loc[mine, "sample_score"].mean()
    rd.write("routes", routes)
    rd.write("scores", scores)


def finding(report, check_name, model, item):
    return next(f for f in report["findings"]
                if (f["check"], f["model"], f["item"]) == (check_name, model, item))


def test_three_points_on_200_samples_fail_only_when_significant(run, baseline):
    flip(run, MODEL, BENCH, losses=13, gains=7)  # 20 flipped answers, net -6 of 200 = -3 points
    code, report = check(run, baseline)
    f = finding(report, "score", MODEL, BENCH)
    assert code == 0 and f["status"] == "not significant" and f["change"] == pytest.approx(-3.0)
    assert f["test"] == "McNemar exact" and f["p"] == pytest.approx(stats.binom.sf(12, 20, 0.5))  # 0.132
    assert f["p_holm"] == pytest.approx(f["p"])  # the only benchmark of the model whose answers moved
    shutil.rmtree(run)
    flip(shutil.copytree(baseline, run), MODEL, BENCH, losses=6, gains=0)  # 6 right answers lost, none won
    code, report = check(run, baseline)
    f = finding(report, "score", MODEL, BENCH)
    assert code == 1 and f["status"] == "regressed" and f["change"] == pytest.approx(-3.0)
    assert f["p"] == pytest.approx(0.5 ** 6)
    assert [(g["check"], g["item"]) for g in report["findings"] if g["status"] != "ok"] == [("score", BENCH)]


def test_holm_counts_every_benchmark_whose_answers_moved(run, baseline):
    for bench in (BENCH, "MMVP"):
        flip(run, MODEL, bench, losses=6, gains=0)
    code, report = check(run, baseline)
    assert code == 1 and finding(report, "score", MODEL, "MMVP")["p_holm"] == pytest.approx(2 * 0.5 ** 6)
    code, report = check(run, baseline, "--alpha", "0.02")  # 2 x 1/64 = 0.031 > 0.02
    assert code == 0 and finding(report, "score", MODEL, "MMVP")["status"] == "not significant"


def test_tolerance_alone_without_per_sample_scores(run, baseline):
    def blank(df):
        return df.assign(sample_score=df["sample_score"].mask(df["benchmark"] == BENCH))

    blanked = shutil.copytree(baseline, run.parent / "baseline-blank")
    RunDir(blanked).write("routes", blank(RunDir(blanked).read("routes")))
    flip(run, MODEL, BENCH, losses=13, gains=7)
    RunDir(run).write("routes", blank(RunDir(run).read("routes")))
    code, report = check(run, blanked)
    f = finding(report, "score", MODEL, BENCH)
    assert code == 1 and f["status"] == "regressed" and f["p"] is None
    assert f["test"] == "tolerance alone: no per-sample scores for this metric" == f["detail"]


def test_minimum_detectable_drop_matches_a_hand_computation(run, baseline):
    # alpha 0.05: 2^-4 = 0.0625 > 0.05 >= 2^-5, so 5 lost samples are the fewest that can be significant
    assert min_detectable_drop(70, 0.05) == pytest.approx(100 * 5 / 70)  # 7.14 points
    assert min_detectable_drop(200, 0.01) == pytest.approx(3.5)  # 2^-7 = 0.0078 <= 0.01 < 2^-6
    assert paired_drop(np.full(5, 100.0), np.zeros(5)).p == pytest.approx(0.03125)
    assert paired_drop(np.full(4, 100.0), np.zeros(4)).p == pytest.approx(0.0625)
    code, report = check(run, baseline)
    drops = {d["benchmark"]: d["min_detectable_drop"] for d in report["detectable"]}
    assert drops["MMVP"] == pytest.approx(2.5) and len(drops) == 16  # 5 of 200 samples
    result = runner.invoke(app, ["check", str(run), "--baseline", str(baseline)])
    assert "n=200: drops under 2.5 points are not detectable at alpha 0.05" in result.stdout


def test_sign_flip_and_holm_known_answers():
    t = paired_drop(np.full(6, 100.0), np.full(6, 50.0))  # not 0/100: exact sign-flip, 1 of 2^6 signs
    assert t.test == "sign-flip permutation" and t.p == pytest.approx(1 / 64)
    tests = {"a": paired_drop(np.full(6, 100.0), np.zeros(6)), "b": paired_drop(np.zeros(3), np.zeros(3)),
             "c": paired_drop(np.full(8, 100.0), np.zeros(8))}
    assert holm(tests, 0.05) == pytest.approx({"a": 1 / 64, "b": 1.0, "c": 2 / 256})  # b: cannot count


def test_different_documents_exit_2(run, baseline, tmp_path):
    for d, digest in ((baseline, "aaaa"), (run, "bbbb")):
        copy = shutil.copytree(d, tmp_path / f"{d.name}-docs")
        scores = RunDir(copy).read("scores")
        docs = np.where(scores["benchmark"] == "MMVP", digest, "same")
        RunDir(copy).write("scores", scores.assign(docs=docs))
    result = runner.invoke(app, ["check", str(tmp_path / "run-docs"), "--baseline",
                                 str(tmp_path / "baseline-docs")])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "benchmark 'MMVP' (and 5 more) scored other documents than the baseline" in result.output
    # a run of an earlier scopebench: no docs column, the hash in a part's `done` marker
    scores = RunDir(run).read("scores")
    part = run / "parts" / "any-folder-name" / "c16"
    part.mkdir(parents=True)
    RunDir(part).write("scores", scores[(scores["model"] == MODEL) & (scores["benchmark"] == "MMVP")])
    (part / "done").write_text(json.dumps({"docs": "cccc"}))
    result = runner.invoke(app, ["check", str(run), "--baseline", str(tmp_path / "baseline-docs")])
    assert result.exit_code == 2 and f"model '{MODEL}' benchmark 'MMVP' scored other" in result.output


def test_tolerances_file(run, baseline, tmp_path):
    flip(run, MODEL, BENCH, losses=6, gains=0)  # -3 points, significant
    flip(run, MODEL, "ChartQA", losses=6, gains=0)
    spec = tmp_path / "tol.yaml"
    spec.write_text("default: {score: 5}\ncategories: {OCR & Chart: {score: 2}}\n"
                    "benchmarks: {gqa: {score: 4}}\n")
    code, report = check(run, baseline, "--tolerances", spec)
    assert code == 1 and {(f["item"], f["tolerance"]) for f in report["findings"]
                          if f["status"] != "ok"} == {("ChartQA", 2.0)}
    assert finding(report, "score", MODEL, BENCH)["tolerance"] == 4.0  # a task id names the benchmark
    assert check(run, baseline, "--tolerances", spec, "--tolerance", "1")[0] == 1  # flag: the default
    spec.write_text("default: {answers: 2}\n")  # 6 of 200 = 3% answers changed
    code, report = check(run, baseline, "--tolerances", spec, "--tolerance", "10")
    f = finding(report, "answers", MODEL, BENCH)
    assert code == 1 and f["detail"] == "6 of 200 samples scored differently"

    def one_line(text):
        spec.write_text(text)
        result = runner.invoke(app, ["check", str(run), "--baseline", str(baseline),
                                     "--tolerances", str(spec)])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        return result.output

    assert "unknown field 'benchmark' (did you mean 'benchmarks'?)" in one_line("benchmark: {}\n")
    assert "benchmarks.GQA.score must be a number 0 or more" in one_line("benchmarks: {GQA: {score: -1}}\n")
    assert "unknown field 'scores' (did you mean 'score'?)" in one_line("default: {scores: 1}\n")
    assert "unknown category 'OCR';" in one_line("categories: {OCR: {score: 1}}\n")
    assert "unknown benchmark or task 'NoBench'" in one_line("benchmarks: {NoBench: {score: 1}}\n")
    assert "route must be a number between 0 and 100" in one_line("default: {route: 150}\n")
    assert "not valid YAML" in one_line("default: [\n")


def test_junit_and_markdown(run, baseline, tmp_path):
    flip(run, MODEL, BENCH, losses=6, gains=0)
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    code, _ = check(run, baseline, "--junit", tmp_path / "out" / "check.xml",
                    "--markdown", tmp_path / "check.md", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert code == 1
    xml = JUnitXml.fromfile(str(tmp_path / "out" / "check.xml"))
    cases = {(case.classname, case.name): case for suite in xml for case in suite}
    assert len(cases) == xml.tests == 96 * 2 + len(RunDir(baseline).read("costs")
                                                    .query("kind == 'path' and component == 'total'"))
    failed = {k: c for k, c in cases.items() if any(isinstance(r, Failure) for r in c.result)}
    assert list(failed) == [(f"scopebench.score.{MODEL}", f"score {BENCH}")] and xml.failures == 1
    message = failed[(f"scopebench.score.{MODEL}", f"score {BENCH}")].result[0].message
    assert "-3.00 points, tolerance 1" in message and "McNemar exact p=0.016" in message
    text = (tmp_path / "check.md").read_text()
    assert text.startswith("## scopebench check: FAIL (1 regressed or missing)")
    assert f"| regressed | score | {MODEL} | {BENCH} |" in text
    assert summary.read_text() == "earlier step\n" + text + "\n"


@pytest.mark.parametrize("width", [80, 100, 160])
def test_table_never_cuts_a_name_when_piped(run, baseline, width):
    long = "demo-baseline-1-convnext@retrained-2026-12-03-final-candidate"
    for d in (run, baseline.parent / "baseline-long"):
        if not d.exists():
            shutil.copytree(baseline, d)
        for name in ("scores", "routes", "costs"):
            df = RunDir(d).read(name)
            RunDir(d).write(name, df.assign(model=df["model"].replace(MODEL, long)))
    flip(run, long, "CV-Bench-2D", losses=8, gains=0)
    flip(run, "demo-scope", "MMVP", losses=0, gains=9)
    result = runner.invoke(app, ["check", str(run), "--baseline", str(baseline.parent / "baseline-long")],
                           env={"COLUMNS": str(width)})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    for model, bench in ((long, "CV-Bench-2D"), ("demo-scope", "MMVP")):
        assert any(model in line and bench in line for line in lines), (width, result.stdout)
    boxed = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= width for line in boxed)  # COLUMNS honoured
    assert not boxed or width == 160  # the table where it fits, else a block per finding
