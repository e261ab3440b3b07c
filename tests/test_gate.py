"""scopebench's own CI gate (two demo models, four mini tasks, against tests/baselines/demo-gate) and the
GitHub Actions workflow in examples/ci, its `run:` steps executed as written in bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from junitparser import JUnitXml
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "tests" / "baselines"
BASELINE, TOLERANCES = BASELINES / "demo-gate", BASELINES / "tolerances.yaml"
BIN = Path(sys.executable).parent
runner = CliRunner()


def gate_check(run_dir: Path, *options: str):
    return runner.invoke(app, ["check", str(run_dir), "--baseline", str(BASELINE), "--tolerances",
                               str(TOLERANCES), *options])


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory):
    """The gate's run of this checkout, made by the script `make gate-baseline` uses."""
    out = tmp_path_factory.mktemp("gate") / "run"
    subprocess.run(["bash", str(BASELINES / "demo_gate.sh"), str(out)], check=True,
                   env={**os.environ, "SCOPEBENCH": str(BIN / "scopebench")})
    return out


@pytest.mark.slow
def test_the_demo_answers_match_the_committed_baseline(gate_run, tmp_path):
    result = gate_check(gate_run, "--junit", str(tmp_path / "gate.xml"))
    assert result.exit_code == 0, (
        "the demo's answers, routes or FLOPs moved (below); if that is intended, run `make gate-baseline` "
        "and commit tests/baselines/demo-gate\n" + result.output)
    xml = JUnitXml.fromfile(str(tmp_path / "gate.xml"))
    assert xml.failures == 0 and xml.tests >= 2 * 4 * 3  # 2 models x 4 benchmarks x score, answers, route


def test_a_moved_answer_fails_the_gate_naming_its_benchmark(tmp_path):
    run = shutil.copytree(BASELINE, tmp_path / "run")
    routes = RunDir(run).read("routes")
    row = routes.index[(routes["model"] == "demo-baseline-all") & (routes["benchmark"] == "ChartQA")][0]
    routes.loc[row, "sample_score"] = 100.0 - routes.loc[row, "sample_score"]
    RunDir(run).write("routes", routes)
    scores = RunDir(run).read("scores")
    at = (scores["model"] == "demo-baseline-all") & (scores["benchmark"] == "ChartQA")
    scores.loc[at, "score"] = routes.loc[routes["model"] == "demo-baseline-all"].groupby("benchmark")[
        "sample_score"].mean()["ChartQA"]
    RunDir(run).write("scores", scores)
    result = gate_check(run)
    assert result.exit_code == 1, result.output
    failed = [s.split() for s in result.output.splitlines() if "regressed" in s and "│" in s]
    assert [[w for w in words if w != "│"][:4] for words in failed] == [
        ["regressed", "answers", "demo-baseline-all", "ChartQA"]]
    assert "FAIL: 1 regressed or missing" in result.output
    assert gate_check(BASELINE).exit_code == 0


@pytest.mark.slow
def test_the_example_workflow_runs_as_written(gate_run, tmp_path):
    flow = yaml.safe_load((ROOT / "examples" / "ci" / "scopebench-gate.yml").read_text())
    env = {**os.environ, **flow["env"], "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "SCOPEBENCH_INSTALL": "scopebench",  # installed here: pip finds it satisfied, no download
           "SCOPEBENCH_MODELS": "demo-scope demo-baseline-all", "SCOPEBENCH_SUITE": "cambrian16-mini",
           "SCOPEBENCH_TASKS": "GQA,ChartQA,DocVQA,CV-Bench-2D", "SCOPEBENCH_LIMIT": "20",
           "SCOPEBENCH_RUN": str(tmp_path / "run"), "SCOPEBENCH_BASELINE": str(tmp_path / "baseline"),
           "SCOPEBENCH_TOLERANCES": str(TOLERANCES), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    shutil.copytree(gate_run, tmp_path / "run")  # eval reuses the gate's parts: same models, tasks, limit
    ran = []
    for step in flow["jobs"]["gate"]["steps"]:
        if "download-artifact" in step.get("uses", ""):  # the baseline artifact, unpacked
            shutil.copytree(BASELINE, env["SCOPEBENCH_BASELINE"])
        if "run" in step:
            done = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, cwd=tmp_path, text=True,
                                  capture_output=True)
            assert done.returncode == 0, f"{step['name']}:\n{done.stdout}\n{done.stderr}"
            ran.append(step["name"])
    assert ran == ["Install scopebench", "Evaluate the candidate", "Count FLOPs", "Report",
                   "Check against the baseline"]
    xml = JUnitXml.fromfile(str(tmp_path / "run" / "check.xml"))
    assert xml.failures == 0 and xml.tests > 0
    assert (tmp_path / "run" / "report.html").stat().st_size > 0
    assert (tmp_path / "summary.md").read_text().startswith("## scopebench check: PASS")
