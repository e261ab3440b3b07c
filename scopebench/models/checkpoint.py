"""The scopebench checkpoint format: a folder with

    scopebench.json       the full ModelConfig (the LLM's transformers config inlined)
    model.safetensors     every weight of the MultiEncoderVLM
    tokenizer.json ...    the tokenizer files (transformers `save_pretrained`)

Only safetensors are read; nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from scopebench.config import ModelConfig, config_from_dict
from scopebench.errors import ScopebenchError
from scopebench.tables import atomic_write_text

CONFIG_FILE = "scopebench.json"
WEIGHTS_FILE = "model.safetensors"


def is_checkpoint(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).exists()


def save_checkpoint(model, folder: Path) -> Path:
    """Write config, weights and tokenizer; the LLM config is inlined so the folder is self-contained."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = model.cfg.to_dict()
    data["llm"]["config"] = model.llm.config.to_diff_dict() | {"model_type": model.llm.config.model_type}
    data["llm"]["pretrained"] = None
    for enc in [data["shared"], *data["routed"].values()]:
        enc["pretrained"] = None
    data.pop("variants", None)
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    save_model(model, str(tmp), metadata={"format": "pt", "scopebench": "1"})
    tmp.replace(folder / WEIGHTS_FILE)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(folder)
    atomic_write_text(folder / CONFIG_FILE, json.dumps(data, indent=2, sort_keys=False))
    return folder


def read_config(folder: Path) -> ModelConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise ScopebenchError(f"{folder}: no {CONFIG_FILE}; this is not a scopebench checkpoint folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ScopebenchError(f"{path}: not valid JSON (line {err.lineno}); "
                              "restore the file from the checkpoint") from None
    return config_from_dict(data, str(path), base=Path(folder))


def load_checkpoint(folder: Path, device: str = "cpu", trust_remote_code: bool = False):
    """Load a checkpoint folder into a MultiEncoderVLM (eval mode), checking every tensor."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from scopebench.models.build import build_model

    folder = Path(folder)
    cfg = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise ScopebenchError(f"{weights}: weights file missing; copy it into the checkpoint folder")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ScopebenchError(f"{weights}: corrupt safetensors file ({err}); "
                              "re-download or re-save the checkpoint") from None
    tokenizer = _load_tokenizer(folder)
    model = build_model(cfg, tokenizer=tokenizer, trust_remote_code=trust_remote_code)
    if tokenizer is not None:
        _check_vocab(tokenizer, model.llm.get_input_embeddings().num_embeddings, folder)
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ScopebenchError(f"{weights}: unexpected tensor '{unexpected[0]}' "
                              f"(not in the model built from {CONFIG_FILE}); "
                              f"the config and weights do not match")
    missing = sorted(k for k in set(expected) - set(state) if not _tied_to_loaded(model, k, state))
    if missing:
        raise ScopebenchError(f"{weights}: missing tensor '{missing[0]}' ({len(missing)} in all); "
                              "the checkpoint is incomplete")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ScopebenchError(
                f"{weights}: tensor '{k}' has shape {tuple(v.shape)} "
                f"but the config gives {tuple(expected[k].shape)}"
            )
    model.load_state_dict(state, strict=False)
    return model.to(device).eval()


def _tied_to_loaded(model: torch.nn.Module, name: str, state: dict) -> bool:
    """True when ``name`` shares storage with a tensor in ``state`` (tied weights are saved once)."""
    tensors = model.state_dict()
    ptr = tensors[name].data_ptr()
    return any(k in state for k, t in tensors.items() if k != name and t.data_ptr() == ptr)


def _load_tokenizer(folder: Path):
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer_config.json").exists():
        return None
    from transformers import AutoTokenizer

    path = folder / "tokenizer.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError):
            raise ScopebenchError(f"{path}: not valid JSON; re-save the checkpoint") from None
        if not isinstance(data, dict):
            raise ScopebenchError(f"{path}: holds a JSON {type(data).__name__}, not a tokenizer object; "
                                  "re-save the checkpoint with its tokenizer")
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as err:  # malformed tokenizer files raise KeyError, TypeError, AttributeError, ...
        if not path.exists():
            raise ScopebenchError(f"{path}: missing, and the other tokenizer files cannot be "
                                  "read without it; re-save the checkpoint with its tokenizer") from None
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ScopebenchError(f"{folder}: tokenizer files cannot be read ({type(err).__name__}: {first}); "
                              "re-save the checkpoint") from None


def _check_vocab(tokenizer, rows: int, folder: Path) -> None:
    """Refuse a tokenizer whose ids run past the LLM's embedding table (the first prompt would fail)."""
    size = max([*tokenizer.get_vocab().values(), len(tokenizer) - 1]) + 1
    if size > rows:
        raise ScopebenchError(f"{folder / 'tokenizer.json'}: the tokenizer has {size} token ids but the "
                              f"LLM's embedding table has {rows} (llm.config.vocab_size); "
                              "use the tokenizer the LLM was trained with")
