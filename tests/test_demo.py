"""The shipped demo: checkpoints load and answer; the training recipe runs."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from scopebench.demo.train import DEMO_MODELS, train_all
from scopebench.errors import ScopebenchError
from scopebench.models.registry import demo_models, load_model


def test_shipped_demo_models_load_and_answer():
    assert set(demo_models()) == set(DEMO_MODELS)
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    prompts = ["How many circles are there?\nAnswer the question using a single word or phrase."] * 3
    for name in DEMO_MODELS:
        model = load_model(name)
        out = model.generate(images, prompts)
        assert len(out.texts) == 3 and all(isinstance(t, str) and t for t in out.texts)
        assert (out.probs is not None) == (name == "demo-scope")


def test_loading_an_open_clip_checkpoint_does_not_claim_random_weights(caplog):
    """open_clip logs "Model initialized randomly" for every build without a pretrained tag; the
    checkpoint's weights are loaded right after, so scopebench drops that misleading line."""
    with caplog.at_level(logging.WARNING):
        model = load_model("demo-baseline-1-clip")
    assert "clip" in model.routed
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]


def test_corrupt_demo_checkpoint_names_the_recipe(tmp_path, monkeypatch):
    from scopebench.models import registry

    copy = tmp_path / "demo-scope"
    shutil.copytree(demo_models()["demo-scope"], copy)
    (copy / "model.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setattr(registry, "demo_models", lambda: {"demo-scope": copy})
    with pytest.raises(ScopebenchError, match="regenerate it with `scopebench demo train`"):
        load_model("demo-scope")
    shutil.copyfile(demo_models()["demo-scope"] / "model.safetensors", copy / "model.safetensors")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ScopebenchError, match="tokenizer.json: missing"):
        load_model("demo-scope")
    config = copy / "scopebench.json"
    config.write_text(config.read_text().replace('"policy": "router"', '"policy": "bogus"'))
    with pytest.raises(ScopebenchError, match=r"scopebench.json: policy: unknown policy 'bogus'"):
        load_model("demo-scope")


def test_training_recipe_runs_a_few_steps(tmp_path, capsys):
    train_all(output=tmp_path, steps=2, only=["demo-scope"])
    log = capsys.readouterr().out
    assert "warm-up" in log and "joint stage" in log
    assert log.count("content_loss=") >= 4, "the content head must train in the joint and SCOPE stages"
    model = load_model(str(tmp_path / "demo-scope"))
    assert model.router is not None and model.policy.kind == "router"
    assert len(model.generate(torch.rand(1, 3, 128, 128), ["What colour is the shape?"]).texts) == 1


def test_training_recipe_refuses_bad_options(tmp_path):
    with pytest.raises(ScopebenchError, match="--steps must be >= 1, got 0"):
        train_all(output=tmp_path, steps=0)
    with pytest.raises(ScopebenchError, match="--only: unknown demo model 'nope'"):
        train_all(output=tmp_path, only=["nope"])
    with pytest.raises(ScopebenchError, match="--only is empty"):
        train_all(output=tmp_path, only=[])
    (tmp_path / "file").write_text("")
    with pytest.raises(ScopebenchError, match="is a file; give a folder"):
        train_all(output=tmp_path / "file", steps=1)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # nothing written


def test_training_recipe_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    for run in ("a", "b"):
        train_all(output=tmp_path / run, steps=2, only=["demo-baseline-0"])
    first, second = (tmp_path / run / "demo-baseline-0" for run in "ab")
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "same seeds must give bit-identical weights"
    for name in ("scopebench.json", "tokenizer.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_position_embeddings_are_redrawn_for_every_vit():
    """The recipe re-draws the position embeddings of all three ViT sources (timm, transformers, open_clip)
    at std 0.5; a library renaming its parameter would silently leave that encoder position-blind."""
    from scopebench.config import config_from_dict
    from scopebench.demo.train import POSITION_STD, demo_config, init_position_embeddings
    from scopebench.demo.world import vocabulary_corpus
    from scopebench.models.build import build_model
    from scopebench.models.tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer(vocabulary_corpus())
    model = build_model(config_from_dict(demo_config("x", "random", len(tokenizer)), "demo"), tokenizer)
    names = init_position_embeddings(model)
    assert (sorted(".".join(n.split(".")[:2]) for n in names)
            == ["routed.clip", "routed.hires", "shared.model"])
    params = dict(model.named_parameters())
    assert all(abs(params[n].std().item() - POSITION_STD) < 0.05 for n in names)


def test_content_targets_are_the_right_options_first_word():
    """The content head's target: first token of the right option's text ("A. text" and "(A) text"
    layouts); -100 (ignored) where the answer is not an option letter."""
    from PIL import Image

    from scopebench.demo.train import training_set
    from scopebench.models.tokenizer import build_word_tokenizer

    img = Image.new("RGB", (64, 64))
    examples = [
        {"image": img, "prompt": "What colour?\nA. red\nB. dark blue\nAnswer with the letter.",
         "answer": "B"},
        {"image": img, "prompt": "Which is closer?\n(A) yellow ball\n(B) purple ball", "answer": "A"},
        {"image": img, "prompt": "What colour?\nAnswer with a word.", "answer": "red"},
        {"image": img, "prompt": "How many?\nA. 3\nB. 4", "answer": "5"},
    ]
    tok = build_word_tokenizer([f"{ex['prompt']} {ex['answer']}" for ex in examples])
    data = training_set(tok, examples)

    def first(word):
        return tok(word, add_special_tokens=False)["input_ids"][0]

    assert data["content"].tolist() == [first("dark"), first("yellow"), -100, -100]
    assert data["images"].shape == (4, 3, 128, 128) and data["images"].dtype == torch.uint8


def test_warmup_examples_are_deterministic_open_questions():
    from scopebench.demo.world import OPEN_INSTRUCTION, pixel_digest, warmup_examples

    a, b = warmup_examples(10), warmup_examples(10)
    assert [pixel_digest(x["image"]) for x in a] == [pixel_digest(x["image"]) for x in b]
    assert [x["answer"] for x in a] == [x["answer"] for x in b]
    assert all(x["prompt"].endswith(OPEN_INSTRUCTION) and x["answer"] for x in a)
    assert len({pixel_digest(x["image"]) for x in a}) == 10
