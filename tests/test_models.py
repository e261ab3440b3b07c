"""Model core: policies, route-grouped batching, router losses, checkpoints, presets, bad input."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from scopebench.config import Policy, config_from_dict
from scopebench.errors import ScopebenchError
from scopebench.models.build import build_model
from scopebench.models.checkpoint import load_checkpoint, save_checkpoint
from scopebench.models.encoders import EncoderConfig, create_encoder
from scopebench.models.router import dual_entropy_loss, entropy, load_balance_loss
from tests.conftest import assert_same_forward, tiny_config_dict

PROMPTS = ["is there a red circle ?", "what colour is the shape ?", "a", "b c d 1 2 3", "red", "square ?"]
ROUTED = ["conv", "oclip", "hfclip"]


def _batch(model, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 40, 40, generator=g)
    ids, mask, _ = model.encode_prompts(PROMPTS[:n])
    return images, ids, mask


# ---- policies -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, paths",
    [
        ("shared_only", [()]),
        ("fixed:hfclip,conv", [("conv", "hfclip")]),
        ("all", [("conv", "oclip", "hfclip")]),
        ("all/mask:oclip", [("conv", "hfclip")]),
        ("router", [("conv",), ("oclip",), ("hfclip",)]),
        ("router/mask:conv", [("oclip",), ("hfclip",)]),
        ("router_topk:2", [("conv", "oclip"), ("conv", "hfclip"), ("oclip", "hfclip")]),
        ("token_moe", [("conv", "oclip", "hfclip")]),
        ("random/mask:hfclip", [("conv",), ("oclip",)]),
    ],
)
def test_policy_paths(make_model, text, paths):
    base = "router" if text.startswith("router") else text.split("/")[0]
    model = make_model("router" if base == "random" else base)
    model.set_policy(text)
    assert model.paths() == paths
    images, ids, mask = _batch(model)
    out = model(images, ids, mask)
    assert set(out.routes) <= set(paths)
    assert out.logits.shape[:2] == ids.shape and torch.isfinite(out.logits).all()


def test_router_picks_argmax_and_respects_mask(make_model):
    model = make_model("router")
    images, ids, mask = _batch(model)
    out = model(images, ids, mask)
    assert out.probs.shape == (6, 3)
    assert torch.allclose(out.probs.sum(-1), torch.ones(6))
    assert [r[0] for r in out.routes] == [ROUTED[i] for i in out.probs.argmax(-1).tolist()]
    model.set_policy("router/mask:" + ROUTED[int(out.probs[0].argmax())])
    masked = model(images, ids, mask)
    assert all(r[0] in model.available() for r in masked.routes)
    model.set_policy("router_topk:2")
    top2 = model(images, ids, mask)
    for row, route in zip(out.probs, top2.routes, strict=True):
        assert set(route) == {ROUTED[i] for i in row.topk(2).indices.tolist()}


def test_policy_parse_errors():
    with pytest.raises(ScopebenchError, match="unknown policy 'rooter'.*did you mean 'router'"):
        Policy.parse("rooter", ROUTED)
    with pytest.raises(ScopebenchError, match="unknown encoder 'dino'"):
        Policy.parse("fixed:dino", ROUTED)
    with pytest.raises(ScopebenchError, match="router_topk:K needs"):
        Policy.parse("router_topk:5", ROUTED)


def test_blind_policy_parses():
    """`/blind` parses after masking and round-trips (what a blind model does: tests/test_blind.py)."""
    assert str(Policy.parse("all/mask:oclip/blind", ROUTED)) == "fixed:conv,oclip,hfclip/mask:oclip/blind"
    with pytest.raises(ScopebenchError, match="'<policy>/blind'"):
        Policy.parse("blind", ROUTED)
    with pytest.raises(ScopebenchError, match="'/mask:' needs encoder names, e.g. all/mask:conv"):
        Policy.parse("all/mask:", ROUTED)


def test_set_policy_needs_modules(make_model):
    with pytest.raises(ScopebenchError, match="has no router"):
        make_model("all").set_policy("router")


# ---- route-grouped batching ---------------------------------------------------------------------
@pytest.mark.parametrize("policy, fusion", [("router", "sequence"), ("router_topk:2", "sequence"),
                                            ("token_moe", "sequence"), ("router", "channel")])
def test_grouped_forward_equals_per_sample(make_model, policy, fusion):
    model = make_model(policy, fusion)
    images, ids, mask = _batch(model)
    batched = model(images, ids, mask)
    assert len(set(batched.routes)) > 1 or policy == "token_moe"
    for i in range(len(PROMPTS)):
        n = int(mask[i].sum())
        single = model(images[i : i + 1], ids[i : i + 1, :n], mask[i : i + 1, :n])
        assert single.routes[0] == batched.routes[i]
        torch.testing.assert_close(single.logits[0], batched.logits[i, :n], atol=1e-5, rtol=1e-4)


def test_grouped_generate_equals_per_sample(make_model):
    model = make_model("router")
    images = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    batched = model.generate(images, PROMPTS, max_new_tokens=5)
    for i, prompt in enumerate(PROMPTS):
        single = model.generate(images[i : i + 1], [prompt], max_new_tokens=5)
        assert single.texts[0] == batched.texts[i]
        assert single.routes[0] == batched.routes[i]


def test_training_step_reduces_loss_and_trains_router(make_model, tokenizer):
    model = make_model("router").train()
    images, ids, mask = _batch(model)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :2] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for mode in ("soft", "straight_through"):
        model.cfg.router.train_mode = mode
        out = model(images, ids, mask, labels=labels)
        assert {"lm_loss", "router_loss", "batch_entropy", "sample_entropy"} <= set(out.aux)
        opt.zero_grad()
        out.loss.backward()
        assert model.router.head.weight.grad.abs().sum() > 0, f"no router gradient in {mode} mode"
    first = model(images, ids, mask, labels=labels).loss.item()
    for _ in range(15):
        opt.zero_grad()
        model(images, ids, mask, labels=labels).loss.backward()
        opt.step()
    assert model(images, ids, mask, labels=labels).loss.item() < first


def test_answer_hidden_is_what_the_lm_head_reads(make_model):
    """``hidden_at`` returns the last hidden state behind the logits at that text position: per sample
    under hard routing, the router-probability-weighted mean of every route's under soft training."""
    model = make_model("router")
    images, ids, mask = _batch(model)
    at = mask.sum(1) - 1
    out = model(images, ids, mask, hidden_at=at)
    assert len(set(out.routes)) > 1
    head = model.llm.get_output_embeddings()
    torch.testing.assert_close(head(out.answer_hidden), out.logits[torch.arange(len(at)), at], atol=1e-5,
                               rtol=1e-4)
    assert model(images, ids, mask).answer_hidden is None

    per_route = {}
    for e in model.cfg.routed_names:
        model.set_policy(f"fixed:{e}")
        per_route[e] = model(images, ids, mask, hidden_at=at).answer_hidden
    model.set_policy("router")
    model.cfg.router.train_mode = "soft"
    soft = model.train()(images, ids, mask, hidden_at=at)
    expected = sum(soft.probs[:, i, None] * per_route[e] for i, e in enumerate(model.cfg.routed_names))
    torch.testing.assert_close(soft.answer_hidden, expected, atol=1e-5, rtol=1e-4)


