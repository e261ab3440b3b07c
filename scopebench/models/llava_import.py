"""`scopebench import llava-hf`: a transformers LLaVA folder (``LlavaForConditionalGeneration``) as a
scopebench Baseline-0 checkpoint.

The vision tower becomes the shared encoder (``hf:vision``, a folder inside the checkpoint holding its
config and the original image processor config), ``vision_feature_layer`` its feature layer (-1 last,
-2 penultimate), the select strategy ``default`` drops the class token, the projector ``linear_1 / gelu /
linear_2`` becomes ``mlp2x_gelu``, and the language model the LLM. The layout is what lmms-eval's
``llava_hf`` model feeds it: ``<image>\\n`` before the prompt in the user turn of the tokenizer's chat
template (or of the Vicuna template ``llava_hf`` falls back to), the tokenizer's special tokens on, MMMU's
``<image k>`` markers kept as text. The tensors are renamed by key-map rules and written by
``scopebench assemble``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from scopebench.config import IMAGE_PLACEHOLDER
from scopebench.errors import ScopebenchError
from scopebench.tables import TMP_SUFFIX

ARCHITECTURE = "LlavaForConditionalGeneration"
# lmms-eval's llava_hf: the prompt the tokenizer's chat template would make, when it has none (Vicuna v1)
VICUNA = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
          "helpful, detailed, and polite answers to the user's questions. USER: {user} ASSISTANT:")
# LLaVA tensor names -> scopebench's: transformers 5 ("model.language_model.") and earlier ("language_model.")
RULES = {
    "model.": [("^model\\.vision_tower\\.(.*)$", "shared.model.\\1"),
               ("^model\\.multi_modal_projector\\.linear_1\\.(.*)$", "projectors.shared.0.\\1"),
               ("^model\\.multi_modal_projector\\.linear_2\\.(.*)$", "projectors.shared.2.\\1"),
               ("^model\\.language_model\\.(.*)$", "llm.model.\\1"),
               ("^lm_head\\.(.*)$", "llm.lm_head.\\1")],
    "": [("^vision_tower\\.(.*)$", "shared.model.\\1"),
         ("^multi_modal_projector\\.linear_1\\.(.*)$", "projectors.shared.0.\\1"),
         ("^multi_modal_projector\\.linear_2\\.(.*)$", "projectors.shared.2.\\1"),
         ("^language_model\\.model\\.(.*)$", "llm.model.\\1"),
         ("^language_model\\.lm_head\\.(.*)$", "llm.lm_head.\\1")],
}


def read_llava(folder: Path) -> dict:
    """The LLaVA folder's config.json, checked to be a LLaVA the import can convert."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ScopebenchError(f"{path}: missing or unreadable ({type(err).__name__}); "
                              "point at a transformers LLaVA folder") from None
    found = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(found, list) or ARCHITECTURE not in found:
        raise ScopebenchError(f"{path}: architectures is {found!r}, not [{ARCHITECTURE!r}]; "
                              "scopebench imports LLaVA (llava-hf) folders only")
    return config


def _vision(config, path: Path) -> tuple[str, bool]:
    """(feature_layer, drop_cls) from the LLaVA config."""
    layers = config.vision_config.num_hidden_layers
    layer = config.vision_feature_layer
    if isinstance(layer, int) and layer >= 0:
        layer -= layers + 1  # hidden_states holds the embeddings and every layer
    names = {-1: "last", -2: "penultimate"}
    if layer not in names:
        raise ScopebenchError(f"{path}: vision_feature_layer {config.vision_feature_layer!r} is not the last "
                              "(-1) or penultimate (-2) layer, the two scopebench encoders give")
    strategy = config.vision_feature_select_strategy
    if strategy not in ("default", "full"):
        raise ScopebenchError(f"{path}: vision_feature_select_strategy {strategy!r} is not default or full")
    if config.vision_config.model_type != "clip_vision_model":
        raise ScopebenchError(f"{path}: vision tower {config.vision_config.model_type!r}: the import takes "
                              "CLIP towers (clip_vision_model)")
    bias = getattr(config, "multimodal_projector_bias", True)
    if config.projector_hidden_act != "gelu" or not bias:
        raise ScopebenchError(f"{path}: projector {config.projector_hidden_act!r} (bias {bias}): "
                              "scopebench's mlp2x_gelu is linear, exact gelu, linear, with biases")
    return names[layer], strategy == "default"


