"""Untrusted model configs: no unpickling, no weight-loading keys, paths relative to the config's folder."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.config import config_from_dict
from scopebench.errors import ScopebenchError
from scopebench.models.checkpoint import read_config, save_checkpoint
from scopebench.models.encoders import EncoderConfig, create_encoder
from tests.conftest import tiny_config_dict


class _Payload:
    """Unpickling this writes ``marker``: the stand-in for code run from a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.fixture
def evil(tmp_path):
    """(a .pth file that writes ``marker`` when unpickled, marker), checked to be live."""
    pth, marker = tmp_path / "evil.pth", tmp_path / "PWNED"
    torch.save({"state_dict": _Payload(marker)}, pth)
    torch.load(pth, weights_only=False)
    assert marker.exists(), "the payload must really run when unpickled"
    marker.unlink()
    return pth, marker


@pytest.fixture
def no_unpickling(monkeypatch):
    """Spy on every unpickler entry point; the list holds the name of each one called."""
    calls = []
    for owner, name in [(torch, "load"), (torch.serialization, "load"), (pickle, "load"), (pickle, "loads")]:
        real = getattr(owner, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    return calls


def _one_line(result, *parts):
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line, result.output
    for part in parts:
        assert part in line, line
    return line


def _flops(ckpt: Path):
    return CliRunner().invoke(app, ["flops", str(ckpt), "--json"])


@pytest.fixture
def checkpoint(tmp_path, make_model):
    """A saved tiny checkpoint and a function that rewrites its scopebench.json."""
    ckpt = save_checkpoint(make_model("router"), tmp_path / "ckpt")

    def edit(change):
        data = json.loads((ckpt / "scopebench.json").read_text())
        change(data)
        (ckpt / "scopebench.json").write_text(json.dumps(data))
        return ckpt

    return edit


# ---- item 1: only architecture overrides reach the libraries --------------------------------------
HOSTILE = {
    "timm": ("shared", lambda pth: {"checkpoint_path": str(pth)}, "checkpoint_path"),
    "open_clip": ("routed.oclip", lambda pth: {"pretrained_image_path": str(pth), "weights_only": False},
                  "pretrained_image_path"),
    "open_clip-tower": ("routed.oclip", lambda pth: {"vision_cfg": {"timm_model_name": "convnext_atto",
                                                                    "timm_model_pretrained": True}},
                        "timm_model_pretrained"),
    "hf": ("routed.hfclip", lambda pth: {"pretrained_image_path": str(pth), "name_or_path": str(pth.parent)},
           "pretrained_image_path"),
}


def _section(data: dict, where: str) -> dict:
    return data["shared"] if where == "shared" else data["routed"][where.split(".", 1)[1]]


@pytest.mark.parametrize("source", list(HOSTILE))
def test_hostile_overrides_refused_by_create_encoder(source, evil, no_unpickling):
    pth, marker = evil
    where, overrides, key = HOSTILE[source]
    enc = dict(_section(tiny_config_dict(), where))
    enc["overrides"] = {**enc.get("overrides", {}), **overrides(pth)}
    with pytest.raises(ScopebenchError) as err:
        create_encoder(EncoderConfig(**enc))
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists() and no_unpickling == []


@pytest.mark.parametrize("source", list(HOSTILE))
def test_hostile_overrides_refused_by_cli(source, evil, no_unpickling, checkpoint):
    pth, marker = evil
    where, overrides, key = HOSTILE[source]
    ckpt = checkpoint(lambda d: _section(d, where).setdefault("overrides", {}).update(overrides(pth)))
    line = _one_line(_flops(ckpt), "scopebench.json", f"{where}.overrides", f"'{key}'")
    assert "only architecture keys are allowed" in line
    assert not marker.exists() and no_unpickling == []


def test_weights_in_pickles_are_refused(evil, no_unpickling, checkpoint, tmp_path):
    """``pretrained:`` pointing at a pickle (encoder file, LLM folder) is one line; nothing is unpickled."""
    pth, marker = evil
    for where in ("shared", "routed.oclip", "routed.hfclip"):
        enc = {**_section(tiny_config_dict(), where), "pretrained": str(pth)}
        with pytest.raises(ScopebenchError, match="not a .safetensors file"):
            create_encoder(EncoderConfig(**enc))
    llm_dir = tmp_path / "llm"
    llm_dir.mkdir()
    (llm_dir / "pytorch_model.bin").write_bytes(pth.read_bytes())
    ckpt = checkpoint(lambda d: d["llm"].update(pretrained=str(llm_dir)))
    _one_line(_flops(ckpt), "no .safetensors weights", str(llm_dir))
    assert not marker.exists() and no_unpickling == []


@pytest.mark.parametrize("key, value, why", [
    ("auto_map", {"AutoModelForCausalLM": "evil.Model"}, "load code or files"),
    ("attn_implementation", "kernels-community/evil", "names a kernel transformers would load as code"),
    ("quantization_config", {"quant_method": "bitsandbytes"}, "load code or files")])
def test_inline_transformers_config_loads_no_code(key, value, why, checkpoint):
    ckpt = checkpoint(lambda d: d["llm"]["config"].update({key: value}))
    _one_line(_flops(ckpt), "llm.config", f"'{key}'", why)
    ckpt = checkpoint(lambda d: d["routed"]["hfclip"]["config"].update({key: d["llm"]["config"].pop(key)}))
    _one_line(_flops(ckpt), "routed.hfclip.config", f"'{key}'")


def _clip_folder(folder: Path) -> Path:
    """A local transformers model folder (config.json) with the tiny config's CLIP architecture."""
    from transformers import CLIPVisionConfig

    fields = {k: v for k, v in tiny_config_dict()["routed"]["hfclip"]["config"].items() if k != "model_type"}
    CLIPVisionConfig(**fields).save_pretrained(folder)
    return folder


def test_local_config_json_loads_no_code(checkpoint, tmp_path):
    folder = _clip_folder(tmp_path / "ckpt" / "clip")
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "attn_implementation": "kernels-community/evil"}))
    ckpt = checkpoint(lambda d: d["routed"]["hfclip"].update(spec="hf:clip", config=None))
    _one_line(_flops(ckpt), f"{folder / 'config.json'}", "'attn_implementation'")


