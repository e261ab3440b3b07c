"""Real checkpoints at real scale: lean bf16 loading, sharded safetensors, assemble, device maps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.errors import ScopebenchError
from scopebench.models.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import CORPUS, assert_same_forward, tiny_config_dict


def _inputs(model, n: int = 3):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 40, 40, generator=g)
    ids, mask, _ = model.encode_prompts(CORPUS[:1] * n)
    return images, ids, mask


def _same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    same = all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)
    return sa.keys() == sb.keys() and same


def test_sharded_round_trip_is_bit_exact(make_model, tmp_path):
    model = make_model("router")
    folder = save_checkpoint(model, tmp_path / "ckpt", max_shard_size="200KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert len(shards) > 2 and sorted(set(index["weight_map"].values())) == shards
    assert not (folder / "model.safetensors").exists()
    loaded = load_checkpoint(folder)
    assert _same_state(model, loaded)
    images, ids, mask = _inputs(model)
    assert_same_forward(loaded, model(images, ids, mask), images, ids, mask)
    single = load_checkpoint(save_checkpoint(model, tmp_path / "one"))  # one model.safetensors still loads
    assert _same_state(model, single)


def test_a_bf16_checkpoint_loads_as_bf16_without_random_init(make_model, tmp_path, monkeypatch):
    model = make_model("all").to(torch.bfloat16)
    folder = save_checkpoint(model, tmp_path / "ckpt", max_shard_size="300KB")
    inits = []
    for name in ("normal_", "trunc_normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "zeros_",
                 "ones_"):
        real = getattr(torch.nn.init, name)

        def spy(tensor, *args, _real=real, _name=name, **kwargs):
            if tensor.device.type != "meta":
                inits.append(_name)
            return _real(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, spy)
    loaded = load_checkpoint(folder)
    assert inits == [], f"random init ran while loading: {sorted(set(inits))}"
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert _same_state(model, loaded)
    assert loaded.shared.mean.dtype == torch.float32 and loaded.shared.mean.device.type == "cpu"
    assert load_checkpoint(folder, dtype="float32").llm.lm_head.weight.dtype == torch.float32


def test_an_empty_build_skips_writes_to_meta_tensors_only():
    from torch.utils._python_dispatch import TorchDispatchMode

    from scopebench.models.build import SkipMetaInit

    class Ops(TorchDispatchMode):  # records every aten op that reaches a kernel
        ran: list = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ran.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    meta = torch.empty(3, 4, device="meta")
    with Ops(), SkipMetaInit():
        torch.nn.init.trunc_normal_(meta)
        meta.uniform_().clamp_(0, 1)
        assert meta.t_().shape == (4, 3)  # shape-changing ops still run
        real = torch.zeros(2)
        real.fill_(1.5).mul_(2)
    assert real.tolist() == [3.0, 3.0]  # real tensors are written as usual
    assert Ops.ran == ["t_", "zeros", "fill_", "mul_"], Ops.ran


def test_a_checkpoint_from_before_prompt_layouts_reads_as_images_first(make_model, tmp_path):
    model = make_model("router")
    folder = save_checkpoint(model, tmp_path / "ckpt")
    meta = json.loads((folder / "scopebench.json").read_text())
    assert meta["prompt_template"] == "<image>{prompt} answer :"
    meta["prompt_template"] = "{prompt} answer :"  # what an earlier version wrote: images before all text
    (folder / "scopebench.json").write_text(json.dumps(meta))
    loaded = load_checkpoint(folder)
    assert loaded.cfg.prompt_template == "<image>{prompt} answer :"
    images, _, _ = _inputs(model)
    prompts = [CORPUS[0], CORPUS[-1], CORPUS[0]]
    assert loaded.generate(images, prompts).texts == model.generate(images, prompts).texts


def test_a_missing_shard_or_a_tensor_in_two_shards_is_named(make_model, tmp_path):
    folder = save_checkpoint(make_model("router"), tmp_path / "ckpt", max_shard_size="200KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    gone = shards[1].rename(tmp_path / shards[1].name)
    with pytest.raises(ScopebenchError, match=f"shard '{shards[1].name}' is listed but not in"):
        load_checkpoint(folder)
    gone.rename(shards[1])
    from safetensors import safe_open

    with safe_open(str(shards[0]), "pt") as f:
        name = next(iter(f.keys()))
        tensor = f.get_tensor(name)
    with safe_open(str(shards[1]), "pt") as f:
        rest = {k: f.get_tensor(k) for k in f.keys()}
    save_file({**rest, name: tensor}, str(shards[1]))
    with pytest.raises(ScopebenchError, match=f"tensor '{name}' is also in"):
        load_checkpoint(folder)


def test_integer_tensors_for_float_weights_are_refused(make_model, tmp_path):
    folder = save_checkpoint(make_model("router"), tmp_path / "ckpt")
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    first = sorted(state)[0]
    state[first] = state[first].to(torch.int32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ScopebenchError, match=f"tensor '{first}' holds torch.int32 values"):
        load_checkpoint(folder)


def _foreign_checkpoint(model, tmp_path: Path) -> tuple[Path, Path, Path]:
    """What another codebase leaves: an HF LLM folder, and its trained tensors under its own names."""
    llm = tmp_path / "llm"
    model.llm.save_pretrained(llm)
    model.tokenizer.save_pretrained(llm)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("llm.")}
    foreign = {("mm." + k[len("projectors."):] if k.startswith("projectors.") else "towers." + k): v
               for k, v in state.items()}
    weights = tmp_path / "trained.safetensors"
    save_file(foreign, str(weights))
    key_map = tmp_path / "keys.yaml"
    key_map.write_text(yaml.safe_dump([["^mm\\.(.*)$", "projectors.\\1"], ["^towers\\.(.*)$", "\\1"]]))
    return llm, weights, key_map


def _config_file(tmp_path: Path, llm: Path) -> Path:
    data = tiny_config_dict("router")
    data["llm"] = {"spec": "hf:./llm", "pretrained": "./llm"}
    path = tmp_path / "model.yaml"
    # unsorted: the routed encoders' order is the router's column order
    path.write_text(yaml.safe_dump({**data, "name": "assembled"}, sort_keys=False))
    return path


def _assemble(*args: str):
    return CliRunner().invoke(app, ["assemble", *args])


def test_assemble_reproduces_the_model_it_was_trained_as(make_model, tmp_path):
    model = make_model("router")
    llm, weights, key_map = _foreign_checkpoint(model, tmp_path)
    config = _config_file(tmp_path, llm)
    out = tmp_path / "ckpt"
    result = _assemble(str(config), "-o", str(out), "--weights", str(weights), "--key-map", str(key_map),
                       "--max-shard-size", "300KB")
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(out)
    images, ids, mask = _inputs(model)
    assert_same_forward(loaded, model(images, ids, mask), images, ids, mask)
    assert not json.loads((out / "scopebench.json").read_text()).get("untrained")
    model.tokenizer = loaded.tokenizer  # the checkpoint takes the tokenizer saved in the LLM's folder
    assert model.generate(images, CORPUS[:1] * 3).texts == loaded.generate(images, CORPUS[:1] * 3).texts


def test_assemble_takes_an_encoder_from_its_local_pretrained_weights(make_model, tmp_path):
    model = make_model("router")
    with torch.no_grad():  # trained away from the seeded init: a random init cannot match it
        for p in model.routed["conv"].parameters():
            p.add_(torch.randn_like(p) * 0.5)
    llm, weights, key_map = _foreign_checkpoint(model, tmp_path)
    save_file({k: v.contiguous() for k, v in model.routed["conv"].model.state_dict().items()},
              str(tmp_path / "convnext.safetensors"))  # the encoder as timm saves it
    from safetensors.torch import load_file

    without = tmp_path / "without-conv.safetensors"
    save_file({k: v for k, v in load_file(str(weights)).items() if not k.startswith("towers.routed.conv.")},
              str(without))
    data = yaml.safe_load(_config_file(tmp_path, llm).read_text())
    data["routed"]["conv"]["pretrained"] = "./convnext.safetensors"
    config = tmp_path / "with-pretrained.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "ckpt"
    result = _assemble(str(config), "-o", str(out), "--weights", str(without), "--key-map", str(key_map))
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(out)
    images, ids, mask = _inputs(model)
    assert_same_forward(loaded, model(images, ids, mask), images, ids, mask)
    assert torch.equal(loaded.routed["conv"].model.stem[0].weight, model.routed["conv"].model.stem[0].weight)


def test_assemble_refuses_what_nothing_supplies(make_model, tmp_path):
    model = make_model("router")
    llm, weights, key_map = _foreign_checkpoint(model, tmp_path)
    config = _config_file(tmp_path, llm)
    from safetensors.torch import load_file

    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in load_file(str(weights)).items() if "router" not in k}, str(partial))
    out = tmp_path / "ckpt"
    result = _assemble(str(config), "-o", str(out), "--weights", str(partial), "--key-map", str(key_map))
    assert result.exit_code == 2
    assert "supplied by neither a pretrained component nor --weights" in result.output
    assert "towers.router" not in result.output and "router." in result.output
    assert not out.exists() and not list(tmp_path.glob(".ckpt*")), "a half-written checkpoint was left"
    random = _assemble(str(config), "-o", str(out), "--weights", str(partial), "--key-map", str(key_map),
                       "--allow-random")
    assert random.exit_code == 0, random.output
    assert json.loads((out / "scopebench.json").read_text())["untrained"] is True
    bad_map = tmp_path / "bad.yaml"
    bad_map.write_text(yaml.safe_dump([["^nothing\\.(.*)$", "\\1"]]))
    result = _assemble(str(config), "-o", str(tmp_path / "x"), "--weights", str(weights),
                       "--key-map", str(bad_map))
    assert result.exit_code == 2 and "rule 1: pattern '^nothing\\.(.*)$' matches no tensor" in result.output
    wrong = tmp_path / "wrong.safetensors"
    save_file({**load_file(str(weights)), "mm.shared.0.weight": torch.zeros(3, 3)}, str(wrong))
    result = _assemble(str(config), "-o", str(tmp_path / "y"), "--weights", str(wrong),
                       "--key-map", str(key_map))
    shape = "tensor 'mm.shared.0.weight' (as 'projectors.shared.0.weight') has shape (3, 3)"
    assert result.exit_code == 2 and shape in " ".join(result.output.split())


def test_eval_refuses_a_preset_and_points_to_assemble():
    result = CliRunner().invoke(app, ["eval", "scope-paper", "--limit", "1"])
    assert result.exit_code == 2 and "scopebench assemble" in result.output


def test_device_map_for_the_paper_preset():
    from scopebench.models.build import build_model
    from scopebench.models.placement import device_map
    from scopebench.models.registry import resolve

    model = build_model(resolve("scope-paper").config, meta=True)
    gib = 2**30
    fits = device_map(model, {0: 80 * gib, 1: 80 * gib}, torch.bfloat16)
    assert set(fits.values()) == {0}, "a 10 B model in bf16 fits one 80 GB GPU"
    split = device_map(model, {0: 8 * gib, 1: 8 * gib, 2: 8 * gib, 3: 8 * gib}, torch.bfloat16)
    assert {split[n] for n in ("shared", "routed", "projectors", "router")} == {0}
    assert split.get("llm.model.embed_tokens", split.get("llm.model")) == 0
    layers = {k: v for k, v in split.items() if k.startswith("llm.model.layers.")}
    assert set(layers.values()) >= {1, 2}
    assert all(k.count(".") == 3 for k in layers), "a decoder layer was split"
    with pytest.raises(ScopebenchError, match="the encoders, projectors and router alone need"):
        device_map(model, {0: 1 * gib, 1: 80 * gib}, torch.bfloat16)


def test_a_cpu_model_split_across_cpu_and_disk_answers_the_same(make_model, tmp_path):
    from scopebench.models.placement import place

    model = make_model("router")
    images, ids, mask = _inputs(model)
    want = model(images, ids, mask).logits
    answers = model.generate(images, CORPUS[:1] * 3).texts
    from accelerate.utils import compute_module_sizes

    sizes = compute_module_sizes(model)
    budget = sizes[""] - sizes["llm"] // 2  # the vision side and half the LLM; the rest goes to disk
    split = place(make_model("router"), {"cpu": budget}, "cpu", offload_dir=tmp_path / "offload")
    assert "disk" in set(split.hf_device_map.values())
    assert torch.allclose(split(images, ids, mask).logits, want, atol=1e-5)
    assert split.generate(images, CORPUS[:1] * 3).texts == answers


def test_eval_in_bfloat16_on_the_cpu(tmp_path):
    run = tmp_path / "run"
    args = ["eval", "demo-scope", "--tasks", "c16mini_gqa", "--limit", "4", "--output", str(run)]
    result = CliRunner().invoke(app, [*args, "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["models"]["demo-scope"]["dtype"] == "bfloat16"
    done = json.loads((run / "parts/demo-scope/c16mini_gqa/done").read_text())
    assert done["settings"]["dtype"] == "bfloat16" and done["n"] == 4
    again = CliRunner().invoke(app, args)  # auto: float32 on the CPU, another fingerprint
    assert again.exit_code == 2 and "it ran in bfloat16, this run in float32" in again.output
    bad = CliRunner().invoke(app, [*args, "--dtype", "int8"])
    assert bad.exit_code == 2 and "--dtype must be one of auto, float32, bfloat16, float16" in bad.output


def test_lean_loading_of_an_encoder_with_real_buffers(tokenizer, tmp_path):
    """DINOv3 keeps rotary buffers outside its weights: the meta build measures its output shape with them."""
    from scopebench.config import config_from_dict
    from scopebench.models.build import build_model

    data = tiny_config_dict("router", vocab=len(tokenizer))
    data["routed"] = {"dino": {"spec": "hf:tiny-dinov3", "image_size": 32, "config": {
        "model_type": "dinov3_vit", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "patch_size": 8, "num_register_tokens": 2, "image_size": 32}},
        "conv": data["routed"]["conv"]}
    model = build_model(config_from_dict(data, "tiny"), tokenizer=tokenizer)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))
    images, ids, mask = _inputs(model)
    assert_same_forward(loaded, model(images, ids, mask), images, ids, mask)
