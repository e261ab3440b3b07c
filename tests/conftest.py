"""Shared fixtures: tiny random-init models built from all three encoder sources."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SCOPEBENCH_CACHE", tempfile.mkdtemp(prefix="scopebench-cache-"))  # not the user's

CORPUS = [
    "what colour is the shape ? answer with one word . is there a red circle in the image ?",
    "red green blue yes no circle square triangle 0 1 2 3 4 5 6 7 8 9 a b c d",
]


def tiny_config_dict(policy: str = "router", fusion: str = "sequence", vocab: int = 64) -> dict:
    """A 3-encoder model (timm ViT shared; timm ConvNeXt, open_clip ViT, HF CLIP routed) with a 2-layer
    Qwen2 LLM."""
    return {
        "name": f"tiny-{policy.replace(':', '_').replace('/', '_')}",
        "llm": {"spec": "hf:tiny-qwen2", "config": {
            "model_type": "qwen2", "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 256, "tie_word_embeddings": False}},
        "shared": {"spec": "timm:vit_tiny_patch16_224", "image_size": 32,
                   "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8}},
        "routed": {
            "conv": {"spec": "timm:convnext_atto", "image_size": 32,
                     "overrides": {"dims": [8, 8, 16, 16], "depths": [1, 1, 1, 1]}},
            "oclip": {"spec": "open_clip:ViT-B-32", "image_size": 32, "overrides": {
                "vision_cfg": {"layers": 1, "width": 32, "patch_size": 16, "head_width": 16,
                               "image_size": 32},
                "text_cfg": {"layers": 1, "width": 32, "heads": 2, "context_length": 8, "vocab_size": 64},
                "embed_dim": 16}},
            "hfclip": {"spec": "hf:tiny-clip", "config": {
                "model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2, "image_size": 32, "patch_size": 8}},
        },
        "fusion": fusion,
        "policy": policy,
        "router": {"dim": 16, "heads": 2},
        "prompt_template": "<image>{prompt} answer :",
        "max_new_tokens": 4,
    }


def assert_same_forward(loaded, want, *inputs) -> None:
    """``loaded`` (a model read from a checkpoint) answers ``inputs`` as the output ``want`` says.

    Its weights are memory-mapped from the file, at offsets a CPU's BLAS may treat as unaligned and
    round differently (seen: logits 6e-8 apart on an AVX2 machine): as loaded, the same routes and
    logits to float32 rounding; with every tensor moved to fresh memory, the very same logits.
    """
    import torch

    got = loaded(*inputs)
    assert got.routes == want.routes
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-6)
    with torch.no_grad():
        loaded._apply(torch.clone)  # every parameter and buffer, as .to() moves them (ties kept)
    assert torch.equal(loaded(*inputs).logits, want.logits)


@pytest.fixture(scope="session")
def tokenizer():
    from scopebench.models.tokenizer import build_word_tokenizer

    return build_word_tokenizer(CORPUS)


@pytest.fixture(scope="session")
def make_model(tokenizer):
    from scopebench.config import config_from_dict
    from scopebench.models.build import build_model

    def make(policy: str = "router", fusion: str = "sequence"):
        cfg = config_from_dict(tiny_config_dict(policy, fusion, vocab=len(tokenizer)), "tiny")
        return build_model(cfg, tokenizer=tokenizer)

    return make
