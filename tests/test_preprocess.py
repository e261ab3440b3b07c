"""Each encoder's own preprocessing: the shared canvas (aspect ``canvas``, what the demo checkpoints were
trained with) gives the same pixels and scores as before; ``squash`` / ``pad`` / ``crop`` run the encoder
library's transform on the original image."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from scopebench.config import EncoderConfig
from scopebench.errors import ScopebenchError
from scopebench.evaluation.adapter import request_images
from scopebench.models.encoders import ImageBatch, create_encoder


def _random_images() -> list:
    g = torch.Generator().manual_seed(0)
    sizes = [(100, 150), (128, 128), (60, 200), (300, 90)]
    return [Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())
            for h, w in sizes] + [None]


def _old_canvas(images: list, size: int) -> torch.Tensor:
    """scopebench's pipeline before per-encoder preprocessing (adapter.images_to_tensor, verbatim)."""
    out = []
    for v in images:
        img = v if isinstance(v, Image.Image) else Image.new("RGB", (size, size))
        img = img.convert("RGB").resize((size, size), Image.BICUBIC)
        out.append(pil_to_tensor(img).float() / 255.0)
    return torch.stack(out)


@pytest.mark.parametrize("policy", ["router", "all", "all/blind"])
def test_demo_canvas_gives_identical_logits_and_routes(policy):
    from scopebench.models.registry import load_model

    model = load_model("demo-scope", policy=policy).eval()
    assert {e.cfg.aspect for e in [model.shared, *model.routed.values()]} == {"canvas"}
    images, size = _random_images(), model.cfg.image_size
    prompts = ["what colour is the shape?", "how many?", "is it on the left?", "read the text", "x"]
    before = model.loglikelihood(_old_canvas(images, size), prompts, ["yes", "no", "2", "ab", "x"])
    after = model.loglikelihood(request_images(images, size), prompts, ["yes", "no", "2", "ab", "x"])
    assert before[0] == after[0] and before[1] == after[1]
    assert before[2] is None or torch.equal(before[2], after[2])
    gen_before, gen_after = model.generate(_old_canvas(images, size), prompts), model.generate(
        request_images(images, size), prompts)
    assert gen_before.texts == gen_after.texts and gen_before.routes == gen_after.routes


def test_image_batch_joins_and_slices_like_a_tensor():
    images = _random_images()
    batch = request_images(images, 64)
    whole = batch.canvas()
    torch.testing.assert_close(whole, _old_canvas(images, 64), rtol=0, atol=0)
    joined = torch.stack([batch[0], batch[1:3]])  # as the model joins each request's first image
    assert len(joined) == 3 and torch.equal(joined.canvas(), whole[:3])
    assert torch.equal(batch[torch.tensor([4, 0])].canvas(), whole[[4, 0]])
    assert torch.zeros_like(batch).canvas().abs().max() == 0
    per_request = request_images([images[:2], [], images[2]], 64)
    assert [len(b) for b in per_request] == [2, 1, 1]


def test_images_memo_keeps_each_images_canvas_and_resamples_for_other_models():
    """A run's other models get the first model's canvas and resamples of an image (per image, so any batch
    of them holds the same pixels as one made afresh); over the budget, nothing is kept."""
    from scopebench.evaluation.adapter import DocImages
    from scopebench.models.registry import load_model

    model = load_model("demo-scope").eval()
    size = model.cfg.image_size
    docs = DocImages()
    images = docs.get(("task", "test", 0), lambda: _random_images()[:4])
    first, again = request_images(images, size, memo=docs.memo), request_images(images[::-1], size,
                                                                                  memo=docs.memo)
    fresh = request_images(images[::-1], size)
    for enc in (model.shared, *model.routed.values()):
        first.pixels(enc)
        assert torch.equal(again.pixels(enc), fresh.pixels(enc)), enc.cfg.spec
    assert torch.equal(request_images(images[1:3], size, memo=docs.memo).canvas(), fresh.canvas()[[2, 1]])
    # the kept rows are what is read: a planted one shows through
    kept = docs.memo._kept[id(images[0])][1]
    assert set(kept) == {("canvas", size), *(("resample", size, n, "bicubic") for n in (64, 96))}
    kept[("canvas", size)] = torch.zeros_like(kept[("canvas", size)])
    assert request_images(images[:2], size, memo=docs.memo).canvas()[0].abs().max() == 0
    assert model.generate(again, ["x"] * 4).texts == model.generate(fresh, ["x"] * 4).texts

    tight = DocImages(budget=100 * 150 * 3)  # the first image and nothing more
    held = tight.get(("task", "test", 0), lambda: _random_images()[:1])
    request_images(held, size, memo=tight.memo).canvas()
    assert tight.memo.used == 100 * 150 * 3 and not tight.memo._kept[id(held[0])][1]
    other = tight.get(("task", "test", 1), lambda: _random_images()[1:2])
    assert ("task", "test", 1) not in tight.images and id(other[0]) not in tight.memo._kept


TINY_TEXT = {"layers": 1, "width": 32, "heads": 1, "context_length": 8, "vocab_size": 64}
TINY_CLIP = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
             "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 16}
ENCODERS = {
    "timm": EncoderConfig("timm:vit_tiny_patch16_224", image_size=32,
                          overrides={"embed_dim": 32, "depth": 1, "num_heads": 2}),
    "open_clip": EncoderConfig("open_clip:ViT-B-32", image_size=32, overrides={
        "vision_cfg": {"layers": 1, "width": 32, "head_width": 32, "patch_size": 16}, "text_cfg": TINY_TEXT,
        "embed_dim": 32}),
    "hf": EncoderConfig("hf:tiny-clip", config=TINY_CLIP),
}


