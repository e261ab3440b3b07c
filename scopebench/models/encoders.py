"""Vision encoder adapters: timm, open_clip and transformers models behind one interface.

Every adapter is an ``nn.Module`` that takes a batch of images and returns pre-projector token
features ``(B, N, C)``. Images come as an ``ImageBatch`` of the original images, which each encoder
prepares with its own library's transform and aspect policy (``EncoderConfig.aspect``: ``squash``,
``pad``, ``crop``; ``canvas``, the default, resamples the model's shared square canvas), or as a float
tensor in [0, 1] of any resolution (resized and normalised by the encoder). An encoder is named by a
spec string:

    timm:vit_small_patch16_224      open_clip:ViT-L-14-336      hf:google/siglip-so400m-patch14-384

Any architecture builds without weights (random init, or on the ``meta`` device) from its
name plus overrides; pretrained weights load from a local safetensors file or folder.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scopebench.config import ASPECTS, SOURCES, EncoderConfig
from scopebench.errors import ScopebenchError, suggest
from scopebench.models.allowlist import check_config_file, check_overrides, check_transformers_config

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
_SHAPES: dict[tuple, tuple[int, int]] = {}  # VisionEncoder.output_shape's, by what decides them


def import_vision_library(name: str):
    """``import timm`` or ``import open_clip`` (which imports timm) with wandb hidden while it loads.

    timm.utils imports wandb when it is installed (lmms-eval requires it), for training logs scopebench never
    writes; with lmms-eval's modules loaded that import took 3.5 s of a demo eval (pydantic looks for each of
    wandb's model classes in every loaded module). ``import wandb`` afterwards works as usual."""
    if "timm" in sys.modules or "wandb" in sys.modules:
        return importlib.import_module(name)
    sys.modules["wandb"] = None  # `import wandb` raises ImportError, which timm catches
    try:
        return importlib.import_module(name)
    finally:
        if "wandb" in sys.modules and sys.modules["wandb"] is None:
            del sys.modules["wandb"]


class VisionEncoder(nn.Module):
    """Base adapter: resize + normalise, run the backbone, return (B, N, C) tokens."""

    def __init__(self, cfg: EncoderConfig, image_size: int, mean, std, interpolation: str = "bicubic"):
        super().__init__()
        self.cfg = cfg
        self.image_size = int(image_size)
        self.interpolation = interpolation if interpolation in ("bilinear", "bicubic") else "bicubic"
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self._shape: tuple[int, int] | None = None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> normalised (B, 3, S, S) at this encoder's resolution, resampled in
        float32 (CPU kernels have no bf16 antialiased resize) and given in the encoder's own dtype."""
        return self.normalise(self.resample(images))

    def resample(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> float32 (B, 3, S, S) at this encoder's resolution (each image on its
        own: the same values in any batch)."""
        images = images.float()
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode=self.interpolation,
                align_corners=False, antialias=images.device.type != "meta",
            )
        return images

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Resampled [0, 1] images -> normalised by this encoder's mean and std, in its own dtype."""
        dtype = next(self.parameters()).dtype
        return ((images - self.mean.float()) / self.std.float()).to(dtype)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, images: torch.Tensor | ImageBatch) -> torch.Tensor:
        if isinstance(images, ImageBatch):
            return self.features(images.pixels(self))
        return self.features(self.preprocess(images))

    def prepare(self, images: list) -> torch.Tensor:
        """Original PIL images -> normalised (B, 3, S, S) by this encoder's library transform under its aspect
        policy (``pad``: to a square of the mean colour first, as LLaVA and Cambrian-1), one resample."""
        if self.cfg.aspect == "pad":
            fill = tuple(int(255 * float(m)) for m in self.mean.flatten())
            images = [expand_to_square(img, fill) for img in images]
        return self.library_transform(images)

    def _each(self, make, images: list) -> torch.Tensor:
        """A per-image transform (made once per aspect by ``make``) over ``images``, stacked."""
        cache = self.__dict__.setdefault("_transforms", {})
        if self.cfg.aspect not in cache:
            cache[self.cfg.aspect] = make()
        return torch.stack([cache[self.cfg.aspect](img) for img in images])

    def library_transform(self, images: list) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    aspects = ("canvas", "squash", "pad", "crop")  # the aspect policies this encoder takes
    native = False  # whether its token grid follows each image's size (Qwen2.5-VL at aspect native)

    def token_grid(self, image) -> tuple[int, int] | None:
        """The token grid ``image`` gives at native resolution (None: one fixed grid)."""
        return None

    def tokens_for(self, image) -> int:
        """Visual tokens of one image (a PIL image, or None for the encoder's own square)."""
        return self.num_tokens

    def output_shape(self) -> tuple[int, int]:
        """(tokens, channels) of the output, found by a shape-only forward (no compute), once per process for
        encoders of one class, config, resolution, dtype and weight shapes (a run's models share theirs)."""
        if self._shape is None:
            tensors = [*self.named_parameters(), *self.named_buffers()]
            key = (type(self).__qualname__, repr(self.cfg), self.image_size,
                   tuple((name, tuple(t.shape), t.dtype) for name, t in tensors))
            if key not in _SHAPES:
                _SHAPES[key] = self._traced_shape()
            self._shape = _SHAPES[key]
        return self._shape

    def _traced_shape(self) -> tuple[int, int]:
        from torch.func import functional_call

        # every weight and buffer as a meta tensor (also what an empty build leaves real)
        meta = {name: t.to("meta") for name, t in [*self.named_parameters(), *self.named_buffers()]}
        pixels = torch.empty(1, 3, self.image_size, self.image_size, device="meta",
                             dtype=next(self.parameters()).dtype)
        try:
            out = functional_call(self, meta, (pixels,), strict=False)
        except RuntimeError as err:  # e.g. an image smaller than a patch or a conv kernel
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise ScopebenchError(f"encoder '{self.cfg.spec}' cannot run at image_size {self.image_size} "
                                  f"({first}); use a larger image size") from None
        return int(out.shape[1]), int(out.shape[2])

    @property
    def num_tokens(self) -> int:
        return self.output_shape()[0]

    @property
    def width(self) -> int:
        return self.output_shape()[1]

    def describe(self) -> dict[str, Any]:
        """Summary for listings: spec, resolution, tokens, width, normalisation, parameters."""
        return {
            "spec": self.cfg.spec, "image_size": self.image_size, "tokens": self.num_tokens,
            "width": self.width, "mean": [round(float(v), 4) for v in self.mean.flatten()],
            "std": [round(float(v), 4) for v in self.std.flatten()],
            "feature_layer": self.cfg.feature_layer, "drop_cls": self.cfg.drop_cls,
            "params": sum(p.numel() for p in self.parameters()),
        }