def test_a_saved_config_json_with_its_metadata_still_loads(checkpoint, tmp_path):
    """What transformers writes into a real config.json (its name, a built-in attention choice) is data."""
    folder = _clip_folder(tmp_path / "ckpt" / "clip")
    data = json.loads((folder / "config.json").read_text())
    extra = {"_name_or_path": "openai/clip-vit-base-patch32", "attn_implementation": "sdpa"}
    (folder / "config.json").write_text(json.dumps({**data, **extra}))
    ckpt = checkpoint(lambda d: d["routed"]["hfclip"].update(spec="hf:clip", config=None))
    result = _flops(ckpt)
    assert result.exit_code == 0, result.output


def test_allowed_override_keys_are_architecture_fields():
    """Every allowed key is an argument of the library's architecture, and none of them loads weights."""
    import dataclasses
    import inspect

    import open_clip.model as oc
    from timm.models.convnext import ConvNeXt
    from timm.models.vision_transformer import VisionTransformer
    from transformers import CLIPVisionConfig, Dinov2Config, DINOv3ViTConfig, SiglipVisionConfig
    from transformers import Qwen2_5_VLVisionConfig as QwenVisionConfig

    from scopebench.models.allowlist import LOADING_KEYS, OVERRIDE_KEYS

    def args(*objs):
        return {p for o in objs for p in inspect.signature(o).parameters}

    library = {
        "timm": args(VisionTransformer, ConvNeXt),
        "open_clip": args(oc.CLIP) | {"custom_text"},  # popped by open_clip.create_model
        "open_clip.vision_cfg": {f.name for f in dataclasses.fields(oc.CLIPVisionCfg)},
        "open_clip.text_cfg": {f.name for f in dataclasses.fields(oc.CLIPTextCfg)},
        "hf": args(CLIPVisionConfig, SiglipVisionConfig, Dinov2Config, DINOv3ViTConfig, QwenVisionConfig),
    }
    for source, keys in OVERRIDE_KEYS.items():
        assert keys <= library[source], (source, sorted(keys - library[source]))
        assert not keys & LOADING_KEYS