# ---- router losses (known answers) --------------------------------------------------------------
def test_router_losses_known_answers():
    e = 4
    uniform = torch.full((8, e), 1 / e)
    onehot_balanced = torch.eye(e).repeat(2, 1)
    collapsed = torch.zeros(8, e)
    collapsed[:, 0] = 1
    assert entropy(uniform.mean(0)).item() == pytest.approx(math.log(e))
    assert entropy(uniform).mean().item() == pytest.approx(math.log(e))
    assert entropy(onehot_balanced).mean().item() == pytest.approx(0.0, abs=1e-6)
    # dual entropy: -w_b * H(mean) + w_s * mean H
    assert dual_entropy_loss(uniform, 1.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert dual_entropy_loss(onehot_balanced, 1.0, 1.0).item() == pytest.approx(-math.log(e), abs=1e-5)
    assert dual_entropy_loss(collapsed, 1.0, 1.0).item() == pytest.approx(0.0, abs=1e-5)
    # the best routing under dual entropy is confident AND balanced
    assert dual_entropy_loss(onehot_balanced, 1, 1) < dual_entropy_loss(uniform, 1, 1)
    assert dual_entropy_loss(onehot_balanced, 1, 1) < dual_entropy_loss(collapsed, 1, 1)
    assert load_balance_loss(onehot_balanced).item() == pytest.approx(1.0)
    assert load_balance_loss(collapsed).item() == pytest.approx(float(e))


def test_effective_rank_known_answers():
    from scopebench.models.vlm import effective_rank

    eye = torch.zeros(4, 16, 8)
    eye[0, :3, :3] = 2 * torch.eye(3)  # three equal singular values -> 3
    eye[1, :, 0] = torch.arange(16.0)  # rank one -> 1
    eye[2] = torch.randn(16, 8)
    eye[3, 0, 0] = float("inf")  # overflowed features -> NaN, not an error
    got = effective_rank(eye)
    assert got[0].item() == pytest.approx(3.0) and got[1].item() == pytest.approx(1.0)
    assert 1.0 < got[2].item() <= 8.0 and got[3].isnan()


def test_eval_mode_reports_effective_ranks_of_the_encoders_that_ran(make_model):
    model = make_model("router").eval()
    images, ids, mask = _batch(model)
    out = model(images, ids, mask)
    names = model.cfg.routed_names
    assert set(out.eranks) == {"shared", *names} and not out.eranks["shared"].isnan().any()
    for i, route in enumerate(out.routes):
        assert [not out.eranks[e][i].isnan().item() for e in names] == [e in route for e in names]
    assert model.train()(images, ids, mask).eranks is None


# ---- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_round_trip_bit_exact(make_model, tmp_path):
    model = make_model("router")
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    images, ids, mask = _batch(model)
    assert loaded.generate(images, PROMPTS).texts == model.generate(images, PROMPTS).texts
    assert_same_forward(loaded, model(images, ids, mask), images, ids, mask)
    assert not list((tmp_path / "ckpt").glob("*.bin")) and not list((tmp_path / "ckpt").glob("*.pt"))


def _corrupt(folder, what):
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    if what == "corrupt":
        weights.write_bytes(weights.read_bytes()[:200])
    elif what == "missing_file":
        weights.unlink()
    elif what == "no_config":
        (folder / "scopebench.json").unlink()
    elif what == "bad_config":
        data = json.loads((folder / "scopebench.json").read_text())
        data["policy"] = "fixed:nope"
        (folder / "scopebench.json").write_text(json.dumps(data))
    else:
        state = load_file(str(weights))
        key = next(k for k in state if k.startswith("router."))
        if what == "missing":
            del state[key]
        elif what == "unexpected":
            state["extra.weight"] = torch.zeros(1)
        elif what == "shape":
            state[key] = torch.zeros(*[s + 1 for s in state[key].shape])
        save_file(state, str(weights))


@pytest.mark.parametrize("what, message", [
    ("corrupt", "corrupt safetensors"), ("missing_file", "weights file missing"),
    ("no_config", "no scopebench.json"),
    ("bad_config", "unknown encoder 'nope'"), ("missing", "missing tensor 'router."),
    ("unexpected", "unexpected tensor 'extra.weight'"), ("shape", "has shape"),
])
def test_bad_checkpoints(make_model, tmp_path, what, message):
    folder = save_checkpoint(make_model("router"), tmp_path / "ckpt")
    _corrupt(folder, what)
    with pytest.raises(ScopebenchError, match=message) as err:
        load_checkpoint(folder)
    assert "\n" not in str(err.value)


def test_checkpoint_with_inference_policy(make_model, tmp_path):
    """CHECKPOINT@POLICY: the checkpoint's weights under another policy, named after the reference."""
    from scopebench.models.registry import load_model, resolve

    # an '@' in the folder name stays a path
    folder = save_checkpoint(make_model("all"), tmp_path / "ckpt@v1")
    model = make_model("all")
    names = model.cfg.routed_names
    ref = f"{folder}@all/mask:{names[0]}"
    found = resolve(ref)
    kind, cfg = found.kind, found.config
    assert (kind, found.folder, cfg.name, cfg.policy) == ("checkpoint", folder,
                                                          f"{model.cfg.name}@all/mask:{names[0]}", "all")
    assert (found.base, found.policy, found.name) == (str(folder), f"all/mask:{names[0]}", cfg.name)
    masked = load_model(ref)
    assert masked.paths() == [tuple(names[1:])] and load_model(str(folder)).paths() == [tuple(names)]
    saved = load_checkpoint(folder).state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in masked.state_dict().items())
    images, ids, mask = _batch(masked)
    assert masked(images, ids, mask).routes == [tuple(names[1:])] * len(images)
    with pytest.raises(ScopebenchError, match="has no router, so policy 'router' cannot run"):
        resolve(f"{folder}@router")
    with pytest.raises(ScopebenchError, match="unknown encoder 'nope'"):
        resolve(f"{folder}@all/mask:nope")