def expand_to_square(img, fill: tuple[int, int, int]):
    """A PIL image padded to a centred square of colour ``fill`` (LLaVA's ``expand2square``)."""
    from PIL import Image

    w, h = img.size
    if w == h:
        return img
    out = Image.new(img.mode, (max(w, h),) * 2, fill)
    out.paste(img, ((max(w, h) - w) // 2, (max(w, h) - h) // 2))
    return out


def canvas_bytes(images: list, size: int) -> torch.Tensor:
    """PIL images -> the uint8 pixels (B, 3, size, size) of the shared square canvas: one PIL bicubic resize
    each (aspect ``canvas``: what the demo checkpoints were trained with)."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    return torch.stack([pil_to_tensor(img.resize((size, size), Image.BICUBIC)) for img in images])


class ImageMemo:
    """Per image, what is made from it without a model's weights (its square canvas as uint8, the canvas
    resampled to an encoder's size on the CPU), kept for the other models of a run that are given the same
    image object; within ``budget`` bytes, which whoever holds the images also spends (``spend``). Each
    value is one image's alone (the resamples are per image), so a memoised batch holds the same values."""

    def __init__(self, budget: int = 1 << 30) -> None:
        self.budget, self.used = budget, 0
        self._kept: dict[int, tuple[Any, dict]] = {}  # id(image) -> (image, {key: tensor})

    def spend(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the budget (False, and nothing taken, when it has not that much left)."""
        if self.used + nbytes > self.budget:
            return False
        self.used += nbytes
        return True

    def hold(self, image) -> None:
        """Memoise what is made from ``image`` from now on (it is kept here, so its id stays its own)."""
        self._kept.setdefault(id(image), (image, {}))

    def rows(self, images: list, key: tuple, make) -> torch.Tensor:
        """``make(indices)`` -> one row per image of ``images[indices]``, stacked (n, ...), its rows for held
        images memoised under ``key``: only the images without one are made."""
        entries = [self._kept.get(id(img)) for img in images]
        if not any(entries):
            return make(list(range(len(images))))
        found = [None if e is None else e[1].get(key) for e in entries]
        missing = [i for i, row in enumerate(found) if row is None]
        if missing:
            made = make(missing)
            for j, i in enumerate(missing):
                found[i] = made[j]
                if entries[i] is not None and self.spend(made[j].numel() * made[j].element_size()):
                    entries[i][1][key] = made[j].clone()  # a row of its own, not a view of the batch
        return torch.stack(found)


NO_MEMO = ImageMemo(budget=0)  # holds no image: everything is made afresh


def grid_text(grids: list[tuple[int, int]]) -> str:
    """Token grids of a sample's images as the routes table's ``visual_grid`` holds them: ``14x20;10x10``."""
    return ";".join(f"{h}x{w}" for h, w in grids)


def parse_grid_text(text: str) -> tuple[tuple[int, int], ...]:
    """``grid_text``'s inverse; a ScopebenchError naming the routes table's ``visual_grid`` for bad text."""
    try:
        grids = tuple(tuple(int(n) for n in g.split("x")) for g in str(text).split(";"))
    except ValueError:
        grids = ((),)
    if not grids or any(len(g) != 2 or min(g) < 1 for g in grids):
        raise ScopebenchError(f"routes table: visual_grid '{text}' is not ROWSxCOLS[;ROWSxCOLS...]; "
                              "re-create the run with `scopebench eval`")
    return grids  # type: ignore[return-value]


class ImageBatch:
    """The original images of a batch (RGB PIL, any size; None is a black canvas) and the device their pixels
    go to. Each encoder prepares its own pixels (``VisionEncoder.prepare``); encoders with aspect ``canvas``
    share one square canvas (``canvas_bytes`` at the model's canvas size), made once. Tensor-like where the
    model batches images: ``len``, indexing, ``shape``, ``device``, ``to``, ``torch.stack`` / ``torch.cat``
    (joined in order) and ``torch.zeros_like`` (black images of the same sizes). ``memo``: an ``ImageMemo``
    that keeps the canvas and its resamples of the images it holds for other models."""

    def __init__(self, images: list, canvas: int, device="cpu", _canvas: torch.Tensor | None = None,
                 memo: ImageMemo | None = None):
        from PIL import Image

        # an RGB image is kept as it is (convert would copy it on every slice of the batch)
        self.images = [Image.new("RGB", (canvas, canvas)) if img is None
                       else img if img.mode == "RGB" else img.convert("RGB") for img in images]
        self.size, self.device, self._canvas = int(canvas), torch.device(device), _canvas
        self.memo = NO_MEMO if memo is None else memo

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.size, self.size)

    ndim = 4

    def to(self, device) -> ImageBatch:
        return ImageBatch(self.images, self.size, device,
                          None if self._canvas is None else self._canvas.to(device), self.memo)

    def __getitem__(self, key) -> ImageBatch:
        if isinstance(key, torch.Tensor):
            key = key.tolist()
        if isinstance(key, int | slice):
            key = list(range(len(self)))[key] if isinstance(key, slice) else [key]
        idx = list(key)
        part = None if self._canvas is None else self._canvas[idx]
        return ImageBatch([self.images[i] for i in idx], self.size, self.device, part, self.memo)

    def canvas(self) -> torch.Tensor:
        if self._canvas is None:
            pixels = self.memo.rows(self.images, ("canvas", self.size),
                                    lambda idx: canvas_bytes([self.images[i] for i in idx], self.size))
            self._canvas = (pixels.float() / 255.0).to(self.device)
        return self._canvas

    def pixels(self, encoder: VisionEncoder) -> torch.Tensor:
        """Normalised pixels for ``encoder``, in its dtype, on this batch's device."""
        if encoder.cfg.aspect == "canvas":
            canvas = self.canvas()
            if self.device.type != "cpu" or encoder.image_size == self.size:
                return encoder.preprocess(canvas)
            key = ("resample", self.size, encoder.image_size, encoder.interpolation)
            resampled = self.memo.rows(self.images, key, lambda idx: encoder.resample(canvas[idx]))
            return encoder.normalise(resampled)
        dtype = next(encoder.parameters()).dtype
        return encoder.prepare(self.images).to(device=self.device, dtype=dtype)

    def blank(self) -> ImageBatch:
        from PIL import Image

        return ImageBatch([Image.new("RGB", img.size) for img in self.images], self.size, self.device,
                          memo=self.memo)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.stack, torch.cat):
            batches = list(args[0])
            canvases = [b._canvas for b in batches]
            joined = None if any(c is None for c in canvases) else torch.cat(canvases)
            return ImageBatch([img for b in batches for img in b.images], batches[0].size, batches[0].device,
                              joined, batches[0].memo)
        if func is torch.zeros_like:
            return args[0].blank()
        return NotImplemented


def _to_tokens(x: torch.Tensor, fmt: str = "NCHW") -> torch.Tensor:
    """Feature maps -> (B, HW, C): NCHW, or NHWC (channels last: Swin, MambaOut ...); (B, N, C) passes
    through."""
    if x.ndim != 4:
        return x
    return x.flatten(1, 2) if fmt == "NHWC" else x.flatten(2).transpose(1, 2)


def _check_layer(cfg: EncoderConfig) -> None:
    if cfg.feature_layer not in ("last", "penultimate"):
        raise ScopebenchError(
            f"encoder '{cfg.spec}': feature_layer must be 'last' or 'penultimate', got '{cfg.feature_layer}'"
        )


def _local_safetensors(path: str | Path, spec: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.glob("*.safetensors"))
        if not files:
            raise ScopebenchError(f"encoder '{spec}': no .safetensors file in {p}; "
                                  "convert the weights to safetensors")
        p = files[0]
    if not p.exists():
        raise ScopebenchError(f"encoder '{spec}': pretrained weights {p} not found; "
                              "fix `pretrained:` or remove it")
    if p.suffix != ".safetensors":
        raise ScopebenchError(f"encoder '{spec}': {p} is not a .safetensors file; "
                              "only safetensors weights are loaded")
    return p


class TimmEncoder(VisionEncoder):
    """timm backbone: ViTs give patch tokens (prefix tokens optional), convnets give their last
    feature map."""

    def __init__(self, cfg: EncoderConfig):
        timm = import_vision_library("timm")

        kwargs = dict(cfg.overrides)
        if cfg.pretrained and cfg.pretrained != "hub":
            kwargs["pretrained_cfg_overlay"] = {"file": str(_local_safetensors(cfg.pretrained, cfg.spec))}
        try:
            try:
                model = timm.create_model(
                    cfg.name, pretrained=bool(cfg.pretrained), num_classes=0,
                    **({"img_size": cfg.image_size} if cfg.image_size else {}), **kwargs,
                )
            except TypeError as err:  # convnets take any size: no img_size argument
                if "img_size" not in str(err):
                    raise
                model = timm.create_model(cfg.name, pretrained=bool(cfg.pretrained), num_classes=0, **kwargs)
        except RuntimeError as err:
            if "Unknown model" in str(err):
                raise ScopebenchError(f"unknown timm model in '{cfg.spec}'; "
                                      "list names with timm.list_models()") from None
            raise
        pcfg = model.pretrained_cfg
        size = cfg.image_size or pcfg.get("input_size", (3, 224, 224))[-1]
        super().__init__(cfg, size, pcfg.get("mean", IMAGENET_MEAN), pcfg.get("std", IMAGENET_STD),
                         pcfg.get("interpolation", "bicubic"))
        self.model = model

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return timm_tokens(self.model, pixels, self.cfg)

    def library_transform(self, images: list) -> torch.Tensor:
        """timm's eval transform (``resolve_data_config`` + ``create_transform``) at this encoder's size, no
        crop margin: ``squash`` (and ``pad``) resize to the square, ``crop`` shortest side + centre crop."""
        from timm.data import create_transform, resolve_data_config

        def make():
            side = self.image_size
            data = resolve_data_config({"input_size": (3, side, side)}, model=self.model)
            mode = "center" if self.cfg.aspect == "crop" else "squash"
            return create_transform(**{**data, "crop_pct": 1.0, "crop_mode": mode})

        return self._each(make, images)


def timm_tokens(model: nn.Module, pixels: torch.Tensor, cfg: EncoderConfig) -> torch.Tensor:
    """A timm model's tokens (B, N, C) at ``cfg.feature_layer``: ``forward_features`` (last) or the
    second-to-last ``forward_intermediates`` output (penultimate), prefix tokens (class, distillation,
    registers) dropped when ``cfg.drop_cls``; channels-last maps (``model.output_fmt`` NHWC) read as such."""
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    if cfg.feature_layer == "last":
        x = _to_tokens(model.forward_features(pixels), str(getattr(model, "output_fmt", "NCHW")))
        return x[:, prefix:] if (cfg.drop_cls and x.ndim == 3) else x
    keep_prefix = prefix > 0 and not cfg.drop_cls
    out = model.forward_intermediates(
        pixels, indices=2, intermediates_only=True,
        output_fmt="NLC" if prefix or _is_vit(model) else "NCHW",
        **({"return_prefix_tokens": True} if keep_prefix else {}),
    )[0]
    if keep_prefix:
        spatial, prefix_tokens = out
        return torch.cat([prefix_tokens, _to_tokens(spatial)], dim=1)
    return _to_tokens(out)


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "patch_embed")


class _DropRandomInitWarning(logging.Filter):
    """open_clip warns "Model initialized randomly" whenever no pretrained tag is given, but scopebench loads
    a checkpoint's weights right after (or builds weight-free on purpose): the warning would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


class OpenClipEncoder(VisionEncoder):
    """open_clip image tower: ViT patch tokens (via forward_intermediates) or the timm trunk's feature map."""

    def __init__(self, cfg: EncoderConfig):
        open_clip = import_vision_library("open_clip")

        if cfg.name not in open_clip.list_models():
            hint = suggest(cfg.name, open_clip.list_models(), prefix="open_clip:")
            raise ScopebenchError(f"unknown open_clip model in '{cfg.spec}'{hint}; "
                                  "see open_clip.list_models()")
        pretrained = None
        if cfg.pretrained and cfg.pretrained != "hub":
            pretrained = str(_local_safetensors(cfg.pretrained, cfg.spec))
        # honour an enclosing `with torch.device("meta")` or accelerate's `init_empty_weights` (open_clip
        # moves the model to `device` after building it); no random init drawn, so a seeded build of the
        # model is the same whichever way it is asked
        probe = nn.Module()
        probe.register_parameter("p", nn.Parameter(torch.empty(0)))
        device = probe.p.device
        base = open_clip.get_model_config(cfg.name) or {}
        overrides = {  # nested towers are merged key by key, e.g. {vision_cfg: {layers: 2}}
            k: {**base.get(k, {}), **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            for k, v in cfg.overrides.items()
        }
        for tower, flag in (("vision_cfg", "timm_model_pretrained"), ("text_cfg", "hf_model_pretrained")):
            if isinstance(overrides.get(tower), dict):  # a replaced tower must not fetch its base weights
                overrides[tower] = {**overrides[tower], flag: False}
        if cfg.image_size and isinstance(overrides.get("vision_cfg"), dict):  # it replaces force_image_size's
            overrides["vision_cfg"]["image_size"] = cfg.image_size
        quiet = _DropRandomInitWarning()
        logging.getLogger().addFilter(quiet)
        try:
            model = open_clip.create_model(
                cfg.name, pretrained=pretrained, device=device, pretrained_image=False, pretrained_text=False,
                **overrides,
                **({"force_image_size": cfg.image_size} if cfg.image_size else {}),
            )
        finally:
            logging.getLogger().removeFilter(quiet)
        visual = model.visual
        del model
        pre = getattr(visual, "preprocess_cfg", {}) or {}
        size = visual.image_size[0] if isinstance(visual.image_size, tuple | list) else visual.image_size
        super().__init__(cfg, size, pre.get("mean", CLIP_MEAN), pre.get("std", CLIP_STD),
                         pre.get("interpolation", "bicubic"))
        self.visual = visual
        self.is_trunk = hasattr(visual, "trunk")
        self.is_resnet = type(visual).__name__ == "ModifiedResNet"

    def library_transform(self, images: list) -> torch.Tensor:
        """open_clip's eval ``image_transform`` with the tower's preprocess config: ``squash`` (and ``pad``)
        resize to the square, ``crop`` the shortest side + centre crop (``resize_mode`` shortest)."""
        from open_clip import image_transform

        return self._each(lambda: image_transform(
            self.image_size, is_train=False, mean=tuple(self.mean.flatten().tolist()),
            std=tuple(self.std.flatten().tolist()), interpolation=self.interpolation,
            resize_mode="shortest" if self.cfg.aspect == "crop" else "squash"), images)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.is_trunk:  # TimmModel (ConvNeXt, EVA02, SigLIP ...): the timm trunk without its pool and head
            return timm_tokens(self.visual.trunk, pixels, self.cfg)
        index = 1 if self.cfg.feature_layer == "last" else 2
        if self.is_resnet:  # ModifiedResNet: the last (or second-to-last) stage's map, before attnpool
            out = self.visual.forward_intermediates(pixels, indices=index, intermediates_only=True)
            return _to_tokens(out["image_intermediates"][0])
        out = self.visual.forward_intermediates(
            pixels, indices=index, intermediates_only=True,
            output_fmt="NLC", output_extra_tokens=not self.cfg.drop_cls,
        )
        x = out["image_intermediates"][0]
        if not self.cfg.drop_cls:
            x = torch.cat([out["image_intermediates_prefix"][0], x], dim=1)
        return x


_HF_NORMS = {"clip": (CLIP_MEAN, CLIP_STD), "siglip": (HALF, HALF), "qwen2_5_vl": (CLIP_MEAN, CLIP_STD)}


class HFEncoder(VisionEncoder):
    """transformers vision model: CLIP / SigLIP / DINOv2 / DINOv3 vision towers (hidden states as tokens)."""

    def __init__(self, cfg: EncoderConfig, hf_config, model: nn.Module, family: str):
        size = cfg.image_size or hf_config.image_size
        mean, std = _HF_NORMS.get(family, (IMAGENET_MEAN, IMAGENET_STD))
        super().__init__(cfg, size, mean, std)
        self.model, self.family = model, family
        self._processor = None
        if family == "siglip":  # its attention-pool head feeds only pooler_output (never read): skip it
            getattr(model, "vision_model", model).use_head = False  # (transformers 4.x nests the tower)
        self.prefix = 0 if family == "siglip" else 1 + int(getattr(hf_config, "num_register_tokens", 0) or 0)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        kwargs = {"interpolate_pos_encoding": True} if self.family_interpolates else {}
        out = self.model(pixel_values=pixels, output_hidden_states=self.cfg.feature_layer != "last", **kwargs)
        x = out.last_hidden_state if self.cfg.feature_layer == "last" else out.hidden_states[-2]
        return x[:, self.prefix:] if self.cfg.drop_cls else x

    def library_transform(self, images: list) -> torch.Tensor:
        """The model's image processor (its folder's preprocessor_config.json, else the family's processor
        with this encoder's normalisation) at this encoder's size: ``squash`` (and ``pad``) to the square,
        ``crop`` the shortest side + centre crop."""
        if self._processor is None:
            self._processor = _image_processor(self.cfg, self.family, self.mean, self.std)
        s = self.image_size
        if self.cfg.aspect == "crop":
            kwargs = {"size": {"shortest_edge": s}, "do_center_crop": True,
                      "crop_size": {"height": s, "width": s}}
        else:
            kwargs = {"size": {"height": s, "width": s}, "do_center_crop": False}
        return self._processor(images=images, return_tensors="pt", **kwargs)["pixel_values"]

    @property
    def family_interpolates(self) -> bool:
        return type(self.model).__name__ in ("CLIPVisionModel", "SiglipVisionModel", "Dinov2Model")


class QwenVisionEncoder(VisionEncoder):
    """Qwen2.5-VL vision tower: images are cut into 14x14 patches (two frames each), 2x2-merged tokens out."""

    def __init__(self, cfg: EncoderConfig, hf_config, model: nn.Module):
        unit = hf_config.patch_size * hf_config.spatial_merge_size
        size = cfg.image_size or 448
        if size % unit:
            raise ScopebenchError(f"encoder '{cfg.spec}': image_size {size} must be a multiple of {unit} "
                                  "(patch x merge)")
        if cfg.feature_layer != "last":
            raise ScopebenchError(f"encoder '{cfg.spec}': the Qwen2.5-VL merger reads the last block only; "
                                  "use feature_layer: last")
        super().__init__(cfg, size, CLIP_MEAN, CLIP_STD)
        self.model = model
        self.patch, self.merge, self.temporal = (hf_config.patch_size, hf_config.spatial_merge_size,
                                                 hf_config.temporal_patch_size)
        self.native = cfg.aspect == "native"
        # the Qwen2-VL image processor's defaults: 56 x 56 to 28 x 28 x 1280 pixels
        self.min_pixels, self.max_pixels = cfg.min_pixels or 56 * 56, cfg.max_pixels or 28 * 28 * 1280
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ScopebenchError(f"encoder '{cfg.spec}': min_pixels {self.min_pixels} and max_pixels "
                                  f"{self.max_pixels} must satisfy 0 < min_pixels <= max_pixels")
        self._processor = None

    aspects = ("canvas", "native")

    def token_grid(self, image) -> tuple[int, int] | None:
        """The merged-token grid of ``image`` at native resolution: the processor's ``smart_resize`` (sides
        multiples of patch x merge, pixels within min / max pixels) over patch x merge."""
        if not self.native or image is None:
            return None
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        unit = self.patch * self.merge
        h, w = smart_resize(image.height, image.width, factor=unit, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels)
        return h // unit, w // unit

    def tokens_for(self, image) -> int:
        grid = self.token_grid(image)
        return self.num_tokens if grid is None else grid[0] * grid[1]

    def forward(self, images: torch.Tensor | ImageBatch) -> torch.Tensor:
        """At aspect ``native``, images of one token grid (``token_grid``) through the model's own processor
        (``Qwen2VLImageProcessor`` with min / max pixels) and the vision model; else as every encoder."""
        if not (self.native and isinstance(images, ImageBatch)):
            return super().forward(images)
        if self._processor is None:
            from transformers import Qwen2VLImageProcessor

            self._processor = Qwen2VLImageProcessor(
                patch_size=self.patch, merge_size=self.merge, temporal_patch_size=self.temporal,
                min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        inputs = self._processor(images=images.images, return_tensors="pt")
        grid = inputs["image_grid_thw"]
        counts = (grid.prod(-1) // self.merge**2).tolist()
        if len(set(counts)) > 1:
            raise ScopebenchError(f"encoder '{self.cfg.spec}': one batch of images of several token grids; "
                                  "the model encodes them grid by grid")
        dtype = next(self.parameters()).dtype
        merged = self.model(inputs["pixel_values"].to(images.device, dtype),
                            grid_thw=grid.to(images.device)).pooler_output
        return torch.stack(merged.split(counts))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        b, c, h, w = pixels.shape
        p, m, t = self.patch, self.merge, self.temporal
        gh, gw = h // p, w // p
        x = pixels.unsqueeze(1).expand(b, t, c, h, w)  # a still image is repeated over the temporal patch
        x = x.reshape(b, t, c, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        x = x.reshape(b * gh * gw, c * t * p * p)
        grid = torch.tensor([[1, gh, gw]] * b,
                            device="cpu" if pixels.device.type == "meta" else pixels.device)
        merged = self.model(x, grid_thw=grid).pooler_output
        return merged.reshape(b, (gh // m) * (gw // m), -1)

    def output_shape(self) -> tuple[int, int]:
        n = (self.image_size // (self.patch * self.merge)) ** 2
        return n, int(self.model.config.out_hidden_size)


_HF_PROCESSORS = {"clip": "CLIPImageProcessor", "siglip": "SiglipImageProcessor",
                  "dinov2": "BitImageProcessor", "dinov3": "DINOv3ViTImageProcessor"}


def _image_processor(cfg: EncoderConfig, family: str, mean: torch.Tensor, std: torch.Tensor):
    """A local model folder's image processor (its preprocessor_config.json), else the family's own class
    with the encoder's normalisation (inline configs name no folder)."""
    import transformers

    local = Path(cfg.name).expanduser()
    if cfg.config is None and local.is_dir():
        path = local / "preprocessor_config.json"
        try:
            json.loads(path.read_text())
            return transformers.AutoImageProcessor.from_pretrained(local, trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise ScopebenchError(f"encoder '{cfg.spec}': {path} is missing or unreadable "
                                  f"({type(err).__name__}); add the model's image processor config or use "
                                  "aspect: canvas") from None
    cls = getattr(transformers, _HF_PROCESSORS[family])
    return cls(image_mean=mean.flatten().tolist(), image_std=std.flatten().tolist())


def _hf_config(cfg: EncoderConfig):
    from transformers import CONFIG_MAPPING, AutoConfig

    from scopebench.hub import hub_config

    local = Path(cfg.name).expanduser()
    if cfg.config is not None:
        data = dict(cfg.config)
        model_type = data.pop("model_type", None)
        if model_type == "qwen2_5_vl_vision":  # the vision tower alone has no entry in CONFIG_MAPPING
            from transformers import Qwen2_5_VLVisionConfig

            return Qwen2_5_VLVisionConfig(**data)
        if model_type not in CONFIG_MAPPING:
            raise ScopebenchError(
                f"encoder '{cfg.spec}': config.model_type '{model_type}' is not a transformers model type"
            )
        hf = CONFIG_MAPPING[model_type](**data)
    elif local.is_dir():
        if not (local / "config.json").exists():
            raise ScopebenchError(f"encoder '{cfg.spec}': {local}/config.json not found; "
                                  "point hf: at a model folder")
        check_config_file(local)
        hf = AutoConfig.from_pretrained(local, trust_remote_code=False)
    else:
        try:
            hf = hub_config(cfg.name)
        except OSError:
            raise ScopebenchError(
                f"encoder '{cfg.spec}': no config found locally and the hub is unreachable; "
                "pass a local folder "
                f"(hf:/path/to/model) or give the architecture inline under `config:`"
            ) from None
    if cfg.overrides:
        target = getattr(hf, "vision_config", None) or hf
        for k, v in cfg.overrides.items():
            setattr(target, k, v)
    return hf


def _build_hf(cfg: EncoderConfig) -> VisionEncoder:
    from transformers import CLIPVisionModel, Dinov2Model, DINOv3ViTModel, SiglipVisionModel
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    hf = _hf_config(cfg)
    model_type = "qwen2_5_vl" if type(hf).__name__ == "Qwen2_5_VLVisionConfig" else hf.model_type
    if hasattr(hf, "vision_config") and model_type in ("clip", "siglip", "qwen2_5_vl"):
        hf = hf.vision_config
    families = {
        "clip": ("clip", CLIPVisionModel), "clip_vision_model": ("clip", CLIPVisionModel),
        "siglip": ("siglip", SiglipVisionModel), "siglip_vision_model": ("siglip", SiglipVisionModel),
        "dinov2": ("dinov2", Dinov2Model), "dinov3_vit": ("dinov3", DINOv3ViTModel),
        "qwen2_5_vl": ("qwen2_5_vl", Qwen2_5_VisionTransformerPretrainedModel),
    }
    if model_type not in families:
        raise ScopebenchError(
            f"encoder '{cfg.spec}': transformers model type '{model_type}' is not supported; "
            f"supported: {', '.join(sorted(families))}"
        )
    family, cls = families[model_type]
    model = cls._from_config(hf)
    if cfg.pretrained:
        _load_hf_weights(model, cfg, Path(cfg.name) if cfg.pretrained == "hub" else Path(cfg.pretrained))
    if family == "qwen2_5_vl":
        return QwenVisionEncoder(cfg, hf, model)
    return HFEncoder(cfg, hf, model, family)


def _load_hf_weights(model: nn.Module, cfg: EncoderConfig, folder: Path) -> None:
    """Load safetensors shards from a local folder, keeping the keys of this (vision) sub-model."""
    from safetensors.torch import load_file

    path = Path(folder).expanduser()
    files = [_local_safetensors(path, cfg.spec)] if not path.is_dir() else sorted(path.glob("*.safetensors"))
    if not files:
        raise ScopebenchError(f"encoder '{cfg.spec}': no .safetensors weights in {folder}; "
                              "download them first")
    own = set(model.state_dict())
    prefixes = ("", "vision_model.", "model.visual.", "visual.", "vision_tower.")
    state = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            for prefix in prefixes:
                if not k.startswith(prefix):
                    continue
                for key in (k[len(prefix):], f"vision_model.{k[len(prefix):]}"):
                    if key in own:
                        state[key] = v
    missing = own - set(state)
    if missing:
        raise ScopebenchError(f"encoder '{cfg.spec}': weights in {folder} lack {len(missing)} tensors, "
                              f"e.g. '{sorted(missing)[0]}'")
    model.load_state_dict(state)


def parse_spec(spec: str) -> tuple[str, str]:
    """'timm:NAME' -> ('timm', 'NAME'), with a clear error for an unknown source."""
    source, sep, name = spec.partition(":")
    if not sep or not name or source not in SOURCES:
        raise ScopebenchError(
            f"encoder spec '{spec}' is not SOURCE:NAME with SOURCE one of {', '.join(SOURCES)} "
            f"(e.g. timm:vit_small_patch16_224, open_clip:ViT-B-32, hf:facebook/dinov2-small)"
        )
    return source, name


def create_encoder(cfg: EncoderConfig | str, **overrides: Any) -> VisionEncoder:
    """Build an encoder from a config or a spec string (random init unless ``pretrained`` is set).

    Build inside ``with torch.device("meta"):`` for a weight-free model of any size.
    """
    if isinstance(cfg, str):
        cfg = EncoderConfig(spec=cfg, **overrides)
    source, _ = parse_spec(cfg.spec)
    _check_layer(cfg)
    if cfg.aspect not in ASPECTS:
        raise ScopebenchError(f"encoder '{cfg.spec}': aspect must be one of {', '.join(ASPECTS)}, "
                              f"got '{cfg.aspect}'")
    if (cfg.min_pixels or cfg.max_pixels) and cfg.aspect != "native":
        raise ScopebenchError(f"encoder '{cfg.spec}': min_pixels / max_pixels need aspect: native")
    check_overrides(source, cfg.overrides, f"encoder '{cfg.spec}': overrides")
    check_transformers_config(cfg.config, f"encoder '{cfg.spec}': config")
    builder = {"timm": TimmEncoder, "open_clip": OpenClipEncoder, "hf": _build_hf}[source]
    try:
        enc = builder(cfg)
    except ScopebenchError:
        raise
    except (TypeError, ValueError, AssertionError) as err:
        raise ScopebenchError(f"encoder '{cfg.spec}' cannot be built with these options: {err}") from None
    if cfg.aspect not in enc.aspects:
        raise ScopebenchError(f"encoder '{cfg.spec}': aspect '{cfg.aspect}' is not one this encoder takes; "
                              f"use one of {', '.join(enc.aspects)}")
    if enc.image_size <= 0 or not math.isfinite(enc.image_size):
        raise ScopebenchError(f"encoder '{cfg.spec}': invalid image_size {enc.image_size}")
    return enc
