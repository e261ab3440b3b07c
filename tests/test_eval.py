"""`scopebench eval` end to end through real lmms-eval tasks on the shipped demo models."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.evaluation.datasets import task_folder
from scopebench.suites import load_suite

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TASKS = "c16mini_gqa,c16mini_docvqa"


def _eval(*args: str):
    return CliRunner().invoke(app, ["eval", *args], env=ENV)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    result = _eval("demo-scope", "demo-baseline-0", "--tasks", TASKS, "--limit", "12", "--output", str(out),
                   "--json")
    assert result.exit_code == 0, result.output
    return out


def test_eval_writes_tables_and_json(run_dir):
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert set(scores["model"]) == {"demo-scope", "demo-baseline-0"}
    assert set(scores["benchmark"]) == {"GQA", "DocVQA"}
    assert scores["score"].between(0, 100).all() and (scores["n"] == 12).all()
    routes = pd.read_parquet(run_dir / "routes.parquet")
    scope = routes[routes["model"] == "demo-scope"]
    assert len(scope) == 24 and set(scope["encoder"]) <= {"hires", "conv", "clip"}
    probs = scope[["prob:hires", "prob:conv", "prob:clip"]].to_numpy()
    assert abs(probs.sum(1) - 1).max() < 1e-5
    chosen = scope[["prob:hires", "prob:conv", "prob:clip"]].idxmax(axis=1).str.removeprefix("prob:")
    assert (chosen == scope["encoder"]).all(), "the router's top-1 encoder must be the logged route"
    assert (routes[routes["model"] == "demo-baseline-0"]["route"] == "shared").all()
    # effective ranks: the shared encoder's for every sample, a routed encoder's exactly where it ran
    assert routes["erank:shared"].between(1, 64).all()
    for enc in ("hires", "conv", "clip"):
        assert (scope[f"erank:{enc}"].notna() == (scope["encoder"] == enc)).all()
    # per-sample scores average to the benchmark score (accuracy-type metrics)
    gqa = routes[(routes["model"] == "demo-scope") & (routes["benchmark"] == "GQA")]["sample_score"].mean()
    assert gqa == pytest.approx(scores.query("model == 'demo-scope' and benchmark == 'GQA'")["score"].item())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["suite"] == "cambrian16-mini" and manifest["versions"]["lmms-eval"] == "0.7.3"
    assert (run_dir / "parts/demo-scope/c16mini_gqa/lmms_eval_samples.jsonl").exists()


def test_lmms_eval_git_queries_run_once_per_run(run_dir, monkeypatch):
    """lmms-eval's git queries (14 ms a task) are cached during a run only; each results file holds their
    real answers."""
    import lmms_eval.evaluator as evaluator
    import lmms_eval.utils as utils

    from scopebench.evaluation.runner import GIT_QUERIES, _git_asked_once

    asked = {name: getattr(evaluator, name) for name in GIT_QUERIES}
    assert all(asked[name] is getattr(utils, name) for name in GIT_QUERIES), "not restored after the run"
    answers = {name: query() for name, query in asked.items()}
    calls = []
    monkeypatch.setattr(utils, "_git_output", lambda *a: calls.append(a) or "x")
    plain = {name: query() for name, query in asked.items()}
    once = len(calls)
    calls.clear()
    with _git_asked_once():
        for _ in range(3):
            assert {name: getattr(evaluator, name)() for name in GIT_QUERIES} == plain
    assert len(calls) == once and asked == {name: getattr(evaluator, name) for name in GIT_QUERIES}
    files = sorted(run_dir.glob("parts/*/*/lmms_eval_results.json"))
    assert files, "the run wrote no lmms-eval results"
    for file in files:
        results = json.loads(file.read_text())
        assert results["git_hash"] == answers["get_git_commit_hash"]
        assert results["lmms_eval_version"] == answers["get_lmms_eval_version_string"]


def test_json_output_is_clean(run_dir):
    result = _eval("demo-scope", "--tasks", TASKS, "--limit", "12", "--output", str(run_dir), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)  # nothing but JSON on stdout (resumed: no task re-run)
    assert set(data["models"]["demo-scope"]["benchmarks"]) == {"GQA", "DocVQA"}


def test_lmms_eval_output_goes_to_the_task_log(tmp_path):
    """lmms-eval's prints (MMMU's per-subject dict), tqdm bars and warnings stay out of the terminal."""
    result = _eval("demo-baseline-0", "--tasks", "c16mini_mmmu", "--limit", "6", "--output", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "MMMU" in result.output and "Overall" in result.output  # the score table
    assert "Overall-Science" not in result.output and "Postprocessing" not in result.output, result.output
    log = (tmp_path / "parts/demo-baseline-0/c16mini_mmmu/lmms_eval.rank0.log").read_text()
    assert "Overall-Science" in log and "Postprocessing" in log


def test_resume_reuses_finished_work(run_dir):
    part = run_dir / "parts/demo-scope/c16mini_gqa"
    stamp = (part / "done").read_text()
    (run_dir / "parts/demo-scope/c16mini_docvqa/done").unlink()  # as if killed after the answers were logged
    before = pd.read_parquet(run_dir / "scores.parquet")
    start = time.perf_counter()
    result = _eval("demo-scope", "--tasks", TASKS, "--limit", "12", "--output", str(run_dir), "--json")
    assert result.exit_code == 0, result.output
    assert (part / "done").read_text() == stamp, "a finished (model, task) pair was recomputed"
    after = pd.read_parquet(run_dir / "scores.parquet")
    pd.testing.assert_frame_equal(before.sort_values(["model", "benchmark"]).reset_index(drop=True),
                                  after.sort_values(["model", "benchmark"]).reset_index(drop=True))
    assert time.perf_counter() - start < 60


def test_finished_run_resumes_without_torch_or_lmms_eval(run_dir, tmp_path):
    """A run with every part done prints its scores and rebuilds lost tables with neither torch nor
    lmms-eval imported (they cost 10 s and 0.9 GB); one part left to do loads them again."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    (out / "routes.parquet").unlink()
    code = ("import sys\nfrom scopebench.cli import app\ntry:\n    app()\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'lmms_eval', 'transformers') if m in sys.modules))")

    def resume() -> tuple[dict, str]:
        args = ["eval", "demo-scope", "demo-baseline-0", "--tasks", TASKS, "--limit", "12", "--output",
                str(out), "--json"]
        done = subprocess.run([sys.executable, "-c", code, *args], env=ENV, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        scores, _, imported = done.stdout.rpartition("\n[")
        return json.loads(scores), "[" + imported

    printed, imported = resume()
    assert imported.strip() == "[]", f"a finished run imported {imported}"
    assert printed["models"] == json.loads(_eval("demo-scope", "demo-baseline-0", "--tasks", TASKS, "--limit",
                                                 "12", "--output", str(run_dir), "--json").stdout)["models"]
    old, new = (pd.read_parquet(d / "routes.parquet").sort_values(["model", "benchmark", "doc_id"])
                .reset_index(drop=True) for d in (run_dir, out))
    pd.testing.assert_frame_equal(old, new[old.columns], check_dtype=False)
    stamps = {p: (p / "done").read_text() for p in out.glob("parts/*/*")}
    (out / "parts/demo-scope/c16mini_gqa/done").unlink()
    again, imported = resume()
    assert imported.strip() == "['lmms_eval', 'torch', 'transformers']" and again == printed
    assert all((p / "done").read_text() == s for p, s in stamps.items()
               if p.name != "c16mini_gqa" or p.parent.name != "demo-scope")


def test_tasks_are_built_once_per_run_and_reused_across_models(run_dir, tmp_path, monkeypatch):
    """Each lmms-eval task (and its dataset) is built once per run: the models in the other order (each
    task built for demo-baseline-0, reused for demo-scope) give the same answers, routes and scores."""
    import gc

    from lmms_eval.api.task import ConfigurableTask

    loads = []
    download = ConfigurableTask.download
    monkeypatch.setattr(ConfigurableTask, "download",
                        lambda self, *a, **k: loads.append(self.config.task) or download(self, *a, **k))
    out = tmp_path / "reversed"
    result = _eval("demo-baseline-0", "demo-scope", "--tasks", TASKS, "--limit", "12", "--output", str(out),
                   "--json")
    assert result.exit_code == 0, result.output
    assert sorted(loads) == sorted(TASKS.split(",")), "a task was built more than once"
    assert gc.get_freeze_count() == 0, "objects left frozen out of garbage collection after the run"
    keys = ["model", "benchmark", "doc_id"]
    for table, order in (("routes", keys), ("scores", keys[:2])):
        before, after = (pd.read_parquet(d / f"{table}.parquet").sort_values(order).reset_index(drop=True)
                         for d in (run_dir, out))
        pd.testing.assert_frame_equal(before, after[before.columns])
    for model in ("demo-scope", "demo-baseline-0"):
        for task in TASKS.split(","):
            answers = [[(s["doc_id"], s["resps"], s["filtered_resps"])
                        for s in map(json.loads, (d / "parts" / model / task / "lmms_eval_samples.jsonl")
                                     .read_text().splitlines())] for d in (run_dir, out)]
            assert answers[0] == answers[1]


def test_lost_tables_are_rebuilt_from_finished_parts(run_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    keys = ["model", "benchmark"]
    before = {t: pd.read_parquet(out / f"{t}.parquet") for t in ("scores", "routes")}
    for table in before:
        (out / f"{table}.parquet").unlink()  # deleted by hand: every part is still marked done
    result = _eval("demo-baseline-0", "--tasks", "c16mini_gqa", "--limit", "12", "--output", str(out),
                   "--json")
    assert result.exit_code == 0, result.output
    for table, old in before.items():
        new = pd.read_parquet(out / f"{table}.parquet")
        order = keys + (["doc_id"] if table == "routes" else [])
        pd.testing.assert_frame_equal(old.sort_values(order).reset_index(drop=True)[old.columns],
                                      new.sort_values(order).reset_index(drop=True)[old.columns],
                                      check_dtype=False)


def test_killed_run_loses_no_finished_task(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "scopebench.cli", "eval", "demo-baseline-0", "--tasks",
           "c16mini_gqa,c16mini_textvqa,c16mini_docvqa", "--limit", "12", "--output", str(out), "--json"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = out / "parts/demo-baseline-0/c16mini_gqa/done"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists()
    assert not list(out.glob(".*.tmp")), "a half-written table was left behind"
    assert "GQA" in set(pd.read_parquet(out / "scores.parquet")["benchmark"])
    result = _eval("demo-baseline-0", "--tasks", "c16mini_gqa,c16mini_textvqa,c16mini_docvqa",
                   "--limit", "12", "--output", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert set(pd.read_parquet(out / "scores.parquet")["benchmark"]) == {"GQA", "TextVQA", "DocVQA"}


@pytest.mark.parametrize("args, message", [
    (["/no/such/checkpoint"], "unknown model '/no/such/checkpoint'"),
    (["demo-scop"], "did you mean 'demo-scope'"),
    (["demo-scope", "--tasks", "c16mini_gqq"], "unknown benchmark or task 'c16mini_gqq'"),
    (["demo-scope", "--suite", "cambrian17"], "unknown suite 'cambrian17'"),
    (["demo-scope", "--suite", "/no/such/suite.yaml"], "/no/such/suite.yaml: suite file not found"),
    (["demo-scope", "--tasks", ""], "--tasks is empty"),
    (["demo-scope", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["demo-scope", "--device", "mps"], "--device must be cpu or cuda (cuda:N), got 'mps'"),
])
def test_bad_input(args, message):
    result = _eval(*args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_output_of_another_suite_is_refused(run_dir):
    result = _eval("demo-scope", "--suite", "scope-ocr", "--tasks", "docvqa_val", "--output", str(run_dir))
    assert result.exit_code == 2 and "holds a run of suite 'cambrian16-mini'" in result.output


def test_output_path_that_is_a_file_is_one_line(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    for args in (["eval", "demo-scope", "--tasks", "c16mini_gqa", "--limit", "1", "--output", str(taken)],
                 ["flops", "demo-baseline-0", "--output", str(taken)]):
        result = CliRunner().invoke(app, args, env=ENV)
        assert result.exit_code == 2, result.output
        assert f"{taken}: File exists" in result.output and "Traceback" not in result.output


def test_bad_suite_file(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\nbenchmarks:\n"
                   "  - {name: X, task: gqa, category: General, metrik: exact_match}\n")
    result = _eval("demo-scope", "--suite", str(bad))
    assert result.exit_code == 2 and "missing field 'metric'" in result.output
    bad.write_text("name: mine\nbenchmarks:\n"
                   "  - {name: X, task: no_such_task_zz, category: General, metric: exact_match}\n")
    result = _eval("demo-scope", "--suite", str(bad))
    assert (result.exit_code == 2
            and f"{bad}: unknown lmms-eval task 'no_such_task_zz'" in " ".join(result.output.split()))
    bad.write_bytes(b"name: \xff\xfe\n")
    result = _eval("demo-scope", "--suite", str(bad))
    assert result.exit_code == 2 and "not valid YAML (UnicodeDecodeError)" in " ".join(result.output.split())


def test_missing_dataset_offline_fails_fast():
    start = time.perf_counter()
    result = _eval("demo-scope", "--suite", "cambrian16", "--tasks", "gqa")
    assert result.exit_code == 2
    assert "task 'gqa': dataset 'lmms-lab" in result.output and "HF_HUB_OFFLINE" in result.output
    assert time.perf_counter() - start < 30
    command = result.output.split("run `")[1].split()[0]  # the download command it names is installed
    assert command == "hf" and (Path(sys.executable).parent / command).exists()


def test_limit_keeps_mme_question_pairs_whole(tmp_path):
    result = _eval("demo-baseline-0", "--tasks", "MME-P", "--limit", "3", "--output", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "--limit 3 rounded up for MME-P to 4 (it scores 2 questions per image together)" in result.output
    samples = [json.loads(line) for line in
               (tmp_path / "parts/demo-baseline-0/c16mini_mme/lmms_eval_samples.jsonl")
               .read_text().splitlines()]
    images = [s["doc"]["question_id"] for s in samples]
    assert len(images) == 4 and all(images.count(i) == 2 for i in images)
    assert pd.read_parquet(tmp_path / "scores.parquet")["n"].tolist() == [4]


@pytest.mark.parametrize("suite", ["cambrian16", "scope-ocr", "cambrian16-mini"])
def test_every_suite_task_resolves(suite):
    for bench in load_suite(suite).benchmarks:
        if suite != "cambrian16-mini":
            assert (task_folder(bench.task) / "utils.py").exists() or task_folder(bench.task).is_dir()
        if bench.judge_task:
            task_folder(bench.judge_task)


def test_lmms_eval_cli_runs_a_demo_checkpoint(tmp_path):
    from scopebench.paths import tasks_dir

    cmd = [str(Path(sys.executable).parent / "lmms-eval"), "eval", "--model", "scope", "--model_args",
           "pretrained=demo-baseline-0", "--batch_size", "8", "--tasks", "c16mini_gqa", "--include_path",
           str(tasks_dir() / "cambrian16_mini"), "--limit", "6", "--output_path", str(tmp_path)]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "c16mini_gqa" in out.stdout and "exact_match" in out.stdout


def test_two_process_run_matches_one_process(run_dir, tmp_path):
    """`accelerate launch` with 2 CPU processes: each answers half, the scores and routes are identical."""
    out = tmp_path / "dist"
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "scopebench.cli", "eval", "demo-scope",
           "--tasks", TASKS, "--limit", "12",
           "--output", str(out), "--json"]
    proc = subprocess.run(cmd, env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    traces = sorted(p.name for p in (out / "parts/demo-scope/c16mini_gqa").glob("trace.rank*.jsonl"))
    assert traces == ["trace.rank0.jsonl", "trace.rank1.jsonl"]
    key = ["benchmark", "doc_id"]
    single = pd.read_parquet(run_dir / "routes.parquet").query("model == 'demo-scope'").sort_values(key)
    double = pd.read_parquet(out / "routes.parquet").sort_values(key)
    assert list(single["route"]) == list(double["route"])
    assert list(single["sample_score"]) == list(double["sample_score"])
    s1 = (pd.read_parquet(run_dir / "scores.parquet").query("model == 'demo-scope'")
          .set_index("benchmark")["score"])
    s2 = pd.read_parquet(out / "scores.parquet").set_index("benchmark")["score"]
    assert s1.sort_index().tolist() == s2.sort_index().tolist()


def test_check_a_real_run(run_dir, tmp_path):
    """`scopebench check` on real eval tables: a run passes against itself, and a better baseline fails it."""
    same = CliRunner().invoke(app, ["check", str(run_dir), "--baseline", str(run_dir), "--json"])
    report = json.loads(same.stdout)
    assert same.exit_code == 0 and report["passed"]
    assert {(f["check"], f["status"]) for f in report["findings"]} == {("score", "ok"), ("route", "ok")}
    assert all(f["detail"].startswith("0 of 12 samples changed")
               for f in report["findings"] if f["check"] == "score")
    better = shutil.copytree(run_dir, tmp_path / "release", ignore=shutil.ignore_patterns("parts"))
    scores = pd.read_parquet(better / "scores.parquet")
    scores.loc[(scores["model"] == "demo-scope") & (scores["benchmark"] == "DocVQA"), "score"] += 5
    scores.to_parquet(better / "scores.parquet")
    worse = CliRunner().invoke(app, ["check", str(run_dir), "--baseline", str(better)])
    assert worse.exit_code == 1 and "FAIL: 1 regressed or missing" in worse.stdout
    assert "regressed" in next(line for line in worse.stdout.splitlines() if "DocVQA" in line)


def test_masked_demo_model(tmp_path):
    """DEMO@POLICY from the command line: Baseline-all with `conv` masked takes shared+hires+clip only."""
    result = _eval("demo-baseline-all@all/mask:conv", "--tasks", "c16mini_gqa", "--limit", "4",
                   "--output", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    routes = pd.read_parquet(tmp_path / "routes.parquet")
    assert (set(routes["model"]) == {"demo-baseline-all@all/mask:conv"}
            and set(routes["route"]) == {"shared+hires+clip"})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["models"]["demo-baseline-all@all/mask:conv"]
    assert entry["fingerprint"].split("|")[2] == "all/mask:conv" and entry["trained_policy"] == "all"


def test_blind_demo_model_and_its_vision_gain(run_dir, tmp_path):
    """DEMO@blind: the demo model's own policy with black images, stored beside it; the report pairs the
    two."""
    out = shutil.copytree(run_dir, tmp_path / "run")
    result = _eval("demo-scope@blind", "--tasks", TASKS, "--limit", "12", "--output", str(out), "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["demo-scope@blind"]["fingerprint"].split("|")[2] == "router/blind"
    report = CliRunner().invoke(app, ["report", str(out), "--format", "json"])
    assert report.exit_code == 0, report.output
    scores = pd.read_parquet(out / "scores.parquet").set_index(["model", "benchmark"])["score"]
    gains = {v["group"]: v for v in json.loads(report.stdout)["vision"] if v["model"] == "demo-scope"}
    for bench in ("GQA", "DocVQA"):
        assert gains[bench]["blind_model"] == "demo-scope@blind" and gains[bench]["n"] == 12
        assert gains[bench]["gain"] == pytest.approx(scores["demo-scope", bench]
                                                     - scores["demo-scope@blind", bench])


def test_sample_score_reads_the_tasks_own_per_sample_judgement():
    import math

    from scopebench.evaluation.parts import sample_score

    assert sample_score(1) == 100.0 and sample_score(0.25) == 25.0 and sample_score([True]) == 100.0
    assert sample_score({"id": 0, "pred": "D", "gt_content": "B", "is_correct": False}) == 0.0  # CV-Bench
    assert sample_score({"question_id": "1", "answer": "5", "true_false": True}) == 100.0  # MathVista
    assert sample_score({"question_id": "x.png", "category": "existence", "score": 1.0}) == 100.0  # MME
    assert math.isnan(sample_score({"pred": "A", "answer": "B"}))  # SEED: judged in the aggregation only
    assert math.isnan(sample_score(3.5)) and math.isnan(sample_score([0.1, 0.2]))