def _stripes() -> Image.Image:
    """A 2:1 image: a red quarter, a green half, a blue quarter (left to right)."""
    img = Image.new("RGB", (128, 64), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, 32, 64))
    img.paste((0, 0, 255), (96, 0, 128, 64))
    return img


def _colour(enc, aspect: str) -> torch.Tensor:
    """The stripes prepared by ``enc`` under ``aspect``, back in [0, 1] (3, 32, 32)."""
    enc.cfg.aspect = aspect
    pixels = ImageBatch([_stripes()], 128).pixels(enc)[0]
    return pixels * enc.std[0] + enc.mean[0]


@pytest.mark.parametrize("source", list(ENCODERS))
def test_aspect_policies_on_the_original_image(source):
    enc = create_encoder(EncoderConfig(**ENCODERS[source].__dict__))
    mean = enc.mean.flatten()
    squash = _colour(enc, "squash")  # all of it, squeezed: red left, blue right
    assert squash[0, 16, 2] > 0.9 and squash[2, 16, 29] > 0.9 and squash[1, 16, 16] > 0.9
    crop = _colour(enc, "crop")  # the central square: green only
    assert crop[1].min() > 0.9 and crop[0].max() < 0.1 and crop[2].max() < 0.1
    pad = _colour(enc, "pad")  # the whole image in the middle band, the mean colour above and below
    torch.testing.assert_close(pad[:, 2, 16], mean, atol=1 / 255 + 1e-4, rtol=0)
    torch.testing.assert_close(pad[:, 29, 16], mean, atol=1 / 255 + 1e-4, rtol=0)
    assert pad[0, 16, 2] > 0.9 and pad[1, 16, 16] > 0.9 and pad[2, 16, 29] > 0.9
    canvas = _colour(enc, "canvas")  # the old path: a square canvas, then resampled: squashed as well
    assert canvas[0, 16, 2] > 0.9 and canvas[2, 16, 29] > 0.9
    with torch.no_grad():
        assert enc(ImageBatch([_stripes()], 128)).shape[1:] == enc.output_shape()


def test_bad_aspect_and_missing_processor_config(tmp_path):
    with pytest.raises(ScopebenchError, match="aspect must be one of canvas, squash, pad, crop"):
        create_encoder(EncoderConfig(**{**ENCODERS["timm"].__dict__, "aspect": "letterbox"}))
    from transformers import CLIPVisionConfig

    CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                     image_size=32, patch_size=16).save_pretrained(tmp_path)
    enc = create_encoder(EncoderConfig(f"hf:{tmp_path}", aspect="pad"))
    with pytest.raises(ScopebenchError, match="preprocessor_config.json is missing or unreadable"):
        ImageBatch([_stripes()], 64).pixels(enc)


def test_native_resolution_model_encodes_each_image_at_its_own_grid(tokenizer):
    from scopebench.config import config_from_dict
    from scopebench.models.build import build_model
    from tests.conftest import tiny_config_dict

    data = tiny_config_dict("router", vocab=len(tokenizer))
    data["shared"] = {"spec": "hf:tiny-qwen2_5_vl", "aspect": "native", "min_pixels": 28 * 28 * 4,
                      "max_pixels": 28 * 28 * 12, "config": {
                          "model_type": "qwen2_5_vl_vision", "depth": 1, "hidden_size": 32,
                          "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32, "patch_size": 14,
                          "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                          "fullatt_block_indexes": [0]}}
    model = build_model(config_from_dict(data, "tiny-native"), tokenizer=tokenizer).eval()
    g = torch.Generator().manual_seed(1)
    images = [Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())
              for h, w in [(56, 56), (56, 140), (56, 56), (150, 60)]]
    prompts = ["is there a red circle ?", "what colour is the shape ?", "a b c", "yes"]
    batch = ImageBatch(images, 32)
    scored, routes, probs, eranks = model.loglikelihood(batch, prompts, ["red"] * 4)
    for k in range(4):  # batched by token grid = one sample at a time
        alone = model.loglikelihood(ImageBatch(images[k:k + 1], 32), prompts[k:k + 1], ["red"])
        assert alone[1] == routes[k:k + 1]
        assert abs(alone[0][0][0] - scored[k][0]) < 1e-4
        torch.testing.assert_close(alone[2][0], probs[k], rtol=1e-5, atol=1e-6)
        assert abs(float(alone[3]["shared"][0]) - float(eranks["shared"][k])) < 1e-3
    grids = [model.shared.tokens_for(img) for img in images]
    assert grids == [4, 10, 4, 10]
    routed = {e: enc.num_tokens for e, enc in model.routed.items()}
    assert [model.visual_tokens(batch[k], routes[k]) for k in range(4)] == [
        grids[k] + sum(routed[e] for e in routes[k]) for k in range(4)]


def test_expected_visual_tokens_come_from_each_samples_own_count():
    import pandas as pd

    from scopebench.analysis.compute import expected_costs

    routes = pd.DataFrame({"model": "m", "benchmark": ["A", "A", "B"], "doc_id": [0, 1, 0],
                           "route": "shared", "visual_tokens": [10, 20, None]})
    costs = pd.DataFrame([{"model": "m", "kind": "path", "path": "shared", "component": "total",
                           "visual_tokens": 16, "macs": 100.0, "params": 5}])
    out = expected_costs(routes, costs).set_index("benchmark")
    assert out.loc["A", "visual_tokens"] == 15.0 and out.loc["B", "visual_tokens"] == 16.0  # B: one unknown
    assert out.loc["A", "macs"] == out.loc["B", "macs"] == 100.0