# ---- item 3: paths in a checkpoint config start at the checkpoint folder --------------------------
def test_relative_paths_resolve_against_the_checkpoint(checkpoint, tmp_path, monkeypatch):
    from scopebench.models.checkpoint import load_checkpoint

    ckpt = tmp_path / "ckpt"
    _clip_folder(tmp_path / "clip")
    checkpoint(lambda d: d["routed"]["hfclip"].update(spec="hf:../clip", config=None))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "ckpt").mkdir(parents=True)  # a decoy: the working directory must not be used
    monkeypatch.chdir(elsewhere)
    cfg = read_config(ckpt)
    assert cfg.routed["hfclip"].spec == f"hf:{(tmp_path / 'clip').resolve()}"
    assert load_checkpoint(ckpt).routed["hfclip"].image_size == 32


@pytest.mark.parametrize("where, change, field", [
    ("encoder folder", lambda d: d["routed"]["hfclip"].update(spec="hf:../missing", config=None),
     "routed.hfclip.spec"),
    ("encoder weights", lambda d: d["shared"].update(pretrained="weights.safetensors"), "shared.pretrained"),
    ("llm folder", lambda d: d["llm"].update(pretrained="llm"), "llm.pretrained"),
])
def test_missing_paths_name_the_field(where, change, field, checkpoint, tmp_path, monkeypatch):
    ckpt = checkpoint(change)
    (tmp_path / "llm").mkdir()
    (tmp_path / "weights.safetensors").write_bytes(b"")  # present in the working directory only
    monkeypatch.chdir(tmp_path)
    _one_line(_flops(ckpt), "ckpt/scopebench.json", field, "not found")


def test_absolute_system_paths_are_one_line(checkpoint):
    ckpt = checkpoint(lambda d: d["shared"].update(pretrained="/etc/passwd"))
    _one_line(_flops(ckpt), "not a .safetensors file")
    ckpt = checkpoint(lambda d: d["llm"].update(pretrained="/etc/passwd"))
    _one_line(_flops(ckpt), "llm.pretrained", "is not a folder")


def test_preset_paths_resolve_against_the_preset(tmp_path, monkeypatch):
    import yaml

    from scopebench.models import registry

    data = tiny_config_dict()
    data["shared"]["pretrained"] = "w/shared.safetensors"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "shared.safetensors").write_bytes(b"")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(registry, "preset_files", lambda: {"mine": tmp_path / "mine.yaml"})
    monkeypatch.chdir(tmp_path / "w")
    expected = (tmp_path / "w" / "shared.safetensors").resolve()
    assert registry.load_preset("mine").shared.pretrained == str(expected)


# ---- item 11: tokenizer files that do not fit -----------------------------------------------------
def test_tokenizer_json_list_is_one_line(checkpoint, tmp_path):
    ckpt = checkpoint(lambda d: None)
    (ckpt / "tokenizer.json").write_text("[]")
    _one_line(_flops(ckpt), f"{ckpt / 'tokenizer.json'}", "JSON list")
    (ckpt / "tokenizer.json").write_text("{}")
    _one_line(_flops(ckpt), "tokenizer files cannot be read")


def test_tokenizer_larger_than_the_embedding_table(tmp_path, tokenizer):
    from scopebench.models.build import build_model

    cfg = config_from_dict(tiny_config_dict(vocab=len(tokenizer) - 5), "tiny")
    ckpt = save_checkpoint(build_model(cfg, tokenizer=tokenizer), tmp_path / "ckpt")
    _one_line(_flops(ckpt), f"{ckpt / 'tokenizer.json'}", f"{len(tokenizer)} token ids",
              f"embedding table has {len(tokenizer) - 5}")
