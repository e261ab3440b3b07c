"""Vision disabled (``/blind``): routes chosen on the real image, every encoder feeding the LLM sees black."""

from __future__ import annotations

import pytest
import torch

PROMPTS = ["is there a red circle ?", "what colour is the shape ?", "a", "b c d 1 2 3", "red", "square ?"]


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 40, 40, generator=torch.Generator().manual_seed(seed))


def _forced(model, monkeypatch, routes, probs, call, *args):
    """``call(*args)`` with the router's choice replaced by ``routes`` / ``probs``."""
    with monkeypatch.context() as m:
        m.setattr(model, "choose_routes", lambda *_: (routes, probs))
        return call(*args)


CASES = [("router", "sequence"), ("router", "channel"), ("router_topk:2", "sequence")]


@pytest.mark.parametrize("policy, fusion", CASES)
def test_blind_keeps_the_routes_and_answers_from_black_images(make_model, monkeypatch, policy, fusion):
    """Forward, generate and loglikelihood under ``/blind``: routes and router probabilities are the seeing
    model's; logits, answers and effective ranks are those of black images on the seeing model's routes."""
    model = make_model(policy, fusion)
    for seed in range(3):
        images = _images(len(PROMPTS), seed)
        black = torch.zeros_like(images)
        ids, mask, _ = model.encode_prompts(PROMPTS)
        model.set_policy(policy)
        seeing = model(images, ids, mask)
        forced = _forced(model, monkeypatch, seeing.routes, seeing.probs, model, black, ids, mask)
        seeing_gen = model.generate(images, PROMPTS, max_new_tokens=3)
        forced_gen = _forced(model, monkeypatch, seeing_gen.routes, seeing_gen.probs,
                             model.generate, black, PROMPTS, 3)
        conts = ["red"] * len(PROMPTS)
        seeing_ll = model.loglikelihood(images, PROMPTS, conts)
        forced_ll = _forced(model, monkeypatch, seeing_ll[1], seeing_ll[2],
                            model.loglikelihood, black, PROMPTS, conts)
        on_black = model(black, ids, mask)
        model.set_policy(f"{policy}/blind")
        blind = model(images, ids, mask)
        assert blind.routes == seeing.routes and torch.equal(blind.probs, seeing.probs)
        assert not torch.equal(on_black.probs, seeing.probs)  # the router reads the image
        assert torch.equal(blind.logits, forced.logits) and not torch.allclose(blind.logits, seeing.logits)
        for name, ranks in forced.eranks.items():  # eranks describe what feeds the LLM
            torch.testing.assert_close(blind.eranks[name], ranks, equal_nan=True, rtol=0, atol=0)
        assert not torch.equal(blind.eranks["shared"], seeing.eranks["shared"])
        gen = model.generate(images, PROMPTS, max_new_tokens=3)
        assert gen.routes == seeing_gen.routes and torch.equal(gen.probs, seeing_gen.probs)
        assert gen.texts == forced_gen.texts
        ll = model.loglikelihood(images, PROMPTS, conts)
        assert ll[1] == seeing_ll[1] and torch.equal(ll[2], seeing_ll[2])
        assert ll[0] == forced_ll[0] and ll[0] != seeing_ll[0]


def test_blind_demo_checkpoint_routes_like_its_seeing_model():
    """The shipped ``demo-scope@blind`` picks the routes ``demo-scope`` picks, with the same probabilities."""
    from scopebench.models.registry import load_model

    seeing, blind = load_model("demo-scope"), load_model("demo-scope@blind")
    size = seeing.cfg.shared.image_size
    prompts = ["What colour is the shape?", "Is the circle left of the square?", "How many shapes are there?",
               "What is written in the image?", "Is there a red shape?", "Which shape is largest?"]
    images = torch.rand(len(prompts), 3, size, size, generator=torch.Generator().manual_seed(0))
    images[:2] = 0.5 * images[:2].round()  # a few high-contrast images beside noise
    a, b = (m.generate(images, prompts, max_new_tokens=4) for m in (seeing, blind))
    assert b.routes == a.routes and torch.equal(b.probs, a.probs)
    assert len(set(a.routes)) > 1  # not one route for all: the routes follow the images
    assert not torch.equal(b.eranks["shared"], a.eranks["shared"])