def test_cli_bad_checkpoint_exit_code(make_model, tmp_path):
    from typer.testing import CliRunner

    from scopebench.cli import app

    folder = save_checkpoint(make_model("router"), tmp_path / "ckpt")
    _corrupt(folder, "corrupt")
    result = CliRunner().invoke(app, ["flops", str(folder)])
    assert result.exit_code == 2
    assert "corrupt safetensors" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["models", "scope-papr"])
    assert result.exit_code == 2 and "did you mean 'scope-paper'" in result.output


# ---- encoders and configs -------------------------------------------------------------------------
@pytest.mark.parametrize("spec, message", [
    ("nope:foo", "not SOURCE:NAME"), ("timm:not_a_model", "unknown timm model"),
    ("open_clip:ViT-B-33", "did you mean 'open_clip:ViT-B-32'"),
    ("hf:/does/not/exist", "no config found locally"),
])
def test_bad_encoder_specs(spec, message):
    with pytest.raises(ScopebenchError, match=message):
        create_encoder(spec)


HUB_PROBE = """
import time
sleeps = []
time.sleep = sleeps.append  # the hub client's retry back-off, recorded instead of waited
from scopebench.errors import ScopebenchError
from scopebench.models.build import build_model
from scopebench.models.encoders import create_encoder
try:
    create_encoder("hf:google/siglip-base-patch16-224")
except ScopebenchError as e:
    print(e)
print("back-off sleeps:", len(sleeps))
"""