def _image_processor(folder: Path):
    """The folder's image processor and (aspect, size) as scopebench's encoder takes them."""
    from transformers import AutoImageProcessor

    # transformers 5 saves it in processor_config.json ("image_processor"), earlier ones on its own
    names = ("preprocessor_config.json", "processor_config.json")
    path = next((folder / n for n in names if (folder / n).exists()), folder / names[0])
    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get("image_processor", data), dict):
            raise ValueError("no image processor")
        proc = AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, AttributeError) as err:
        raise ScopebenchError(f"{path}: the image processor config is missing or unreadable "
                              f"({type(err).__name__}); copy {' or '.join(names)} from the model's "
                              "release") from None
    size, crop = dict(proc.size or {}), dict(getattr(proc, "crop_size", None) or {})
    if getattr(proc, "do_center_crop", False):
        side = crop.get("height")
        if crop.get("width") != side or size.get("shortest_edge") != side:
            raise ScopebenchError(f"{path}: resize to {size} then crop to {crop}: scopebench crops a "
                                  "square at the resized shortest side")
        return proc, ("pad" if getattr(proc, "do_pad", False) else "crop"), int(side)
    if size.get("height") is None or size.get("height") != size.get("width"):
        raise ScopebenchError(f"{path}: size {size}: scopebench resizes to a square")
    return proc, ("pad" if getattr(proc, "do_pad", False) else "squash"), int(size["height"])


def import_llava(folder: Path, output: Path, dtype: str = "float32", max_shard_size: str = "5GB") -> dict:
    """Convert a LLaVA folder into a Baseline-0 checkpoint at ``output`` (written whole, then renamed)."""
    from transformers import AutoConfig, AutoTokenizer

    from scopebench.models.allowlist import check_config_file
    from scopebench.models.assemble import assemble
    from scopebench.models.checkpoint import CONFIG_FILE

    folder, output = Path(folder), Path(output)
    read_llava(folder)
    check_config_file(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    feature_layer, drop_cls = _vision(config, folder / "config.json")
    proc, aspect, side = _image_processor(folder)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ScopebenchError(f"{folder}: no .safetensors weights; scopebench reads safetensors only")
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if IMAGE_PLACEHOLDER not in tok.get_added_vocab():
        raise ScopebenchError(f"{folder}: the tokenizer has no '{IMAGE_PLACEHOLDER}' token, where LLaVA's "
                              "processor puts the image")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ScopebenchError(f"{output}: exists and is not an empty folder; choose a new --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=TMP_SUFFIX))
    try:
        vision, llm = stage / "vision", stage / "llm"
        config.vision_config.save_pretrained(vision)
        proc.save_pretrained(vision)
        tok.save_pretrained(llm)
        chat = tok.chat_template is not None
        text = config.text_config
        model_cfg = {
            "name": folder.name,
            "description": f"imported from the transformers LLaVA folder {folder.name} (scopebench import)",
            "llm": {"spec": f"hf:{llm}", "config": text.to_diff_dict() | {"model_type": text.model_type}},
            "shared": {"spec": "hf:vision", "image_size": side, "feature_layer": feature_layer,
                       "drop_cls": drop_cls, "aspect": aspect},
            "projector": "mlp2x_gelu", "fusion": "sequence", "policy": "shared_only",
            "prompt_template": f"{IMAGE_PLACEHOLDER}\n{{prompt}}" if chat
                               else VICUNA.format(user=f"{IMAGE_PLACEHOLDER}\n{{prompt}}"),
            "chat_template": chat, "interleave": False, "max_images": 1, "add_special_tokens": True,
        }
        (stage / "model.yaml").write_text(yaml.safe_dump(model_cfg, sort_keys=False))
        names = _tensor_names(weights)
        prefix = "model." if any(n.startswith("model.language_model.") for n in names) else ""
        rules = [r for r in RULES[prefix] if any(re.search(r[0], n) for n in names)]
        (stage / "keys.yaml").write_text(yaml.safe_dump([list(r) for r in rules]))
        done = assemble(str(stage / "model.yaml"), stage / "ckpt", weights, stage / "keys.yaml", dtype=dtype,
                        max_shard_size=max_shard_size)
        ckpt = stage / "ckpt"
        shutil.move(str(vision), ckpt / "vision")
        data = json.loads((ckpt / CONFIG_FILE).read_text())
        data["shared"]["spec"] = "hf:vision"  # inside the checkpoint, relative to it
        data["llm"]["spec"] = f"hf:{folder.name}"  # a name: the LLM's config is inline
        (ckpt / CONFIG_FILE).write_text(json.dumps(data, indent=2))
        ckpt.rename(output)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {**done, "output": str(output), "source": str(folder), "feature_layer": feature_layer,
            "drop_cls": drop_cls, "aspect": aspect, "image_size": side, "chat_template": chat}


def _tensor_names(files: list[Path]) -> list[str]:
    from safetensors import safe_open

    names = []
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            names += list(handle.keys())
    return names
