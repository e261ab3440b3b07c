"""Suite files: where a ``sample_judge`` may come from, when it is imported, and how its failures read."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.errors import ScopebenchError
from scopebench.suites import load_suite

JUDGES = '''\
from pathlib import Path

Path(__file__).with_name("imported").touch()
NOT_A_FUNCTION = 3


def exact(values):
    return 100.0 if values[0] == "right" else 0.0


def boom(values):
    raise ValueError("no answer field\\nsecond line")
'''


def suite_file(tmp_path, judge, task_dir="tasks"):
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "utils.py").write_text(JUDGES)
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\ntask_dir: {task_dir}\nbenchmarks:\n"
                    f"  - {{name: X, task: gqa, category: General, metric: m, sample_judge: '{judge}'}}\n")
    return path


def test_a_judge_from_elsewhere_is_refused_at_load_and_never_called(tmp_path, monkeypatch):
    """Only lmms_eval.tasks.* or a .py file inside the suite's task_dir; checked without importing."""
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    (tmp_path / "outside.py").write_text("def f(values):\n    return 0\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "linked.py").symlink_to(tmp_path / "outside.py")
    for judge in ("os:system", "subprocess:call", "scopebench.cli:main", "linked:f", "utils:exact"):
        path = suite_file(tmp_path, judge, task_dir="null" if judge == "utils:exact" else "tasks")
        for judges in (False, True):
            with pytest.raises(ScopebenchError, match=f"'{judge}': the module must be in lmms_eval.tasks"):
                load_suite(path, judges=judges)
    for judge in ("f", "os:", "os.path:join:x", "a b:f"):
        with pytest.raises(ScopebenchError, match="sample_judge must be 'module:function'"):
            load_suite(suite_file(tmp_path, judge))
    hostile = suite_file(tmp_path, "os:system")
    result = CliRunner().invoke(app, ["eval", "demo-scope", "--suite", str(hostile)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "lmms_eval.tasks" in result.output
    assert calls == []


def test_a_judge_from_the_suites_task_dir_is_imported_only_for_eval(tmp_path):
    path = suite_file(tmp_path, "utils:exact")
    bench = load_suite(path).benchmark("X")
    assert not (tmp_path / "tasks" / "imported").exists()  # report, check: no suite code runs
    with pytest.raises(RuntimeError, match="judges=True"):
        bench.judge_sample("right")
    bench = load_suite(path, judges=True).benchmark("X")
    assert (tmp_path / "tasks" / "imported").exists()
    assert bench.judge_sample("right") == 100.0 and bench.judge_sample("wrong") == 0.0
    assert load_suite("cambrian16").benchmark("GQA").judge_sample(0.5) == 0.5  # no judge: the value itself


def test_a_judge_that_cannot_load_or_raises_is_one_line_naming_benchmark_and_judge(tmp_path):
    for judge, needle in (("utils:missing", "cannot be imported (AttributeError: module 'utils' has no"),
                          ("utils:NOT_A_FUNCTION", "is a int, not a function")):
        with pytest.raises(ScopebenchError, match=r"benchmarks\[0\].sample_judge") as err:
            load_suite(suite_file(tmp_path, judge), judges=True)
        assert needle in str(err.value) and f"'{judge}'" in str(err.value)
    (tmp_path / "tasks" / "broken.py").write_text("raise ImportError('needs a package\\nthat is not here')\n")
    with pytest.raises(ScopebenchError, match="cannot be imported \\(ImportError: needs a package\\)") as err:
        load_suite(suite_file(tmp_path, "broken:f"), judges=True)
    assert "\n" not in str(err.value)
    bench = load_suite(suite_file(tmp_path, "utils:boom"), judges=True).benchmark("X")
    with pytest.raises(ScopebenchError) as err:
        bench.judge_sample("right")
    assert str(err.value) == ("benchmark 'X': sample_judge 'utils:boom' failed: ValueError: no answer field; "
                              "fix the function or remove the field")


def test_lmms_eval_task_judges_score_one_sample():
    """SEED and MMMU keep per-sample values that lmms-eval judges in aggregation: the suite names it."""
    suite = load_suite("cambrian16-mini", judges=True)
    seed, mmmu = suite.benchmark("SEED-I"), suite.benchmark("MMMU")
    assert seed.judge_sample({"pred": "B ", "answer": "b", "question_id": "0"}) == 1.0
    assert seed.judge_sample({"pred": "A", "answer": "B", "question_id": "0"}) == 0.0
    right = {"id": "validation_Math_1", "question_type": "open", "answer": "36", "parsed_pred": [[36.0]]}
    assert mmmu.judge_sample(right) == {"acc": 1.0}
    assert mmmu.judge_sample(right | {"parsed_pred": [[32.0]]}) == {"acc": 0.0}


def test_loading_a_suite_imports_no_lmms_eval():
    code = ("import sys; from scopebench.suites import load_suite; [load_suite(s) for s in "
            "('cambrian16', 'cambrian16-mini', 'scope-ocr')]; assert 'lmms_eval' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
