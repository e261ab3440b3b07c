"""`scopebench assemble`: a scopebench checkpoint from a model trained elsewhere.

The config (a YAML file, or a preset name) names the pretrained components by local folder: an HF LLM
folder (``llm.pretrained``) and encoders with local safetensors weights (``pretrained:``). ``--weights``
supplies the trained tensors (projectors, router, a fine-tuned LLM or encoder) from another codebase's
safetensors files, renamed by a key map: ordered regex rules, the first rule that matches a name
rewrites it (``re.sub``), an empty replacement drops the tensor. Whatever neither source supplies is
refused, by name, unless ``allow_random`` (the checkpoint's config then says ``untrained: true``).

    # key map: a list of [pattern, replacement] pairs (or a mapping), tried in order
    - ['^model\\.mm_projector\\.0\\.(.*)$', 'projectors.shared.0.\\1']
    - ['^model\\.mm_projector\\.2\\.(.*)$', 'projectors.shared.2.\\1']
    - ['^lm_head\\.(.*)$', 'llm.lm_head.\\1']
    - ['^vision_tower\\..*$', '']
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from scopebench.config import ModelConfig, config_from_dict
from scopebench.errors import ScopebenchError
from scopebench.models.weights import DTYPES


@dataclass(frozen=True)
class KeyRule:
    pattern: re.Pattern
    replacement: str
    where: str  # "FILE: rule N"


def read_key_map(path: Path) -> list[KeyRule]:
    """The ordered rename rules of a key-map YAML file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScopebenchError(f"{path}: key map not found; pass an existing YAML file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ScopebenchError(f"{path}: not valid YAML ({type(err).__name__}); fix the file") from None
    pairs = list(data.items()) if isinstance(data, dict) else data
    if not isinstance(pairs, list) or not pairs:
        raise ScopebenchError(f"{path}: a key map is a non-empty list of [pattern, replacement] pairs")
    rules = []
    for i, pair in enumerate(pairs, start=1):
        where = f"{path}: rule {i}"
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ScopebenchError(f"{where}: must be [pattern, replacement] (two strings), got {pair!r}")
        try:
            rules.append(KeyRule(re.compile(pair[0]), pair[1], where))
        except re.error as err:
            raise ScopebenchError(f"{where}: pattern {pair[0]!r} is not a regular expression "
                                  f"({err})") from None
    return rules


def rename(names: list[str], rules: list[KeyRule]) -> dict[str, str]:
    """Source name -> model name ('' = dropped) by the first matching rule; names no rule matches keep
    their name. A rule that matches no name at all is refused (a typo would silently do nothing)."""
    out, used = {}, set()
    for name in names:
        for rule in rules:
            if rule.pattern.search(name):
                out[name] = rule.pattern.sub(rule.replacement, name, count=1)
                used.add(rule.where)
                break
        else:
            out[name] = name
    unused = [r for r in rules if r.where not in used]
    if unused:
        raise ScopebenchError(f"{unused[0].where}: pattern '{unused[0].pattern.pattern}' matches no tensor "
                              f"of the --weights files; fix or remove the rule")
    return out


def load_config(config: str) -> ModelConfig:
    """A model config YAML file (paths relative to it) or a preset name."""
    from scopebench.models.registry import load_preset, preset_files

    path = Path(config)
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ScopebenchError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ScopebenchError(f"{path}: not valid YAML ({type(err).__name__}); fix the file") from None
        return config_from_dict(data, str(path), base=path.parent)
    if config in preset_files():
        return load_preset(config)
    raise ScopebenchError(f"unknown config '{config}': give a model config YAML file or a preset "
                          f"({', '.join(preset_files())})")


def pretrained_prefixes(cfg: ModelConfig) -> list[str]:
    """Tensor-name prefixes that the config's pretrained components supply."""
    out = ["llm."] if cfg.llm.pretrained else []
    out += ["shared."] if cfg.shared.pretrained else []
    return out + [f"routed.{n}." for n, e in cfg.routed.items() if e.pretrained]


def assemble(config: str, output: Path, weights: list[Path], key_map: Path | None = None,
             dtype: str = "float32", max_shard_size: str = "5GB", allow_random: bool = False) -> dict:
    """Build the model, fill it from the pretrained components and ``weights``, write the checkpoint
    (into a temp folder beside ``output``, renamed at the end). Returns what it did, for the CLI."""
    from accelerate.utils import find_tied_parameters

    from scopebench.models.build import build_model, llm_tokenizer
    from scopebench.models.checkpoint import save_checkpoint
    from scopebench.models.weights import read_weights

    if dtype not in DTYPES:
        raise ScopebenchError(f"--dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ScopebenchError(f"{output}: exists and is not an empty folder; choose a new --output")
    cfg = load_config(config)
    rules = read_key_map(key_map) if key_map else []
    sources = {}  # source tensor -> (model name, file)
    state = {}
    for f in weights:
        tensors = read_weights(f)
        for src, name in rename(sorted(tensors), rules).items():
            if name:
                if name in state:
                    raise ScopebenchError(f"{f}: tensor '{src}' becomes '{name}', which "
                                          f"{sources[name][1]} also supplies; give each tensor once")
                state[name], sources[name] = tensors[src], (src, f)
    default = torch.get_default_dtype()
    # random init in the target dtype: no float32 copy of a large model
    torch.set_default_dtype(DTYPES[dtype])
    try:
        model = build_model(cfg, tokenizer=llm_tokenizer(cfg.llm))
    finally:
        torch.set_default_dtype(default)
    expected = model.state_dict()
    for name, tensor in state.items():
        src, f = sources[name]
        if name not in expected:
            raise ScopebenchError(f"{f}: tensor '{src}' (as '{name}') is not in the model built from "
                                  f"{config}; map it with --key-map (an empty replacement drops it)")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ScopebenchError(f"{f}: tensor '{src}' (as '{name}') has shape {tuple(tensor.shape)} but "
                                  f"the config gives {tuple(expected[name].shape)}")
    prefixes = pretrained_prefixes(cfg)
    tied = {n for group in find_tied_parameters(model) if any(g in state for g in group) for n in group}
    random = sorted(n for n in expected
                    if n not in state and n not in tied and not n.startswith(tuple(prefixes)))
    if random and not allow_random:
        shown = ", ".join(random[:4]) + (", ..." if len(random) > 4 else "")
        raise ScopebenchError(
            f"{len(random)} tensors are supplied by neither a pretrained component nor --weights ({shown}); "
            "pass them with --weights (and --key-map), or --allow-random for a random-init checkpoint "
            "(tests, benchmarks)")
    with torch.no_grad():
        for name, tensor in state.items():
            expected[name].copy_(tensor)
    model = model.to(DTYPES[dtype])
    if random:
        model.cfg = dataclasses.replace(model.cfg, untrained=True)
    save_checkpoint(model, output, max_shard_size=max_shard_size)
    return {"output": str(output), "tensors": len(expected), "from_weights": len(state),
            "from_pretrained": prefixes, "random": len(random), "dtype": dtype,
            "parameters": sum(p.numel() for p in model.parameters())}
