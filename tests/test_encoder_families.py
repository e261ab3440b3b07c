"""Every encoder family builds without weights and gives, for its feature layer, the tokens its own library
gives: timm's ``forward_intermediates`` map (with the final norm for the last layer; EfficientNet's
``forward_features``, which adds its 1x1 head conv), open_clip's tower intermediates (the trunk's for timm
towers, the last stage before the attention pool for ModifiedResNet), transformers' hidden states (patch
tokens; class and register tokens dropped) and the Qwen2.5-VL image processor + vision model."""

from __future__ import annotations

import pytest
import torch

from scopebench.config import EncoderConfig
from scopebench.models.encoders import create_encoder

VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2}
TEXT = {"text_cfg": {"layers": 1, "width": 32, "heads": 1, "context_length": 8, "vocab_size": 64},
        "embed_dim": 32}
HF = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
      "image_size": 32, "patch_size": 8}
QWEN = {"model_type": "qwen2_5_vl_vision", "depth": 2, "hidden_size": 32, "intermediate_size": 64,
        "num_heads": 2, "out_hidden_size": 48, "patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1]}

# name: (encoder config, expected (tokens, channels) at the last layer)
FAMILIES = {
    "timm-vit": (EncoderConfig("timm:vit_tiny_patch16_224", image_size=64, overrides=VIT), (16, 32)),
    "timm-deit": (EncoderConfig("timm:deit_tiny_distilled_patch16_224", image_size=64, overrides=VIT),
                  (16, 32)),
    "timm-eva": (EncoderConfig("timm:eva02_tiny_patch14_224", image_size=56, overrides=VIT), (16, 32)),
    "timm-convnext": (EncoderConfig("timm:convnext_atto", image_size=64), (4, 320)),
    "timm-swin": (EncoderConfig("timm:swin_tiny_patch4_window7_224", image_size=64,
                                overrides={"embed_dim": 16, "depths": (1, 1, 1, 1)}), (4, 128)),
    "timm-resnet": (EncoderConfig("timm:resnet10t", image_size=64), (4, 512)),
    "timm-efficientnet": (EncoderConfig("timm:efficientnet_b0", image_size=64), (4, 1280)),
    "timm-regnet": (EncoderConfig("timm:regnetx_002", image_size=64), (4, 368)),
    "timm-maxvit": (EncoderConfig("timm:maxvit_pico_rw_256", image_size=64), (4, 256)),
    "open_clip-vit": (EncoderConfig("open_clip:ViT-B-32", image_size=64, overrides={
        "vision_cfg": {"layers": 2, "width": 64, "head_width": 32, "patch_size": 16}, **TEXT}), (16, 64)),
    "open_clip-convnext": (EncoderConfig("open_clip:convnext_base", image_size=64, overrides={
        "vision_cfg": {"timm_model_name": "convnext_atto"}, **TEXT}), (4, 320)),
    "open_clip-modified_resnet": (EncoderConfig("open_clip:RN50", image_size=64, overrides={
        "vision_cfg": {"layers": [1, 1, 1, 1], "width": 16}, **TEXT}), (4, 512)),
    "open_clip-eva": (EncoderConfig("open_clip:EVA02-B-16", image_size=56, overrides={
        "vision_cfg": {"timm_model_name": "eva02_tiny_patch14_224"}, **TEXT}), (16, 192)),
    "open_clip-siglip": (EncoderConfig("open_clip:ViT-B-16-SigLIP", image_size=32, overrides=TEXT), (4, 768)),
    "hf-clip": (EncoderConfig("hf:tiny-clip", config={"model_type": "clip_vision_model", **HF}), (16, 32)),
    "hf-siglip": (EncoderConfig("hf:tiny-siglip", config={"model_type": "siglip_vision_model", **HF}),
                  (16, 32)),
    "hf-dinov2": (EncoderConfig("hf:tiny-dinov2", config={"model_type": "dinov2", **HF}), (16, 32)),
    "hf-dinov3": (EncoderConfig("hf:tiny-dinov3",
                                config={"model_type": "dinov3_vit", "num_register_tokens": 2, **HF}),
                  (16, 32)),
    "hf-qwen2_5_vl": (EncoderConfig("hf:tiny-qwen2_5_vl", image_size=56, config=QWEN), (4, 48)),
}
PENULTIMATE = ["timm-vit", "timm-eva", "timm-convnext", "timm-swin", "timm-resnet", "open_clip-vit",
               "open_clip-modified_resnet", "open_clip-eva", "hf-clip", "hf-dinov3"]
CASES = ([(name, "last") for name in FAMILIES if name != "hf-qwen2_5_vl"]  # Qwen: against its processor
         + [(name, "penultimate") for name in PENULTIMATE])


def _grid(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, HW, C)."""
    return x.flatten(2).transpose(1, 2)


def library_tokens(enc, pixels: torch.Tensor, layer: str) -> torch.Tensor:
    """The tokens the encoder's own library returns for ``layer`` on normalised ``pixels``."""
    index, last = (1, True) if layer == "last" else (2, False)
    source = enc.cfg.source
    if source == "timm":
        if type(enc.model).__name__ == "EfficientNet" and last:
            return _grid(enc.model.forward_features(pixels))
        return _grid(enc.model.forward_intermediates(pixels, indices=index, norm=last, output_fmt="NCHW",
                                                     intermediates_only=True)[0])
    if source == "open_clip":
        # open_clip's own ViT: the last block before ln_post; timm trunks: with the trunk's final norm
        norm = last and hasattr(enc.visual, "trunk")
        out = enc.visual.forward_intermediates(pixels, indices=index, normalize_intermediates=norm,
                                               output_fmt="NCHW", intermediates_only=True)
        return _grid(out["image_intermediates"][0])
    out = enc.model(pixel_values=pixels, output_hidden_states=True)
    states = out.last_hidden_state if last else out.hidden_states[-2]
    patches = (pixels.shape[-1] // enc.model.config.patch_size) ** 2  # class and register tokens come first
    return states[:, -patches:]


@pytest.mark.parametrize("name,layer", CASES, ids=[f"{n}-{layer}" for n, layer in CASES])
def test_family_tokens_match_the_library(name, layer):
    cfg, last_shape = FAMILIES[name]
    torch.manual_seed(0)
    enc = create_encoder(EncoderConfig(**{**cfg.__dict__, "feature_layer": layer})).eval()
    pixels = torch.randn(2, 3, enc.image_size, enc.image_size)
    with torch.no_grad():
        ours, ref = enc.features(pixels), library_tokens(enc, pixels, layer)
        full = enc(torch.rand(2, 3, 40, 50))  # any input size: resized to the encoder's own
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert enc.output_shape() == tuple(full.shape[1:]) == tuple(ours.shape[1:])
    if layer == "last":
        assert enc.output_shape() == last_shape


def test_deit_keeps_class_and_distillation_tokens_on_request():
    cfg, _ = FAMILIES["timm-deit"]
    enc = create_encoder(EncoderConfig(**{**cfg.__dict__, "drop_cls": False})).eval()
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(enc.features(pixels), enc.model.forward_features(pixels), rtol=0, atol=0)
    assert enc.output_shape() == (18, 32)


def test_eva02_drops_its_class_token_in_timm_and_open_clip_alike():
    shapes = {name: create_encoder(FAMILIES[name][0]).output_shape()[0]
              for name in ("timm-eva", "open_clip-eva")}
    assert shapes == {"timm-eva": 16, "open_clip-eva": 16}


def test_qwen2_5_vl_matches_its_processor_and_vision_model():
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor
    from transformers import Qwen2VLImageProcessor

    cfg, shape = FAMILIES["hf-qwen2_5_vl"]
    torch.manual_seed(0)
    enc = create_encoder(cfg).eval()
    image = Image.fromarray(torch.randint(0, 256, (56, 56, 3), dtype=torch.uint8).numpy())
    proc = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, do_resize=False)
    inputs = proc(images=[image], return_tensors="pt")
    with torch.no_grad():
        ref = enc.model(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
        ours = enc(pil_to_tensor(image)[None].float() / 255)
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    torch.testing.assert_close(ours[0], ref, rtol=1e-5, atol=1e-5)
    assert enc.output_shape() == tuple(ours.shape[1:]) == shape


def test_qwen2_5_vl_at_native_resolution_follows_each_image():
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    from scopebench.models.encoders import ImageBatch

    cfg, _ = FAMILIES["hf-qwen2_5_vl"]
    enc = create_encoder(EncoderConfig(**{**cfg.__dict__, "aspect": "native", "min_pixels": 28 * 28 * 4,
                                          "max_pixels": 28 * 28 * 12})).eval()
    g = torch.Generator().manual_seed(0)
    for h, w in [(50, 130), (200, 90), (20, 20)]:
        image = Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())
        proc = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2,
                                     min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 12)
        inputs = proc(images=[image], return_tensors="pt")
        with torch.no_grad():
            ref = enc.model(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
            ours = enc(ImageBatch([image], 56))
        t, gh, gw = inputs["image_grid_thw"][0].tolist()
        assert enc.token_grid(image) == (gh // 2, gw // 2) and enc.tokens_for(image) == ours.shape[1]
        assert 4 <= ours.shape[1] <= 12
        torch.testing.assert_close(ours[0], ref, rtol=1e-5, atol=1e-5)


def test_siglip_attention_pool_head_is_kept_but_not_run():
    from scopebench.profiling.components import EncoderFeatures
    from scopebench.profiling.counters import count

    enc = create_encoder(FAMILIES["hf-siglip"][0]).eval()
    assert any(k.startswith("head.") for k in enc.model.state_dict())  # its weights still load
    pixels = torch.randn(1, 3, 32, 32)
    ours = count(EncoderFeatures(enc), (pixels,), "fvcore", "siglip").macs
    getattr(enc.model, "vision_model", enc.model).use_head = True
    with_head = count(EncoderFeatures(enc), (pixels,), "fvcore", "siglip").macs
    assert 0 < ours < with_head


def test_a_seeded_open_clip_build_draws_what_open_clip_draws():
    """Building the encoder draws from the global generator exactly what open_clip's own build does (a
    probe layer once drew more, so the demo recipe no longer regenerated its shipped checkpoints)."""
    import open_clip

    vision = {"layers": 2, "width": 64, "patch_size": 12, "head_width": 32, "image_size": 96}
    cfg = EncoderConfig("open_clip:ViT-B-32", image_size=96, overrides={"vision_cfg": vision, **TEXT})
    torch.manual_seed(0)
    ours = create_encoder(cfg)
    after_ours = torch.get_rng_state()
    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-32", pretrained=None, pretrained_image=False, pretrained_text=False,
                                 force_image_size=96, vision_cfg=vision, **TEXT)
    assert torch.equal(after_ours, torch.get_rng_state())
    mine = ours.visual.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in ref.visual.state_dict().items())


def test_timm_and_open_clip_load_without_wandb():
    """timm imports wandb (3.5 s of an eval) only for training logs: scopebench hides it while timm and
    open_clip load, and ``import wandb`` still finds it afterwards."""
    import subprocess
    import sys

    code = ("import importlib.util, sys\n"
            "from scopebench.models.encoders import import_vision_library\n"
            "import_vision_library('open_clip'); import_vision_library('timm'); import timm.utils\n"
            "assert 'timm' in sys.modules and 'wandb' not in sys.modules, 'wandb was imported'\n"
            "assert importlib.util.find_spec('wandb') is not None, 'wandb stayed hidden'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
