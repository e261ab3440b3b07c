"""`scopebench flops`: counts agree with published figures, with closed forms, and across counters."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.config import config_from_dict
from scopebench.errors import ScopebenchError
from scopebench.models.build import build_model
from scopebench.models.checkpoint import save_checkpoint
from scopebench.models.registry import resolve, with_policy
from scopebench.profiling.components import DECODE, decode_part, prefill_part
from scopebench.profiling.counters import count
from scopebench.profiling.flops import Tally, _decode, profile
from scopebench.profiling.loading import Target
from scopebench.run_dir import RunDir

# Published counts, in GMACs. timm: column infer_gmacs of
# results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv
# (huggingface/pytorch-image-models @ 5c33776); whole classifier at that resolution.
# open_clip: column image_gflops of docs/model_profile.csv (mlfoundations/open_clip @ 3b37473), which is
# FLOPs = 2 x MACs, halved here; the image tower with its projection.
REFERENCES = [
    ("timm", "vit_small_patch16_224", 224, 4.61, True),
    ("timm", "vit_base_patch16_224", 224, 17.58, True),  # also DESIGN.md
    ("timm", "convnext_tiny", 224, 4.47, True),
    ("timm", "vit_large_patch14_clip_336", 336, 191.11, False),
    ("timm", "convnext_xxlarge", 256, 198.09, False),
    ("open_clip", "ViT-B-32", 224, 8.82 / 2, True),
    ("open_clip", "ViT-L-14-336", 336, 381.92 / 2, False),
    ("open_clip", "convnext_xxlarge", 256, 395.94 / 2, False),
]


def _reference_model(source: str, name: str, device: str):
    import open_clip
    import timm

    with torch.device(device):
        model = (timm.create_model(name) if source == "timm"
                 else open_clip.create_model(name, device=device).visual)
    return model.eval()


@pytest.mark.parametrize("source, name, size, gmacs, on_cpu", REFERENCES,
                         ids=[f"{r[0]}:{r[1]}" for r in REFERENCES])
def test_reference_models_match_published_counts(source, name, size, gmacs, on_cpu):
    """The torch counter on the meta device, and fvcore plus torch on a real CPU forward where it is cheap."""
    meta = _reference_model(source, name, "meta")
    counted = {"meta": count(meta, (torch.empty(1, 3, size, size, device="meta"),), "torch", name)}
    if on_cpu:
        model, x = _reference_model(source, name, "cpu"), torch.rand(1, 3, size, size)
        counted |= {c: count(model, (x,), c, name) for c in ("fvcore", "torch")}
        assert counted["fvcore"].counter == "fvcore" and not counted["fvcore"].note
    for c in counted.values():
        assert c.macs / 1e9 == pytest.approx(gmacs, rel=0.01)
        assert c.flops == 2 * c.macs


@pytest.mark.parametrize("encoder, gflops", [("siglip", 670.35), ("clip", 381.92)])
def test_cambrian_hf_encoders_match_open_clip_published_counts(encoder, gflops):
    """cambrian-1's transformers towers, through scopebench's adapter, against open_clip's figures for the
    same architectures (ViT-SO400M-14-SigLIP-384 and ViT-L-14-336, image_gflops, docs/model_profile.csv)."""
    from scopebench.models.encoders import create_encoder
    from scopebench.profiling.components import encoder_part

    cfg = resolve("cambrian-1").config
    with torch.device("meta"):
        part = encoder_part(encoder, create_encoder(cfg.routed[encoder]), 1)
    assert count(part.module, part.inputs, "torch", encoder).flops / 1e9 == pytest.approx(gflops, rel=0.01)


# ---- LLM closed form ------------------------------------------------------------------------------
D, FF, H, KV, HD, LAYERS, V = 64, 96, 4, 2, 16, 2, 100


@pytest.fixture(scope="module")
def llm():
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=LAYERS,
                      num_attention_heads=H, num_key_value_heads=KV, max_position_embeddings=256)
    return AutoModelForCausalLM.from_config(cfg).eval()


def _layer(q_len: int, k_len: int) -> int:
    """Per layer: q and o (H x HD), k and v (KV x HD: grouped-query), full q_len x k_len attention
    (QK^T and AV, causal mask not subtracted), a 3-matrix SwiGLU MLP."""
    proj = q_len * D * H * HD * 2 + q_len * D * KV * HD * 2
    return proj + H * q_len * k_len * (HD + HD) + 3 * q_len * D * FF


def prefill_closed_form(length: int) -> int:
    return LAYERS * _layer(length, length) + D * V  # LM head on the last position only


def decode_closed_form(context: int) -> int:
    return LAYERS * _layer(1, context + 1) + D * V


@pytest.mark.parametrize("counter", ["fvcore", "torch"])
def test_llm_prefill_and_decode_match_closed_form(llm, counter):
    for length in (7, 40):
        part = prefill_part(llm, length, 1)
        assert count(part.module, part.inputs, counter, "prefill").macs == pytest.approx(
            prefill_closed_form(length), rel=0.01)
        step = decode_part(llm, length, 1)
        got = count(step.module, step.inputs, counter, "decode")
        assert got.counter == counter
        assert got.macs == pytest.approx(decode_closed_form(length), rel=0.01)


def test_llm_counts_on_meta_and_decode_total(llm):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(llm.config).eval()
    part = prefill_part(meta, 33, 1)
    assert count(part.module, part.inputs, "torch", "prefill").macs == pytest.approx(prefill_closed_form(33),
                                                                                     rel=0.01)
    step, total = _decode(Tally("torch", "llm"), meta, 33, generated=5)
    assert step.macs == pytest.approx(decode_closed_form(33), rel=0.01)
    # tokens 2..5 come from 4 steps at contexts 33, 34, 35, 36
    assert total == pytest.approx(sum(decode_closed_form(33 + k) for k in range(4)), rel=0.01)


# ---- counters agree on whole models -----------------------------------------------------------------
def _totals(model, counter: str) -> tuple[dict, dict]:
    result = profile(Target("m", "demo", model, False), 8, 4, counter)
    return {p["path"]: p["total"]["macs"] for p in result["paths"]}, result


def _assert_agree(model, meta_model=None):
    fv, fv_result = _totals(model, "fvcore")
    th, _ = _totals(model, "torch")
    assert fv.keys() == th.keys()
    for path in fv:
        assert fv[path] == pytest.approx(th[path], rel=0.01), path
    if meta_model is not None:
        meta, _ = _totals(meta_model, "torch")
        assert meta == pytest.approx(th, rel=0.01)
    return fv_result


@pytest.mark.parametrize("policy, fusion", [
    ("router", "sequence"), ("router", "channel"), ("token_moe", "sequence"), ("shared_only", "sequence"),
    ("fixed:conv,hfclip", "sequence"), ("router_topk:2", "sequence"),
])
def test_counters_agree_on_tiny_model_paths(make_model, policy, fusion):
    from tests.conftest import tiny_config_dict

    model = make_model(policy, fusion)
    cfg = config_from_dict(tiny_config_dict(policy, fusion), "tiny")
    meta = build_model(cfg, model.tokenizer, meta=True)  # the same tokenizer: the same prompt layout
    result = _assert_agree(model, meta)
    for p in result["paths"]:
        assert all(c["counter"] == "fvcore" for n, c in p["components"].items() if n != "projector")
    if fusion == "channel":  # resampling reads a traced size as a number: fvcore cannot trace it
        assert any(p["components"]["projector"]["counter"] == "torch" for p in result["paths"])
        assert any("fvcore could not trace projector" in n for n in result["notes"])


LLM_SMALL = {"model_type": "qwen2", "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 512, "tie_word_embeddings": False}
# Same model classes and code paths as the presets' encoders, a few layers and channels wide.
HF_SMALL = {
    "qwen2_5_vl_vision": ({"depth": 2, "hidden_size": 32, "intermediate_size": 48, "num_heads": 2,
                           "out_hidden_size": 32, "window_size": 28, "fullatt_block_indexes": [1]}, 56),
    "dinov3_vit": ({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2}, 64),
    "siglip_vision_model": ({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                             "num_attention_heads": 2, "image_size": 56}, 56),
    "clip_vision_model": ({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "image_size": 56}, 56),
    "dinov2": ({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "image_size": 56}, 56),
}
TIMM_SMALL = {"dims": [8, 16, 16, 32], "depths": [1, 1, 1, 1]}
OPEN_CLIP_SMALL = {"vision_cfg": {"timm_model_name": "convnext_atto"}, "embed_dim": 16,
                   "text_cfg": {"layers": 1, "width": 32, "heads": 2, "context_length": 8, "vocab_size": 64}}


def scaled_preset(name: str) -> dict:
    """A preset's structure (encoder families, fusion, policy, variants) at toy width and depth."""
    cfg = resolve(name).config
    data = cfg.to_dict()
    data["llm"]["config"] = dict(LLM_SMALL)
    data["router"] = {"dim": 16, "heads": 2}
    for enc in [data["shared"], *data["routed"].values()]:
        if enc["config"]:
            small, size = HF_SMALL[enc["config"]["model_type"]]
            enc["config"].update(small)
        elif enc["spec"].startswith("timm:"):
            enc["overrides"], size = dict(TIMM_SMALL), 64
        else:
            enc["overrides"], size = dict(OPEN_CLIP_SMALL), 64
        enc["image_size"] = size
    return data