def test_unreachable_hub_fails_without_retrying():
    """Offline without HF_HUB_OFFLINE, a hub id is refused at once (transformers alone retries with
    back-off for about 30 s)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_ENDPOINT"] = "https://127.0.0.1:9"  # nothing listens: connection refused
    done = subprocess.run([sys.executable, "-c", HUB_PROBE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert "hub is unreachable" in done.stdout, done.stderr[-2000:]
    assert "back-off sleeps: 0" in done.stdout


def test_encoder_options_shape():
    with torch.device("meta"):
        vit = create_encoder("timm:vit_base_patch16_224")
        vit_cls = create_encoder(EncoderConfig("timm:vit_base_patch16_224", feature_layer="penultimate",
                                               drop_cls=False))
        big = create_encoder(EncoderConfig("timm:vit_base_patch16_224", image_size=384))
    assert vit.output_shape() == (196, 768)
    assert vit_cls.output_shape() == (197, 768)
    assert big.output_shape() == (576, 768)


def test_config_errors():
    data = tiny_config_dict()
    data["routed"]["conv"]["feature_layr"] = "last"
    with pytest.raises(ScopebenchError, match="unknown field 'feature_layr'.*did you mean 'feature_layer'"):
        config_from_dict(data, "x.yaml")
    data = tiny_config_dict()
    del data["llm"]
    with pytest.raises(ScopebenchError, match="x.yaml: missing field 'llm'"):
        config_from_dict(data, "x.yaml")
    for edit, message in [
        (lambda d: d["router"].update(dim="x"), "x.yaml: router: field 'dim' must be an int, got 'x'"),
        (lambda d: d.update(name=5), "x.yaml: field 'name' must be a str, got 5"),
        (lambda d: d["shared"].update(image_size="64"), "field 'image_size' must be an int or null"),
        (lambda d: d.update(prompt_template="Q: {x}"),
         "prompt_template 'Q: {x}' may hold no field but {prompt}"),
    ]:
        data = tiny_config_dict()
        edit(data)
        with pytest.raises(ScopebenchError, match=re.escape(message)):
            config_from_dict(data, "x.yaml")
    data = tiny_config_dict()
    data["llm"]["config"]["hidden_size"] = "big"
    with pytest.raises(ScopebenchError, match="llm.config is not a valid qwen2 config"):
        build_model(config_from_dict(data, "x.yaml"))


# ---- presets and CLI ------------------------------------------------------------------------------
def test_every_preset_builds_on_meta():
    from scopebench.models.registry import load_model, load_preset, preset_files

    for name in preset_files():
        cfg = load_preset(name)
        for ref in [name] + [f"{name}@{v}" for v in cfg.variants]:
            start = time.perf_counter()
            model = load_model(ref, meta=True)
            assert time.perf_counter() - start < 60
            assert next(model.parameters()).device.type == "meta"
            assert model.shared.num_tokens > 0 and all(e.num_tokens > 0 for e in model.routed.values())
    assert {"scope-paper", "cambrian-1"} <= set(preset_files())
    assert len(load_model("scope-paper@baseline-2", meta=True).routed) == 2


def test_cli_help_is_light():
    code = ("import sys; from scopebench.cli import app; "
            "print('torch' in sys.modules, 'lmms_eval' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_cli_models_lists_presets():
    from typer.testing import CliRunner

    from scopebench.cli import app

    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    names = {row["ref"] for row in json.loads(result.output)}
    assert {"scope-paper", "cambrian-1"} <= names
    shown = CliRunner().invoke(app, ["models", "cambrian-1@baseline-2", "--json"])
    cfg = json.loads(shown.output)["config"]
    assert set(cfg["routed"]) == {"siglip", "dinov2"} and cfg["policy"] == "fixed:siglip,dinov2"
    forced = json.loads(CliRunner().invoke(app, ["models", "demo-scope@fixed:hires", "--json"]).output)
    assert forced["inference_policy"] == "fixed:hires" and forced["config"]["policy"] == "router"


def test_models_lists_the_rest_beside_a_broken_checkpoint(make_model, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from scopebench.cli import app

    save_checkpoint(make_model("router"), tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "scopebench.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "good" in result.output and "demo-scope" in result.output
    text = " ".join(result.output.split())
    assert f"broken {tmp_path / 'bad'}:" in text and "not valid JSON" in text


def test_an_unknown_preset_variant_lists_the_variants():
    from scopebench.models.registry import resolve

    with pytest.raises(ScopebenchError, match=r"unknown variant \(did you mean 'baseline-4'\?\); variants: "
                                              r"baseline-0, baseline-1, .*any policy string is accepted"):
        resolve("scope-paper@baseline-9")
