"""What a model config may pass to the libraries that build it: architecture keys only.

Plain data and checks (no torch), shared by the config loader (``scopebench.config``) and the
builders (``encoders``, ``build``): an encoder's ``overrides`` may hold only architecture fields of
its library, and a transformers config (inline or a local ``config.json``) no key that makes
transformers load code or files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scopebench.errors import ScopebenchError

# Override keys an encoder config may pass to its library: architecture fields only (of timm's
# VisionTransformer / ConvNeXt, open_clip's CLIP / CLIPVisionCfg / CLIPTextCfg, and the transformers
# vision configs scopebench builds). Keys that name or load weights, files or code never pass.
_OPEN_CLIP_BLOCK = ("block_type", "qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner",
                    "scale_attn", "scale_fc", "layers", "width", "mlp_ratio", "ls_init_value",
                    "final_ln_after_pool", "pool_type", "output_tokens")  # in both towers
OVERRIDE_KEYS = {
    "timm": frozenset({
        "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "qk_norm", "proj_bias",
        "init_values", "class_token", "pos_embed", "no_embed_class", "reg_tokens", "pre_norm", "final_norm",
        "fc_norm", "dynamic_img_size", "dynamic_img_pad", "drop_rate", "pos_drop_rate", "patch_drop_rate",
        "proj_drop_rate", "attn_drop_rate", "drop_path_rate", "depths", "dims", "kernel_sizes",
        "ls_init_value", "stem_type", "conv_mlp", "conv_bias", "use_grn", "norm_eps", "output_stride",
    }),
    "open_clip": frozenset({"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text",
                            "init_logit_scale", "init_logit_bias", "nonscalar_logit_scale"}),
    "open_clip.vision_cfg": frozenset({
        *_OPEN_CLIP_BLOCK, "head_width", "patch_size", "image_size", "patch_dropout", "attentional_pool",
        "attn_pooler_queries", "attn_pooler_heads", "no_ln_pre", "pos_embed_type", "timm_model_name",
        "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop", "timm_drop_path",
    }),
    "open_clip.text_cfg": frozenset({
        *_OPEN_CLIP_BLOCK, "context_length", "vocab_size", "heads", "embed_cls", "pad_id", "eos_id",
        "no_causal_mask", "proj_bias", "proj_type",
    }),
    "hf": frozenset({
        "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
        "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout",
        "initializer_range", "initializer_factor", "vision_use_head", "mlp_ratio", "hidden_dropout_prob",
        "attention_probs_dropout_prob", "qkv_bias", "layerscale_value", "drop_path_rate", "use_swiglu_ffn",
        "use_mask_token", "rope_theta", "query_bias", "key_bias", "value_bias", "proj_bias", "mlp_bias",
        "use_gated_mlp", "num_register_tokens", "pos_embed_shift", "pos_embed_jitter", "pos_embed_rescale",
        "depth", "num_heads", "in_channels", "spatial_merge_size", "temporal_patch_size", "tokens_per_second",
        "window_size", "out_hidden_size", "fullatt_block_indexes",
    }),
}
# Keys the libraries read to find weights, files or code: the error says so.
LOADING_KEYS = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path",
    "cache_dir", "pretrained_image", "pretrained_text", "pretrained_image_path", "pretrained_text_path",
    "load_weights", "weights_only", "require_pretrained", "timm_model_pretrained", "hf_model_name",
    "hf_model_pretrained", "hf_tokenizer_name", "tokenizer_kwargs", "file", "url", "hf_hub_id", "jit",
})
# transformers config keys that make it import code or read other files (remote code, hub kernels,
# quantizers): refused at any depth of an inline `config:`.
TRANSFORMERS_LOADING_KEYS = frozenset({"auto_map", "trust_remote_code", "quantization_config",
                                       "custom_pipelines"})
# Kernel choices: transformers' own implementations are data, any other value names a hub kernel (code).
KERNEL_KEYS = frozenset({
    "attn_implementation", "_attn_implementation", "_attn_implementation_internal", "experts_implementation",
    "_experts_implementation", "_experts_implementation_internal",
})
BUILTIN_KERNELS = frozenset({None, "eager", "sdpa", "flash_attention_2", "flash_attention_3",
                             "flex_attention",
                             "grouped_mm", "batched_mm"})


def check_overrides(source: str, overrides: dict[str, Any], where: str) -> None:
    """Refuse an override key that is not an architecture field of ``source`` (``where``: file and field)."""
    if not isinstance(overrides, dict):
        raise ScopebenchError(f"{where}: overrides must be a mapping, got {type(overrides).__name__}")
    allowed = OVERRIDE_KEYS.get(source, frozenset())
    for key, value in overrides.items():
        if key not in allowed:
            why = "loads weights or code" if key in LOADING_KEYS else "is not a known architecture key"
            raise ScopebenchError(f"{where}: '{key}' {why}; only architecture keys are allowed "
                                  f"({', '.join(sorted(allowed)) or 'none'})")
        if f"{source}.{key}" in OVERRIDE_KEYS:  # an open_clip tower: its keys are checked too
            check_overrides(f"{source}.{key}", value, f"{where}.{key}")
        if key == "timm_model_name" and (not isinstance(value, str) or ":" in value):
            raise ScopebenchError(f"{where}: timm_model_name must be a timm model name, not {value!r}")


def check_config_file(folder: Path, allow: frozenset[str] = frozenset()) -> None:
    """Refuse a local model folder whose config.json makes transformers load code or files."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ScopebenchError(f"{path}: not readable JSON ({type(err).__name__}); replace it") from None
    check_transformers_config(data, str(path), allow)


def check_transformers_config(data: Any, where: str, allow: frozenset[str] = frozenset()) -> None:
    """Refuse a key, at any depth of a transformers config, that makes transformers load code or files."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in TRANSFORMERS_LOADING_KEYS and key not in allow:
                raise ScopebenchError(f"{where}: '{key}' makes transformers load code or files; "
                                      "give architecture fields only")
            kernels = value.values() if isinstance(value, dict) else [value]
            if key in KERNEL_KEYS and not all(isinstance(k, str | None) and k in BUILTIN_KERNELS
                                              for k in kernels):
                raise ScopebenchError(f"{where}: '{key}' {value!r} names a kernel transformers would load "
                                      "as code; "
                                      f"use one of {', '.join(sorted(k for k in BUILTIN_KERNELS if k))}")
            check_transformers_config(value, f"{where}.{key}", allow)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_transformers_config(value, f"{where}[{i}]", allow)
