"""The prompt layout: where the template, the chat template and each image's visual tokens go."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from scopebench.cli import app
from scopebench.models.tokenizer import Layout, layout, layouts, render
from tests.test_llava_import import CHAT, make_llava, run_import


@pytest.fixture(scope="module")
def cfg(make_model):
    return make_model("all").cfg


def with_layout(cfg, **fields):
    return dataclasses.replace(cfg, **fields)


def test_images_go_at_their_placeholders(cfg, tokenizer):
    """The template's placeholder takes the images a prompt does not place itself; <image k> markers hold
    image k when interleave is on and stay text when it is off; a bare <image> takes the next image."""
    c = with_layout(cfg, prompt_template="Q: <image> {prompt} A:", interleave=True)
    assert render(c, tokenizer, "red", 2) == ("Q: <image><image> red A:", [0, 1])
    assert render(c, tokenizer, "is <image 2> red ?", 2) == ("Q: <image> is <image> red ? A:", [0, 1])
    assert render(c, tokenizer, "<image 3> red", 2)[1] == [0, 1]  # image 3 was dropped: the marker is text
    assert render(c, tokenizer, "<image> then <image 1>", 2) == ("Q: <image> <image> then <image> A:",
                                                                 [1, 0, 0])
    off = with_layout(c, interleave=False)
    assert render(off, tokenizer, "is <image 2> red ?", 2) == ("Q: <image><image> is <image 2> red ? A:",
                                                               [0, 1])
    lay = layout(c, tokenizer, "red", 1)  # "Q:", image, "red A:" with the word tokenizer
    assert lay.slots == [len(tokenizer("Q:", add_special_tokens=False)["input_ids"])]
    assert lay.ids == tokenizer("Q:", add_special_tokens=False)["input_ids"] + tokenizer(
        " red A:", add_special_tokens=False)["input_ids"]


def test_chat_template_with_system_prompt_and_an_image_token(tmp_path, cfg):
    """chat_template: the template's text is the user turn of the tokenizer's own chat template, after the
    system prompt; a tokenizer with an <image> token reads the whole text and its ids mark the slots."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(make_llava(tmp_path / "llava"))
    c = with_layout(cfg, prompt_template="<image>\n{prompt}", chat_template=True, system_prompt="Be brief.")
    text, order = render(c, tok, "hi", 1)
    assert text == "system: Be brief.\nuser: <image>\nhi\nassistant:" and order == [0]
    lay = layout(c, tok, "hi", 1)
    assert lay.ids == tok("system: Be brief.\nuser: \nhi\nassistant:")["input_ids"]
    assert lay.slots == [len("system: Be brief.\nuser: ")]  # one character, one token
    tok.chat_template = None
    with pytest.raises(Exception, match="chat_template is true but its tokenizer has no chat template"):
        render(c, tok, "hi", 1)


def _piece_by_piece(cfg, tok, prompt: str, n: int) -> Layout:
    """The layout as scopebench tokenised it before batching: one tokenizer call per text piece (or per
    text, for a tokenizer with an <image> token)."""
    text, order = render(cfg, tok, prompt, n)
    ids, slots = [], []
    if "<image>" in tok.get_added_vocab():
        for t in tok(text, add_special_tokens=cfg.add_special_tokens)["input_ids"]:
            if t == tok.convert_tokens_to_ids("<image>"):
                slots.append(len(ids))
            else:
                ids.append(t)
        return Layout(ids, slots, order)
    for k, piece in enumerate(text.split("<image>")):
        if k:
            slots.append(len(ids))
        ids += tok(piece, add_special_tokens=cfg.add_special_tokens and k == 0)["input_ids"]
    return Layout(ids, slots, order)


def test_a_batch_is_laid_out_as_each_prompt_alone(tmp_path, cfg, tokenizer):
    """One tokenizer call for a batch gives each prompt the ids and slots it gets alone, with several images,
    interleaved markers, special tokens and an <image> token of the tokenizer's own."""
    from transformers import AutoTokenizer

    llava = AutoTokenizer.from_pretrained(make_llava(tmp_path / "llava"))
    prompts = ["red", "is <image 2> red ?", "", "<image> then <image 1> blue", "what colour is it ?"]
    counts = [1, 2, 1, 2, 3]
    for tok, special in ((tokenizer, False), (tokenizer, True), (llava, True)):
        c = with_layout(cfg, prompt_template="Q: <image> {prompt} A:", interleave=True,
                        add_special_tokens=special)
        batch = layouts(c, tok, prompts, counts)
        assert batch == [_piece_by_piece(c, tok, p, n) for p, n in zip(prompts, counts, strict=True)]
        assert len({len(b.slots) for b in batch}) > 1 and all(b.ids for b in batch)


