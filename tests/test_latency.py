"""`scopebench latency`: output structure on CPU, run-table rows, device checks, GPU peaks (timings
untested)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.config import config_from_dict
from scopebench.models.build import build_model
from scopebench.models.checkpoint import save_checkpoint
from scopebench.profiling.latency import peak_tflops, time_call
from scopebench.run_dir import RunDir

FAST = ["--warmup", "1", "--repeats", "3", "--prompt-tokens", "8"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tokenizer):
    from tests.conftest import tiny_config_dict

    model = build_model(config_from_dict(tiny_config_dict("router", vocab=len(tokenizer)), "tiny"), tokenizer)
    return save_checkpoint(model, tmp_path_factory.mktemp("latency") / "ckpt")


def _run(args: list[str]):
    return CliRunner().invoke(app, ["latency", *args])


def test_latency_cpu_json_and_rows(ckpt, tmp_path):
    result = _run([str(ckpt), *FAST, "--batch-size", "2", "--json", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["device"] == "cpu" and out["threads"] == torch.get_num_threads() and out["peak_tflops"] is None
    assert out["batch_size"] == 2 and isinstance(out["warnings"], list)
    assert [p["path"] for p in out["paths"]] == ["shared+conv", "shared+oclip", "shared+hfclip"]
    for p in out["paths"]:
        names = {"shared_encoder", "router", *(f"routed:{e}" for e in p["path"].split("+")[1:]), "projector",
                 "llm_prefill", "llm_decode_per_token"}
        assert set(p["components"]) == names
        for t in [*p["components"].values(), p["total"]]:
            assert t["median_ms"] > 0 and t["iqr_ms"] >= 0 and t["flops"] == 2 * t["macs"] > 0
            assert t["tflops"] == pytest.approx(t["flops"] / (t["median_ms"] / 1e3) / 1e12)
        first_token = [c for n, c in p["components"].items() if n != "llm_decode_per_token"]
        assert p["total"]["flops"] == sum(c["flops"] for c in first_token)
    rows = RunDir(tmp_path).read("costs")
    assert (set(rows["kind"]) == {"latency"} and (rows["batch_size"] == 2).all()
            and (rows["device"] == "cpu").all())
    assert len(rows) == 3 * 7
    assert _run([str(ckpt), *FAST, "--batch-size", "2", "--output", str(tmp_path)]).exit_code == 0
    assert len(RunDir(tmp_path).read("costs")) == len(rows)  # same setting: replaced, not appended


def test_latency_table_for_an_encoder_spec_built_in_bf16():
    result = _run(["timm:vit_tiny_patch16_224", "--warmup", "0", "--repeats", "2", "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    assert "timm:vit_tiny_patch16_224" in result.output and "bfloat16" in result.output
    assert "total (first token)" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda_is_one_line(ckpt):
    result = _run([str(ckpt), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA device is available" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--dtype", "float64"], "--dtype must be one of"),
    (["--device", "tpu"], "--device must be cpu or cuda"),
    (["--cuda-graphs"], "--cuda-graphs needs --device cuda"),
    (["--repeats", "0"], "--repeats must be >= 1"),
])
def test_latency_bad_options(ckpt, args, message):
    result = _run([str(ckpt), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_paper_scale_preset_is_refused_on_cpu():
    result = _run(["scope-paper@baseline-0"])
    assert result.exit_code == 2 and "too big and slow to time on a CPU" in result.output
    assert "scopebench flops scope-paper@baseline-0 --meta" in result.output


@pytest.mark.parametrize("name, dtype, expected", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", ("H100 SXM", 989.4)),
    ("NVIDIA H100 PCIe", "float32", ("H100 PCIe", 51.2)),
    ("NVIDIA H200", "bfloat16", ("H200 SXM", 989.4)),
    ("NVIDIA A100-SXM4-80GB", "float16", ("A100", 312.0)),
    ("NVIDIA L40S", "bfloat16", ("L40S", 362.1)),
    ("NVIDIA GeForce RTX 4090", "bfloat16", None),
])
def test_peak_table(name, dtype, expected):
    assert peak_tflops(name, dtype) == expected


def test_cpu_timer_median_and_iqr():
    median, iqr = time_call(lambda: torch.ones(64, 64) @ torch.ones(64, 64), torch.device("cpu"), 1, 5, 1)
    assert median > 0 and iqr >= 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latency_cuda_bf16_with_graphs(ckpt):
    result = _run([str(ckpt), *FAST, "--device", "cuda", "--dtype", "bfloat16", "--cuda-graphs", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["device"].startswith("cuda:") and out["threads"] is None
    for p in out["paths"]:
        assert all(t["median_ms"] > 0 for t in [*p["components"].values(), p["total"]])
        if out["peak_tflops"]:
            assert 0 < p["total"]["peak_fraction"] < 1
