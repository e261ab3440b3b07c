"""What `scopebench flops SPEC` counts per encoder family against the library's whole tower (heads, pools).

fvcore on random weights, one image at each family's default size; GMACs (FLOPs = 2 x MACs).

    python benchmarks/bench_encoder_heads.py [SPEC_SUBSTRING ...]
"""

import json
import sys
import time
import warnings

import torch
from torch import nn

from scopebench.config import EncoderConfig
from scopebench.models.encoders import create_encoder
from scopebench.profiling.components import EncoderFeatures
from scopebench.profiling.counters import count

warnings.filterwarnings("ignore")


class Call(nn.Module):
    def __init__(self, fn, mod):
        super().__init__()
        self.fn, self.mod = fn, mod

    def forward(self, x):
        out = self.fn(x)
        return (
            out if isinstance(out, torch.Tensor) else out[0] if isinstance(out, tuple) else out.pooler_output
        )


def timm_full(enc):
    import timm

    m = timm.create_model(
        enc.cfg.name, pretrained=False, **({"img_size": enc.cfg.image_size} if enc.cfg.image_size else {})
    ).eval()
    return m, m


def hf_full(enc):
    m = enc.model
    if enc.family == "siglip":  # the whole tower as transformers runs it: with its attention-pool head
        import copy

        m = copy.deepcopy(m)
        getattr(m, "vision_model", m).use_head = True
    return m, (
        lambda x: (
            m(pixel_values=x, interpolate_pos_encoding=True) if enc.family_interpolates else m(pixel_values=x)
        )
    )


def _vit(model_type: str, **fields) -> dict:
    """An HF vision config of ViT-B/16 shape at 224, with ``fields`` changed."""
    return {"model_type": model_type, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "image_size": 224, "patch_size": 16, **fields}


CASES = {
    "timm:vit_base_patch16_224": ("timm", {}),
    "timm:deit_base_distilled_patch16_224": ("timm", {}),
    "timm:eva02_base_patch14_224": ("timm", {}),
    "timm:convnext_tiny": ("timm", {}),
    "timm:swin_tiny_patch4_window7_224": ("timm", {}),
    "timm:resnet50": ("timm", {}),
    "timm:efficientnet_b0": ("timm", {}),
    "timm:regnety_016": ("timm", {}),
    "timm:maxvit_tiny_tf_224": ("timm", {}),
    "open_clip:ViT-B-32": ("open_clip", {}),
    "open_clip:convnext_base": ("open_clip", {}),
    "open_clip:RN50": ("open_clip", {}),
    "open_clip:EVA02-B-16": ("open_clip", {}),
    "open_clip:ViT-B-16-SigLIP": ("open_clip", {}),
    "open_clip:ViT-SO400M-14-SigLIP-384": ("open_clip", {}),
    "hf:clip-vit-base-patch16": ("hf", {"config": _vit("clip_vision_model")}),
    "hf:siglip-base-patch16-224": ("hf", {"config": _vit("siglip_vision_model")}),
    "hf:siglip-so400m-patch14-384": ("hf", {"config": _vit(
        "siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
        num_attention_heads=16, image_size=384, patch_size=14)}),
    "hf:dinov2-base": ("hf", {"config": _vit("dinov2", image_size=518, patch_size=14), "image_size": 224}),
    "hf:dinov3-vitb16": ("hf", {"config": _vit("dinov3_vit", num_register_tokens=4, layerscale_value=1.0,
                                                use_gated_mlp=False)}),
    "hf:Qwen2.5-VL-7B-vision": (
        "hf",
        {
            "image_size": 448,
            "config": dict(
                model_type="qwen2_5_vl_vision",
                depth=32,
                hidden_size=1280,
                intermediate_size=3420,
                num_heads=16,
                out_hidden_size=3584,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31],
                hidden_act="silu",
            ),
        },
    ),
}
only = sys.argv[1:]
res = {}
for spec, (src, kw) in CASES.items():
    if only and not any(o in spec for o in only):
        continue
    t = time.time()
    torch.manual_seed(0)
    enc = create_encoder(EncoderConfig(spec=spec, **kw)).eval()
    px = torch.randn(1, 3, enc.image_size, enc.image_size)
    with torch.no_grad():
        feats = count(EncoderFeatures(enc), (px,), "fvcore", spec).macs
        if src == "timm":
            full_m, fn = timm_full(enc)
        elif src == "open_clip":
            full_m, fn = enc.visual, enc.visual
        elif "Qwen" in spec:
            full_m, fn = enc, enc.features
        else:
            full_m, fn = hf_full(enc)
        full = count(Call(fn, full_m), (px,), "fvcore", spec + " full").macs
    res[spec] = (enc.image_size, enc.output_shape(), feats / 1e9, full / 1e9)
    print(
        f"{spec:45s} {enc.image_size:4d} {str(enc.output_shape()):12s} scopebench {feats / 1e9:8.3f}  "
        f"tower {full / 1e9:8.3f}  left out {(full - feats) / 1e9:7.3f} GMACs  ({time.time() - t:.0f}s)",
        flush=True,
    )
print(json.dumps({k: v[2:] for k, v in res.items()}))
