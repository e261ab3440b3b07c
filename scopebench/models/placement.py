"""One model over several devices (accelerate's big-model inference), for models that do not fit one.

accelerate computes the LLM's split (``infer_auto_device_map``, never splitting a decoder layer) and
places it (``dispatch_model``, which moves activations between devices). The vision side (shared and
routed encoders, projectors, router, token gate) stays whole on the device of the LLM's embedding
table, whose room is reserved first: the router reads the prompt's embeddings, and the visual tokens
enter the LLM there. Data parallelism stays ``accelerate launch``: N processes, each holding one model
over K devices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from scopebench.errors import ScopebenchError

if TYPE_CHECKING:
    from torch import nn

EMBEDDINGS = "model.embed_tokens"


def parse_max_memory(text: str | None) -> dict[int | str, int] | None:
    """``"0=70GiB,1=70GiB,cpu=200GiB"`` -> {0: bytes, 1: bytes, "cpu": bytes}; None stays None."""
    if not text:
        return None
    from accelerate.utils import convert_file_size_to_int

    out: dict[int | str, int] = {}
    for item in text.split(","):
        device, sep, size = item.strip().partition("=")
        if not sep or not device or not size:
            raise ScopebenchError(f"--max-memory: '{item}' is not DEVICE=SIZE "
                                  "(e.g. 0=70GiB,1=70GiB,cpu=100GiB)")
        key: int | str = int(device) if device.isdigit() else device
        if key not in ("cpu", "disk") and not isinstance(key, int):
            raise ScopebenchError(f"--max-memory: device '{device}' is not a GPU index, cpu or disk")
        try:
            out[key] = convert_file_size_to_int(size)
        except ValueError:
            raise ScopebenchError(
                f"--max-memory: size '{size}' of {device} is not a size like 70GiB") from None
    return out


def _device_of(device_map: dict[str, int | str], module: str) -> int | str:
    """The device the map gives ``module`` (its entry, or the entry of the module holding it)."""
    for name, device in device_map.items():
        if name == "" or module == name or module.startswith(name + "."):
            return device
    raise ScopebenchError(f"the device map places no '{module}'")


def device_map(model: nn.Module, max_memory: dict[int | str, int], dtype=None) -> dict[str, int | str]:
    """Where each module of a MultiEncoderVLM goes: accelerate's map of the LLM, the vision side on the
    device of the LLM's embeddings. Works on the meta device (no weights needed)."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes

    sizes = compute_module_sizes(model, dtype=dtype)
    vision = [name for name, _ in model.named_children() if name != "llm"]
    need = sum(sizes.get(name, 0) for name in vision)
    first = next(iter(max_memory))
    if max_memory[first] <= need:
        raise ScopebenchError(
            f"--max-memory: device {first} has {max_memory[first] / 2**30:.1f} GiB, and the encoders, "
            f"projectors and router alone need {need / 2**30:.1f} GiB; give it more")
    budget = {**max_memory, first: max_memory[first] - need}
    no_split = list(getattr(model.llm, "_no_split_modules", None) or [])
    llm_map = infer_auto_device_map(model.llm, max_memory=budget, no_split_module_classes=no_split,
                                    dtype=dtype)
    placed = {(f"llm.{name}" if name else "llm"): device for name, device in llm_map.items()}
    home = _device_of(llm_map, EMBEDDINGS)
    return {**{name: home for name in vision}, **placed}


def place(model: nn.Module, max_memory: dict[int | str, int] | None, device: str,
          offload_dir: Path | None = None) -> nn.Module:
    """Spread ``model`` over the devices ``max_memory`` lists (all visible GPUs when None) and return it."""
    import torch
    from accelerate import dispatch_model
    from accelerate.utils import get_max_memory

    if max_memory is None:
        if device.split(":")[0] != "cuda":
            raise ScopebenchError("--device-map auto on the CPU needs --max-memory (e.g. cpu=8GiB: the rest "
                                  "of the LLM is offloaded to disk)")
        max_memory = {k: v for k, v in get_max_memory().items() if isinstance(k, int)}
    if any(isinstance(k, int) for k in max_memory) and not torch.cuda.is_available():
        raise ScopebenchError("--max-memory names GPUs, but no CUDA device is available; use cpu=SIZE")
    dtype = next(model.parameters()).dtype
    mapping = device_map(model, max_memory, dtype)
    if "disk" in mapping.values() and offload_dir is None:
        raise ScopebenchError("the device map offloads layers to disk; give an offload folder")
    main = _device_of(mapping, "llm." + EMBEDDINGS)
    return dispatch_model(model, device_map=mapping, main_device=main, offload_dir=str(offload_dir)
                          if offload_dir else None)