def test_several_images_of_a_request_reach_the_llm_at_their_slots(make_model):
    """A request's images each give their visual tokens at their slot: the logits are the LLM's on the text
    with [tokens of image 1, tokens of image 2] where the placeholder is, and change with the second image."""
    model = make_model("all")
    model.cfg = with_layout(model.cfg, prompt_template="what colour <image> is the shape ? {prompt}")
    g = torch.Generator().manual_seed(0)
    a, b, b2 = (torch.rand(1, 3, 32, 32, generator=g) for _ in range(3))
    ids, mask, layouts = model.encode_prompts(["red"], [2])
    route = model.paths()[0]
    with torch.no_grad():
        got = model([torch.cat([a, b])], ids, mask, layouts=layouts).logits[0]
        other = model([torch.cat([a, b2])], ids, mask, layouts=layouts).logits[0]
        x = torch.cat([a, b])
        vis = model.fuse(model.shared(x), model.encode_routed(x, route), route).flatten(0, 1)
        text = model.text_embeddings(ids)[0]
        s = layouts[0].slots[0]
        assert layouts[0].slots == [s, s] and layouts[0].images == [0, 1]
        seq = torch.cat([text[:s], vis, text[s:]])[None]
        want = model.llm(inputs_embeds=seq).logits[0]
    pos = torch.cat([torch.arange(s), torch.arange(s, ids.shape[1]) + len(vis)])
    torch.testing.assert_close(got[1:], want[pos[1:] - 1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[s:], other[s:])  # the second image is seen
    gen = model.generate([torch.cat([a, b])], ["red"], max_new_tokens=2)
    assert len(gen.texts) == 1 and gen.routes == [route]


def test_images_above_max_images_are_dropped_and_counted_in_the_manifest(tmp_path):
    """The adapter keeps max_images images per request and counts the rest; the run's manifest records the
    count per benchmark, and eval says so."""
    from PIL import Image

    from scopebench.evaluation.adapter import Request, ScopeLMM
    from scopebench.evaluation.runner import _note_dropped
    from scopebench.run_dir import RunDir

    lm = ScopeLMM("demo-baseline-0")
    lm.task_dict = {"t": {"test": {0: {"images": [Image.new("RGB", (8, 8))] * 3}}}}
    req = Request("q", {}, lambda doc: doc["images"], 0, "t", "test")
    kept, dropped = lm._visuals(req)
    assert len(kept) == 1 and dropped == 2
    run = RunDir(tmp_path / "run")
    traces = [{"fingerprint": lm.fingerprint, "images_dropped": dropped}, {"fingerprint": "other",
                                                                          "images_dropped": 5}]
    _note_dropped(run, "demo-baseline-0", "MMMU", traces, lm)
    _note_dropped(run, "demo-baseline-0", "GQA", [], lm)
    entry = run.manifest()["models"]["demo-baseline-0"]
    assert entry["images_dropped"] == {"MMMU": 2, "GQA": 0} and entry["max_images"] == 1


@pytest.mark.parametrize("template, extra, message", [
    ("<image><image>{prompt}", {}, "holds 2 '<image>' placeholders; it takes exactly one"),
    # a chat-template checkpoint says where its image goes (one with neither is an old, images-first one)
    ("{prompt}", {"chat_template": True}, "holds no '<image>' placeholder"),
])
def test_a_template_with_other_than_one_placeholder_is_refused(tmp_path, template, extra, message):
    from scopebench.paths import demo_checkpoints_dir

    ckpt = tmp_path / "ckpt"
    shutil.copytree(demo_checkpoints_dir() / "demo-baseline-0", ckpt)
    data = json.loads((ckpt / "scopebench.json").read_text())
    (ckpt / "scopebench.json").write_text(json.dumps({**data, "prompt_template": template, **extra}))
    result = CliRunner().invoke(app, ["models", str(ckpt)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "scopebench.json: prompt_template" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def llava_src(tmp_path_factory):
    return make_llava(tmp_path_factory.mktemp("bad") / "tiny-llava", chat_template=CHAT)


def _set(folder, **fields):
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, **fields}))


@pytest.mark.parametrize("spoil, message", [
    (lambda d: (d / "processor_config.json").unlink(), "image processor config is missing or unreadable"),
    (lambda d: (d / "processor_config.json").write_text("{not json"),
     "missing or unreadable (JSONDecodeError)"),
    (lambda d: _set(d, architectures=["Qwen2VLForConditionalGeneration"]),
     "architectures is ['Qwen2VLForConditionalGeneration'], not ['LlavaForConditionalGeneration']"),
    (lambda d: _set(d, vision_feature_layer=-3), "vision_feature_layer -3 is not the last (-1)"),
])
def test_import_refuses_what_it_cannot_convert(llava_src, tmp_path, spoil, message):
    src = tmp_path / "src"
    shutil.copytree(llava_src, src)
    spoil(src)
    code, out = run_import(src, tmp_path / "ckpt")
    assert code == 2 and message in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "ckpt").exists() and not list(tmp_path.glob(".ckpt.*"))


def test_the_flop_count_reads_the_prompt_layout(make_model):
    """The LLM's prefill is counted on --prompt-tokens plus the tokens the layout adds around the prompt."""
    from scopebench.profiling.components import layout_tokens, plan_model

    model = make_model("shared_only")
    assert layout_tokens(model) == 2  # "<image>{prompt} answer :"
    base = plan_model(model, 8)[0].llm_tokens
    model.cfg = with_layout(model.cfg, prompt_template="what colour is <image> the shape ? {prompt} answer :")
    assert layout_tokens(model) == 8
    assert plan_model(model, 8)[0].llm_tokens == base + 6