@pytest.mark.parametrize("preset", ["scope-paper", "cambrian-1"])
def test_counters_agree_on_scaled_presets(preset):
    """Every variant's every path (plus the all-encoders reference): fvcore vs torch on CPU; meta for
    SCOPE."""
    cfg = config_from_dict(scaled_preset(preset), preset)
    variants = [None, *cfg.variants]
    for variant in variants:
        vcfg = with_policy(cfg, variant) if variant else cfg
        meta = build_model(vcfg, meta=True) if variant is None else None
        result = _assert_agree(build_model(vcfg), meta)
        encoders = [c for p in result["paths"] for n, c in p["components"].items()
                    if n == "shared_encoder" or n.startswith("routed:")]
        assert encoders and all(c["counter"] == "fvcore" for c in encoders)


# ---- the CLI: JSON schema, single encoders, run directories, bad input --------------------------------
@pytest.fixture(scope="module")
def router_ckpt(tmp_path_factory, tokenizer):
    from tests.conftest import tiny_config_dict

    model = build_model(config_from_dict(tiny_config_dict("router", vocab=len(tokenizer)), "tiny"), tokenizer)
    return save_checkpoint(model, tmp_path_factory.mktemp("flops") / "ckpt")


def _json(args: list[str]) -> dict:
    result = CliRunner().invoke(app, ["flops", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_flops_json_schema(router_ckpt):
    out = _json([str(router_ckpt), "--prompt-tokens", "8", "--generated-tokens", "4"])
    assert out["model"] == "tiny-router" and "flops = 2 x macs" in out["unit"]
    assert {p["path"] for p in out["paths"]} == {"shared+conv", "shared+oclip", "shared+hfclip",
                                                 "shared+conv+oclip+hfclip"}
    for p in out["paths"]:
        assert isinstance(p["visual_tokens"], int) and p["visual_tokens"] > 0
        expected = {"shared_encoder", "projector", "llm_prefill", "llm_decode",
                    *(f"routed:{e}" for e in p["route"])}
        assert set(p["components"]) == expected | (set() if p["reference"] else {"router"})
        for c in [*p["components"].values(), p["total"], p["decode_per_token"]]:
            assert isinstance(c["macs"], int) and c["flops"] == 2 * c["macs"]
        assert p["total"]["macs"] == sum(c["macs"] for c in p["components"].values())
        assert 0 < p["active_params"] <= p["params"]
        assert p["components"]["llm_decode"]["macs"] > 2 * p["decode_per_token"]["macs"]  # 3 steps
    ref = next(p for p in out["paths"] if p["reference"])
    assert ref["saving_vs_all"] == 0.0
    assert all(0 < p["saving_vs_all"] < 1 for p in out["paths"] if not p["reference"])
    assert out["unsupported_ops"] and all(isinstance(n, int) for n in out["unsupported_ops"].values())


def test_flops_table_output(router_ckpt):
    result = CliRunner().invoke(app, ["flops", str(router_ckpt), "--counter", "torch"])
    assert result.exit_code == 0, result.output
    for text in ("shared+all (reference)", "saving vs all", "llm_prefill", "not counted"):
        assert text in result.output


@pytest.mark.parametrize("meta", [False, True])
def test_single_encoder_spec(meta):
    """timm publishes 1.26 GMACs for vit_tiny_patch16_224 (same CSV as above); the head is 0.2 M of it."""
    out = _json(["timm:vit_tiny_patch16_224", *(["--meta"] if meta else [])])
    (path,) = out["paths"]
    assert list(path["components"]) == ["encoder"] and path["visual_tokens"] == 196
    assert path["total"]["macs"] / 1e9 == pytest.approx(1.26, rel=0.01)
    assert path["components"]["encoder"]["counter"] == ("torch" if meta else "fvcore")


def test_expected_costs_from_routes(router_ckpt, tmp_path):
    routes = pd.DataFrame({
        "model": "tiny-router", "benchmark": ["A"] * 4 + ["B"] * 2, "task": "t", "doc_id": range(6),
        "route": ["shared+conv"] * 3 + ["shared+oclip", "shared+hfclip", "shared+hfclip"],
        "encoder": ["conv"] * 3 + ["oclip", "hfclip", "hfclip"], "sample_score": 1.0,
    })
    RunDir(tmp_path).write("routes", routes)
    out = _json([str(router_ckpt), "--output", str(tmp_path), "--prompt-tokens", "8"])
    total = {p["path"]: p["total"]["macs"] for p in out["paths"]}
    ref = total["shared+conv+oclip+hfclip"]
    costs = RunDir(tmp_path).read("costs")
    exp = costs[costs["kind"] == "expected"].set_index("benchmark")
    want_a = 0.75 * total["shared+conv"] + 0.25 * total["shared+oclip"]
    assert float(exp.loc["A", "macs"]) == pytest.approx(want_a)
    assert float(exp.loc["B", "macs"]) == pytest.approx(total["shared+hfclip"])
    assert float(exp.loc["A", "flops"]) == pytest.approx(2 * want_a)
    assert float(exp.loc["A", "saving_vs_all"]) == pytest.approx(1 - want_a / ref)
    assert (exp["path"] == "expected").all() and (exp["component"] == "total").all()
    rows = costs[(costs["kind"] == "path") & (costs["component"] == "total")]
    assert set(rows["path"]) == {"shared+conv", "shared+oclip", "shared+hfclip"}
    assert set(costs.loc[costs["kind"] == "reference", "path"]) == {"shared+conv+oclip+hfclip"}
    assert {"llm_decode_per_token", "router", "routed:conv"} <= set(costs["component"])
    # counting again replaces the model's rows instead of adding to them
    _json([str(router_ckpt), "--output", str(tmp_path), "--prompt-tokens", "8"])
    assert len(RunDir(tmp_path).read("costs")) == len(costs)


def test_several_models_in_one_call(router_ckpt, tmp_path):
    """One start-up counts several models, each written to the run before the next loads: a bad one
    further on is one line (exit 2) and the costs already counted stay in the run."""
    both = CliRunner().invoke(app, ["flops", str(router_ckpt), "timm:vit_tiny_patch16_224", "--json"])
    assert both.exit_code == 0, both.output
    assert [r["model"] for r in json.loads(both.stdout)] == ["tiny-router", "timm:vit_tiny_patch16_224"]
    result = CliRunner().invoke(app, ["flops", str(router_ckpt), "nope-model", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model 'nope-model'" in result.output.splitlines()[-1]
    assert set(RunDir(tmp_path).read("costs")["model"]) == {"tiny-router"}


@pytest.mark.parametrize("args, message", [
    (["timm:not_a_model"], "unknown timm model"),
    (["nope-model"], "unknown model 'nope-model'"),
    (["bogus:thing"], "a preset or an encoder spec (timm:NAME, open_clip:NAME, hf:NAME)"),
    (["scope-paper", "--image-size", "100"], "must be a multiple of 28"),
    (["timm:vit_tiny_patch16_224", "--image-size", "8"], "Kernel size can't be greater"),
    (["timm:vit_tiny_patch16_224", "--image-size", "0"], "--image-size must be a positive"),
    (["demo-baseline-0", "--image-size", "7"], "cannot run at image_size 7"),
    (["demo-baseline-0", "--prompt-tokens", "2000"], "more than the LLM's max_position_embeddings (1024)"),
    (["timm:vit_tiny_patch16_224", "--counter", "deepspeed"], "--counter must be one of fvcore, torch"),
])
def test_flops_bad_input_is_one_line(args, message):
    result = CliRunner().invoke(app, ["flops", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_uncountable_call_is_one_clear_error():
    """fvcore cannot trace it and the torch counter cannot run it: one ScopebenchError naming the part."""
    with pytest.raises(ScopebenchError, match=r"cannot count the projector: RuntimeError") as err:
        count(torch.nn.Linear(4, 4), (torch.rand(2, 3),), "fvcore", "the projector")
    assert "\n" not in str(err.value)


def test_decode_is_counted_once_per_context(llm):
    tally = Tally("torch", "llm")
    _decode(tally, llm, 12, generated=3)
    _decode(tally, llm, 12, generated=3)
    assert set(tally.cache) == {(DECODE, 12), (DECODE, 13)}


def test_fvcore_counts_work_whose_result_is_unused():
    """Tracing drops unused results; the last layer before a penultimate read still runs, so it is counted."""

    class Penultimate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))

        def forward(self, x):
            states = [x]
            for layer in self.layers:
                states.append(layer(states[-1]))
            return states[-2]

    x = torch.rand(5, 8)
    for counter in ("fvcore", "torch"):
        assert count(Penultimate(), (x,), counter, "model").macs == 3 * 5 * 8 * 8
