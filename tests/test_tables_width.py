"""Every command's terminal tables, piped at 80, 100 and 160 columns (COLUMNS), keep every model and path
name whole: no cell is cut, folded or wider than the terminal."""

from __future__ import annotations

import re

import pytest

from scopebench.evaluation.display import print_scores
from scopebench.profiling.render import print_flops, print_latency
from scopebench.reporting.report import run_report
from scopebench.run_dir import RunDir
from scopebench.suites import load_suite
from tests._report_data import make_run

WIDTHS = (80, 100, 160)
PATHS = ["shared+dinov3_vitl", "shared+dinov3_vitb", "shared+convnext_l", "shared+convnext_xxl"]
REFERENCE = "+".join(["shared", "dinov3_vitl", "dinov3_vitb", "convnext_l", "convnext_xxl"])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "run", n_docs=12)


def _cells(text: str) -> list[str]:
    return [c.strip() for line in text.splitlines() for c in re.split("[│┃]", line)[1:-1]]


def assert_whole(text: str, width: int, names: list[str]) -> None:
    """No line wider than ``width``, no ellipsis, each name whole, and no table cell a cut name."""
    assert all(len(line) <= width for line in text.splitlines()), max(text.splitlines(), key=len)
    assert "…" not in text
    for name in names:
        assert name in text, name
    cells = [c for c in _cells(text) if len(c) >= 4 and any(ch in c for ch in "-+_@:")]  # name-like
    for name in names:
        cut = [c for c in cells if name.startswith(c) and len(c) < len(name) and name[len(c)].isalnum()
               and c[-1] != " "]  # cut mid-word, as a folded or shortened cell is
        assert not cut, (name, cut)


def _piped(monkeypatch, width: int) -> None:
    monkeypatch.setenv("COLUMNS", str(width))


@pytest.mark.parametrize("width", WIDTHS)
def test_eval_summary(run_dir, width, monkeypatch, capsys):
    _piped(monkeypatch, width)
    scores = RunDir(run_dir).read("scores")
    models = sorted(set(scores["model"]))
    wanted = set(zip(scores["model"], scores["benchmark"], strict=True))
    print_scores(run_dir, load_suite("cambrian16"), wanted)
    out = capsys.readouterr().out
    assert_whole(out, width, models + ["CV-Bench-3D"])
    if width == 80:  # too narrow for six names as headers: short labels with a legend
        assert "m1=demo-baseline-0" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_report_tables(run_dir, width, monkeypatch, capsys):
    _piped(monkeypatch, width)
    run_report([run_dir], None, "table", None, None)
    out = capsys.readouterr().out
    models = sorted(set(RunDir(run_dir).read("scores")["model"]))
    paths = ["shared+convnext+vit_hr+siglip", "shared+vit_hr"]
    assert_whole(out, width, models + paths)
    assert re.search(r"-?\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", out)  # the delta and its interval, whole
    assert re.search(r"\d+\.\d% \(\d+\.\d%\.\.\d+\.\d%\)", out)  # the saving and its range, whole


def _flops_result() -> dict:
    """What `flops scope-paper --meta` prints, in the shape of its result (README's headline table)."""
    def path(name: str, reference: bool) -> dict:
        names = ("shared_encoder", "router", f"routed:{name.removeprefix('shared+')}", "llm_prefill")
        comps = {c: {"macs": 3.1e12, "flops": 6.2e12, "params": 4.1e9, "counter": "torch"} for c in names}
        return {"path": REFERENCE if reference else name, "reference": reference, "visual_tokens": 1040,
                "total": {"macs": 8.5e12, "flops": 1.7e13}, "decode_per_token": {"flops": 1.458e10},
                "params": 9.82e9, "active_params": 8.64e9, "saving_vs_all": None if reference else 0.551,
                "components": comps}

    return {"model": "scope-paper", "prompt_tokens": 64, "generated_tokens": 16, "counter": "torch",
            "device": "meta", "paths": [path(p, False) for p in PATHS] + [path("all", True)],
            "unsupported_ops": {"aten::mul": 306}, "notes": []}


@pytest.mark.parametrize("width", WIDTHS)
def test_flops_and_latency_tables(width, monkeypatch, capsys):
    _piped(monkeypatch, width)
    print_flops(_flops_result())
    out = capsys.readouterr().out
    assert_whole(out, width, PATHS + ["shared+all (reference)", "llm_prefill", "shared_encoder"])
    for p in PATHS:  # one row per path, its name on one line
        assert any(line.startswith(f"│ {p} ") for line in out.splitlines()), p
    timed = {"median_ms": 12.5, "iqr_ms": 0.4, "flops": 1.7e13, "tflops": 1.36, "peak_fraction": 0.14}
    print_latency({"model": "scope-paper", "device": "cuda:NVIDIA H200", "dtype": "bfloat16", "batch_size": 1,
                   "repeats": 30, "peak_tflops": 989.0, "paths": [
                       {"path": p, "components": {"shared_encoder": timed, "llm_prefill": timed},
                        "total": timed} for p in PATHS]})
    assert_whole(capsys.readouterr().out, width, PATHS + ["total (first token)"])


@pytest.mark.parametrize("width", WIDTHS)
def test_models_table(width, monkeypatch, capsys):
    from scopebench.models.registry import show_models

    _piped(monkeypatch, width)
    show_models(None)
    out = capsys.readouterr().out
    assert_whole(out, width, ["scope-paper", "cambrian-1", "demo-baseline-1-hires", "demo-scope",
                              "hf:Qwen/Qwen2.5-VL-7B-Instruct", "timm:vit_tiny_patch16_224"])
