"""Expected compute of a model whose shared encoder runs at native resolution (Qwen2.5-VL, aspect native):
each sample counted at its own token grid (the routes table's ``visual_grid``), then averaged."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from scopebench.analysis.compute import one_size_notes
from scopebench.cli import app
from scopebench.config import config_from_dict
from scopebench.models.build import build_model
from scopebench.models.checkpoint import save_checkpoint
from scopebench.models.encoders import ImageBatch, parse_grid_text
from scopebench.profiling.components import layout_tokens
from scopebench.profiling.counters import count_torch
from scopebench.run_dir import RunDir
from tests.conftest import tiny_config_dict

QWEN = {"model_type": "qwen2_5_vl_vision", "depth": 1, "hidden_size": 32, "intermediate_size": 64,
        "num_heads": 2, "out_hidden_size": 32, "patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [0]}
SIZES = [(56, 56), (56, 140), (150, 60)]  # (height, width): three token grids
PROMPT = 8


def _config(tokenizer, native: bool) -> dict:
    data = tiny_config_dict("router", vocab=len(tokenizer))
    del data["routed"]["oclip"]
    if native:
        data["name"] = "tiny-native"
        data["shared"] = {"spec": "hf:tiny-qwen2_5_vl", "aspect": "native", "image_size": 56,
                          "min_pixels": 28 * 28 * 4,
                          "max_pixels": 28 * 28 * 12, "config": QWEN}
    return data


@pytest.fixture(scope="module")
def native(tmp_path_factory, tokenizer):
    model = build_model(config_from_dict(_config(tokenizer, True), "tiny-native"), tokenizer).eval()
    return model, save_checkpoint(model, tmp_path_factory.mktemp("native") / "ckpt")


def _images() -> list:
    g = torch.Generator().manual_seed(0)
    return [Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())
            for h, w in SIZES]


def _routes(model, samples: list[tuple[str, int, str]]) -> pd.DataFrame:
    """Routes rows as eval writes them: (benchmark, image index, route) per sample."""
    images = _images()
    rows = []
    for doc, (bench, k, route) in enumerate(samples):
        batch = ImageBatch([images[k]], 32)
        rows.append({"model": model.cfg.name, "benchmark": bench, "task": "t", "doc_id": doc, "route": route,
                     "encoder": route.split("+")[1], "sample_score": 1.0,
                     "visual_tokens": model.visual_tokens(batch, tuple(route.split("+")[1:])),
                     "visual_grid": model.visual_grid(batch)})
    return pd.DataFrame(rows)


class _Call(nn.Module):
    def __init__(self, model, fn):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self):
        return self.fn()


def _macs(model, fn) -> int:
    return count_torch(_Call(model, fn), ()).macs


def _direct(model, grid: str, route: str) -> int:
    """One sample's MACs counted here on the model's own modules (one generated token: no decode step)."""
    (gh, gw), = parse_grid_text(grid)
    names = tuple(route.split("+")[1:])
    dim = model.llm.get_input_embeddings().embedding_dim
    prompt = PROMPT + layout_tokens(model)
    pixels = torch.rand(1, 3, 28 * gh, 28 * gw)
    with torch.no_grad():
        shared = model.shared.features(pixels)
        feats = {e: model.routed[e](torch.rand(1, 3, 32, 32)) for e in names}
        visual = model.fuse(shared, feats, names).shape[1]
    text, mask = torch.rand(1, prompt, dim), torch.ones(1, prompt, dtype=torch.long)
    embeds = torch.rand(1, visual + prompt, dim)
    return (_macs(model, lambda: model.shared.features(pixels))
            + _macs(model, lambda: model.router(text, mask, shared))
            + sum(_macs(model, lambda e=e: model.routed[e](torch.rand(1, 3, 32, 32))) for e in names)
            + _macs(model, lambda: model.fuse(shared, feats, names))
            + _macs(model, lambda: model.llm(inputs_embeds=embeds, use_cache=False, logits_to_keep=1)))


def _flops(ckpt, out) -> dict:
    result = CliRunner().invoke(app, ["flops", str(ckpt), "--output", str(out), "--prompt-tokens",
                                      str(PROMPT), "--generated-tokens", "1", "--counter", "torch", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _expected(out) -> pd.DataFrame:
    costs = RunDir(out).read("costs")
    return costs[costs["kind"] == "expected"].set_index("benchmark")


def test_expected_macs_are_the_mean_of_each_samples_own_count(native, tmp_path):
    model, ckpt = native
    routes = _routes(model, [("A", 0, "shared+conv"), ("A", 1, "shared+conv"), ("A", 2, "shared+hfclip"),
                             ("B", 1, "shared+hfclip"), ("B", 1, "shared+hfclip")])
    assert list(routes["visual_grid"]) == ["2x2", "2x5", "5x2", "2x5", "2x5"]  # smart_resize within min/max
    RunDir(tmp_path).write("routes", routes)
    out = _flops(ckpt, tmp_path)
    direct = [_direct(model, g, r) for g, r in zip(routes["visual_grid"], routes["route"], strict=True)]
    exp = _expected(tmp_path)
    assert float(exp.loc["A", "macs"]) == pytest.approx(sum(direct[:3]) / 3, rel=1e-9)
    assert float(exp.loc["B", "macs"]) == pytest.approx(direct[3], rel=1e-9)
    assert float(exp.loc["A", "flops"]) == pytest.approx(2 * sum(direct[:3]) / 3, rel=1e-9)
    assert float(exp.loc["A", "visual_tokens"]) == pytest.approx(routes["visual_tokens"][:3].mean())
    # each distinct (route, grid) once, plus the reference at each grid set; the tokens are the model's
    own = [s for s in out["sizes"] if not s["reference"]]
    assert len(own) == 4 and len(out["sizes"]) == 7  # + the reference at 3 grids
    tokens = routes.set_index(["route", "visual_grid"])["visual_tokens"].groupby(level=[0, 1]).first()
    assert all(s["visual_tokens"] == tokens[(s["route"], s["visual_grid"])] for s in own)
    ref = {s["visual_grid"]: s["macs"] for s in out["sizes"] if s["reference"]}
    want = 1 - sum(direct[:3]) / sum(ref[g] for g in routes["visual_grid"][:3])
    assert float(exp.loc["A", "saving_vs_all"]) == pytest.approx(want, rel=1e-9)
    assert any("4 distinct (route, token grid) counted for 5 samples" in n for n in out["notes"])
    # the one-size path figure (the shared encoder at its 56-pixel square, 2x2) is not what the samples cost
    paths = {p["path"]: p["total"]["macs"] for p in out["paths"]}
    assert float(exp.loc["B", "macs"]) != pytest.approx(paths["shared+hfclip"], rel=1e-3)


def test_flops_before_eval_says_what_the_per_sample_figure_needs(native, tmp_path):
    model, ckpt = native
    out = _flops(ckpt, tmp_path)
    assert out["sizes"] == [] and _expected(tmp_path).empty
    assert any("per-sample figure needs `scopebench flops tiny-native --output RUN` after eval" in n
               for n in out["notes"])
    routes = _routes(model, [("A", 0, "shared+conv")])
    costs = RunDir(tmp_path).read("costs")
    assert len(one_size_notes(routes, costs)) == 1  # a report computing it from the one-size figure says so
    run = RunDir(tmp_path)
    run.write("routes", routes.assign(benchmark="MMVP", task="c16mini_mmvp"))
    score = {"model": model.cfg.name, "suite": "cambrian16-mini", "benchmark": "MMVP", "task": "c16mini_mmvp",
             "category": "Vision-Centric", "score": 50.0, "n": 1}
    run.write("scores", pd.DataFrame([score]))
    report = CliRunner().invoke(app, ["report", str(tmp_path), "--format", "json"])
    assert report.exit_code == 0, report.output
    assert any("costs hold only one image size" in n for n in json.loads(report.stdout)["notes"])
    old = routes.drop(columns="visual_grid")  # a run of an earlier scopebench: no grids, no note
    assert one_size_notes(old, costs) == []
    RunDir(tmp_path).write("routes", old)
    out = _flops(ckpt, tmp_path)
    assert any("have no visual_grid" in n for n in out["notes"])
    assert float(_expected(tmp_path).loc["A", "macs"]) == pytest.approx(
        next(p["total"]["macs"] for p in out["paths"] if p["path"] == "shared+conv"))


def test_fixed_size_model_keeps_the_routing_weighted_path_figure(tokenizer, tmp_path):
    model = build_model(config_from_dict(_config(tokenizer, False), "tiny"), tokenizer).eval()
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    routes = _routes(model, [("A", 0, "shared+conv"), ("A", 1, "shared+conv"), ("A", 2, "shared+hfclip")])
    assert routes["visual_grid"].isna().all()
    RunDir(tmp_path / "run").write("routes", routes)
    out = _flops(ckpt, tmp_path / "run")
    paths = {p["path"]: p["total"]["macs"] for p in out["paths"]}
    want = (2 * paths["shared+conv"] + paths["shared+hfclip"]) / 3
    assert out["sizes"] == [] and not any("native" in n for n in out["notes"])
    assert float(_expected(tmp_path / "run").loc["A", "macs"]) == pytest.approx(want, rel=1e-12)


def test_a_bad_visual_grid_is_one_line_naming_the_column(native, tmp_path):
    model, ckpt = native
    RunDir(tmp_path).write("routes", _routes(model, [("A", 0, "shared+conv")]).assign(visual_grid="2by2"))
    result = CliRunner().invoke(app, ["flops", str(ckpt), "--output", str(tmp_path), "--counter", "torch"])
    assert result.exit_code == 2 and "visual_grid '2by2' is not ROWSxCOLS" in result.output
