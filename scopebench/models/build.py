"""The factory: ModelConfig -> MultiEncoderVLM (random init, on the meta device, or with local weights)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from scopebench.config import LLMConfig, ModelConfig
from scopebench.errors import ScopebenchError
from scopebench.models.allowlist import check_config_file, check_transformers_config


def llm_config(cfg: LLMConfig):
    """The transformers config of the LLM: inline, from a local folder, or from the hub."""
    from transformers import CONFIG_MAPPING

    from scopebench.hub import hub_config

    spec = cfg.spec.removeprefix("hf:")
    remote = frozenset({"auto_map"}) if cfg.trust_remote_code else frozenset()  # build_model gates that
    if cfg.config is not None:
        check_transformers_config(cfg.config, f"llm '{cfg.spec}': llm.config", remote)
        data = dict(cfg.config)
        model_type = data.pop("model_type", None)
        if model_type not in CONFIG_MAPPING:
            raise ScopebenchError(f"llm '{cfg.spec}': config.model_type '{model_type}' "
                                  "is not a transformers model type")
        try:
            return CONFIG_MAPPING[model_type](**data)
        except Exception as err:  # transformers validates the fields: a wrong type or value
            raise ScopebenchError(f"llm '{cfg.spec}': llm.config is not a valid {model_type} config: "
                                  f"{str(err).strip().splitlines()[0][:200]}; fix that field") from None
    if (Path(spec).expanduser() / "config.json").is_file():  # a local folder: transformers reads that file
        check_config_file(Path(spec).expanduser(), remote)
    try:
        return hub_config(spec, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):
        raise ScopebenchError(
            f"llm '{cfg.spec}': no config found locally and the hub is unreachable; pass a local folder "
            f"or give the architecture inline under llm.config"
        ) from None


def build_llm(cfg: LLMConfig):
    """A causal LM from its config (random init), or from local weights when ``pretrained`` is set."""
    from transformers import AutoModelForCausalLM

    hf = llm_config(cfg)
    if cfg.pretrained:
        path = Path(cfg.pretrained).expanduser()
        if not path.is_dir():
            raise ScopebenchError(f"llm '{cfg.spec}': pretrained folder {path} not found")
        if not any(path.glob("*.safetensors")):
            raise ScopebenchError(f"llm '{cfg.spec}': no .safetensors weights in {path}; "
                                  "only safetensors are loaded")
        return AutoModelForCausalLM.from_pretrained(
            path, config=hf, use_safetensors=True, trust_remote_code=cfg.trust_remote_code
        )
    return AutoModelForCausalLM.from_config(hf, trust_remote_code=cfg.trust_remote_code)


def llm_tokenizer(cfg: LLMConfig):
    """The tokenizer saved with a local LLM folder (``pretrained``, or an ``hf:`` folder), or None."""
    for folder in (cfg.pretrained, cfg.spec.removeprefix("hf:")):
        if folder and (Path(folder).expanduser() / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(Path(folder).expanduser(), trust_remote_code=False)
    return None


# in-place ops that change a tensor's shape or metadata: these still run on meta tensors
_SHAPING = frozenset({"resize_", "resize_as_", "set_", "as_strided_", "transpose_", "t_", "squeeze_",
                      "unsqueeze_", "swapdims_", "swapaxes_", "requires_grad_", "share_memory_"})


class SkipMetaInit(TorchFunctionMode):
    """Skip in-place writes (``uniform_``, ``trunc_normal_``, ``clamp_``, ``copy_`` ...) to meta tensors:
    they hold no data, so random init of a model built on the meta device is work for nothing (timm's
    trunc_normal_ alone is ~40% of an empty build). Real tensors, and shape-changing ops, run as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if (name.endswith("_") and not name.startswith("_") and name not in _SHAPING and args
                and isinstance(args[0], torch.Tensor) and args[0].is_meta):
            return args[0]
        return func(*args, **(kwargs or {}))


def build_model(cfg: ModelConfig, tokenizer=None, meta: bool = False, trust_remote_code: bool = False,
                empty: bool = False):
    """Build a MultiEncoderVLM. ``meta=True`` allocates no weights (for counting paper-scale models);
    ``empty=True`` puts the parameters on the meta device but keeps buffers real (encoder mean / std,
    rotary frequencies): what a checkpoint's weights are then assigned to, with no random init."""
    from accelerate import init_empty_weights

    from scopebench.models.vlm import MultiEncoderVLM

    if cfg.llm.trust_remote_code and not trust_remote_code:
        raise ScopebenchError(
            f"model '{cfg.name}': llm.trust_remote_code is set, and scopebench runs no code from model "
            "repositories; use an LLM whose model type transformers ships, or call "
            "build_model(..., trust_remote_code=True) from Python"
        )
    torch.manual_seed(cfg.seed)
    place = torch.device("meta") if meta else init_empty_weights(include_buffers=False) if empty else None
    with place or contextlib.nullcontext(), SkipMetaInit() if meta or empty else contextlib.nullcontext():
        return MultiEncoderVLM(cfg, build_llm(cfg.llm), tokenizer).eval()
