"""What `scopebench flops` / `latency` profile: a checkpoint, demo model, preset, or one encoder spec."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from scopebench.config import SOURCES, EncoderConfig
from scopebench.errors import ScopebenchError

CPU_MAX_PARAMS = 2_000_000_000  # larger models are too slow to time on a CPU


@dataclass
class Target:
    """A built model to profile. ``encoder``: a single VisionEncoder (from a spec) instead of a VLM."""

    label: str  # the model name in run tables: the preset reference or the config's name; the spec
    kind: str  # checkpoint, demo, preset or encoder
    model: nn.Module
    encoder: bool
    notes: list[str] = field(default_factory=list)


def is_encoder_spec(ref: str) -> bool:
    source, sep, name = ref.partition(":")
    return bool(sep and name) and source in SOURCES and not Path(ref).exists()


def _resolve(ref: str):
    """The registry's resolve; its unknown-model error also names the encoder specs profiling accepts."""
    from scopebench.models.registry import resolve

    specs = ", ".join(f"{s}:NAME" for s in SOURCES)
    return resolve(ref, accepted=f"a checkpoint folder, a demo model, a preset or an encoder spec ({specs})")


def _check_size(image_size: int | None) -> None:
    if image_size is not None and image_size < 1:
        raise ScopebenchError(f"--image-size must be a positive number of pixels, got {image_size}")


def _with_image_size(cfg, size: int):
    """The config with every encoder (and the input canvas) at ``size`` pixels."""
    return dataclasses.replace(
        cfg, image_size=size, shared=dataclasses.replace(cfg.shared, image_size=size),
        routed={k: dataclasses.replace(v, image_size=size) for k, v in cfg.routed.items()},
    )


def _encoder(ref: str, image_size: int | None, device) -> nn.Module:
    from scopebench.models.encoders import create_encoder

    with torch.device(device):
        return create_encoder(EncoderConfig(spec=ref, image_size=image_size)).eval()


def load_for_flops(ref: str, image_size: int | None, meta: bool) -> Target:
    """Build ``ref`` for counting. Presets (no weights) and ``meta`` build on the meta device; checkpoints
    load their weights on the CPU (random weights when ``image_size`` changes their encoders)."""
    from scopebench.models.build import build_model
    from scopebench.models.registry import load_model

    _check_size(image_size)
    if is_encoder_spec(ref):
        return Target(ref, "encoder", _encoder(ref, image_size, "meta" if meta else "cpu"), True)
    model_ref = _resolve(ref)
    kind, cfg, folder, label = model_ref.kind, model_ref.config, model_ref.folder, model_ref.name
    notes = []
    if kind == "preset" and not meta:
        meta = True
        notes.append(f"'{ref}' is a preset without weights: "
                     "counted on the meta device with the torch counter")
    if image_size is not None:
        cfg = _with_image_size(cfg, image_size)
    if meta:
        model = build_model(cfg, meta=True)
    elif folder is not None and image_size is None:
        model = load_model(ref)
    else:
        model = build_model(cfg)
        if folder is not None:
            notes.append("--image-size changes the encoders: "
                         "counted with random weights (counts do not depend on them)")
    if model_ref.inference_policy is not None:  # CHECKPOINT@POLICY; build_model ignores it
        model.set_policy(model_ref.inference_policy)
    return Target(label, kind, model.eval(), False, notes)


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _check_fits(ref: str, meta_model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse models that do not fit the device in ``dtype``, and paper-scale models on a CPU."""
    params = sum(p.numel() for p in meta_model.parameters())
    need, have = params * dtype.itemsize, _available_bytes(device)
    gb = 1024**3
    if device.type == "cpu" and params > CPU_MAX_PARAMS:
        raise ScopebenchError(
            f"model '{ref}' has {params / 1e9:.1f} B parameters: too big and slow to time on a CPU; "
            f"use --device cuda, or count its FLOPs with `scopebench flops {ref} --meta`"
        )
    if need > 0.9 * have:
        raise ScopebenchError(
            f"model '{ref}' needs {need / gb:.1f} GB ({params / 1e9:.2f} B parameters in {str(dtype)[6:]}) "
            f"but {device} has {have / gb:.1f} GB free; use a larger device or a smaller model"
        )


@contextlib.contextmanager
def _building(device: torch.device, dtype: torch.dtype):
    """Create parameters directly on ``device`` in ``dtype`` (no float32 copy first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            yield
    finally:
        torch.set_default_dtype(previous)


def load_for_latency(ref: str, device: str, dtype: torch.dtype) -> Target:
    """Build ``ref`` with weights on ``device`` in ``dtype``: checkpoints load theirs, presets and encoder
    specs get random weights created directly on the device in ``dtype``."""
    from scopebench.models.build import build_model
    from scopebench.models.registry import load_model

    dev = torch.device(device)
    if is_encoder_spec(ref):
        _check_fits(ref, _encoder(ref, None, "meta"), dev, dtype)
        with _building(dev, dtype):
            return Target(ref, "encoder", _encoder(ref, None, dev).to(dtype), True)
    model_ref = _resolve(ref)
    _check_fits(ref, build_model(model_ref.config, meta=True), dev, dtype)
    if model_ref.folder is not None:
        model = load_model(ref, device=device)
    else:
        with _building(dev, dtype):
            model = build_model(model_ref.config)
    return Target(model_ref.name, model_ref.kind, model.to(dtype).eval(), False)
