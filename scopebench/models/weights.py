"""A checkpoint's weights as safetensors: one ``model.safetensors``, or Hugging Face shards
(``model-00001-of-0000N.safetensors`` and ``model.safetensors.index.json`` with its ``weight_map``).

Loading is lean: the model is built on the meta device (its non-persistent buffers, such as encoder
mean / std and rotary ``inv_freq``, stay real), then every parameter is assigned the tensor read from
the file, in the file's dtype (``load_state_dict(assign=True)``): no random initialisation, no float32
copy, and the file's pages are read as the tensors are used.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from scopebench.errors import ScopebenchError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD_PATTERN = "model{suffix}.safetensors"


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: its shards (by the index) or its one weights file."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            assert isinstance(weight_map, dict) and weight_map
            assert all(isinstance(v, str) for v in weight_map.values())
        except (ValueError, KeyError, TypeError, AssertionError, UnicodeDecodeError):
            raise ScopebenchError(f"{index}: not a shard index (a JSON object whose 'weight_map' maps tensor "
                                  f"names to shard files); re-save the checkpoint") from None
        files = [folder / name for name in sorted(set(weight_map.values()))]
        for f in files:
            if Path(f.name) != Path(f.relative_to(folder)) or not f.is_file():
                raise ScopebenchError(f"{index}: shard '{f.relative_to(folder)}' is listed but not in "
                                      f"{folder}; copy every shard into the checkpoint folder")
        return files
    single = folder / WEIGHTS_FILE
    if not single.exists():
        raise ScopebenchError(f"{single}: weights file missing (nor a sharded {INDEX_FILE}); "
                              "copy it into the checkpoint folder")
    return [single]


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (or of one safetensors file) by name, read through safetensors'
    memory map (no pickle)."""
    from safetensors import SafetensorError, safe_open

    tensors: dict[str, torch.Tensor] = {}
    where: dict[str, Path] = {}
    path = Path(path)
    if not path.exists():
        raise ScopebenchError(f"{path}: not found; pass a safetensors file or a checkpoint folder")
    for f in [path] if path.is_file() else weight_files(path):
        try:
            with safe_open(str(f), framework="pt", device="cpu") as handle:
                for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                    if name in where:
                        raise ScopebenchError(f"{f}: tensor '{name}' is also in {where[name]}; a tensor "
                                              f"belongs to one shard: re-save the checkpoint")
                    where[name] = f
                    tensors[name] = handle.get_tensor(name)
        except (SafetensorError, OSError, ValueError) as err:
            raise ScopebenchError(f"{f}: corrupt safetensors file ({err}); re-download or re-save the "
                                  "checkpoint") from None
    return tensors


SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                      "F64": torch.float64}


def stored_dtype(folder: Path) -> torch.dtype:
    """The dtype a checkpoint's floating-point weights are stored in (read from a shard's header only)."""
    from safetensors import safe_open

    with safe_open(str(weight_files(folder)[0]), framework="pt", device="cpu") as handle:
        for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
            kind = handle.get_slice(name).get_dtype()
            if kind in SAFETENSORS_DTYPES:
                return SAFETENSORS_DTYPES[kind]
    return torch.float32


def assign_weights(model: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Give a model built on the meta device its weights, after checking that the names and shapes match
    what its config builds, and that floating-point parameters get floating-point tensors. Tied weights
    (saved once) are tied again."""
    from accelerate.utils import find_tied_parameters, retie_parameters

    expected = model.state_dict()
    tied = find_tied_parameters(model)
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ScopebenchError(f"{where}: unexpected tensor '{unexpected[0]}' (not in the model built from "
                              f"its config); the config and weights do not match")
    saved_once = {name for group in tied if any(n in state for n in group) for name in group}
    missing = sorted(set(expected) - set(state) - saved_once)
    if missing:
        raise ScopebenchError(f"{where}: missing tensor '{missing[0]}' ({len(missing)} in all); the "
                              f"checkpoint is incomplete")
    for name, tensor in state.items():
        want = expected[name]
        if tuple(tensor.shape) != tuple(want.shape):
            raise ScopebenchError(f"{where}: tensor '{name}' has shape {tuple(tensor.shape)} but the config "
                                  f"gives {tuple(want.shape)}")
        if want.is_floating_point() and not tensor.is_floating_point():
            raise ScopebenchError(f"{where}: tensor '{name}' holds {tensor.dtype} values where the model has "
                                  f"floating-point weights; re-save the checkpoint from the trained model")
    model.load_state_dict(state, strict=False, assign=True)
    retie_parameters(model, tied)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    empty = next((n for n, t in tensors if t.device.type == "meta"), None)
    if empty is not None:
        raise ScopebenchError(f"{where}: '{empty}' has no value after loading (a buffer its library does not "
                              f"save); report this model family to scopebench")


def save_weights(model: nn.Module, folder: Path, max_shard_size: int | str = "5GB") -> None:
    """Write a model's weights into ``folder``: one file, or shards with an index above ``max_shard_size``
    (huggingface_hub's writer: tied tensors saved once)."""
    from huggingface_hub import save_torch_state_dict

    save_torch_state_dict(model.state_dict(), folder, filename_pattern=SHARD_PATTERN,
                          max_shard_size=max_shard_size, metadata={"scopebench": "1"})
