"""`scopebench import llava-hf` against the reference implementations: transformers' own LLaVA forward and
generate, and lmms-eval's own `llava_hf` model on cambrian16-mini tasks."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from scopebench.cli import app

CHAT = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}")


def make_llava(folder, chat_template: str | None = CHAT, seed: int = 0):
    """A tiny random LLaVA (CLIP tower, Llama LLM, a character-level tokenizer with <image>,
    CLIPImageProcessor), with a large init scale so its answers change from prompt to prompt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                  bos_token="<s>", eos_token="</s>")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.chat_template = chat_template
    llm = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8)
    config = LlavaConfig(vision_config=vision, text_config=llm,
                         image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                         vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.4)
    model.save_pretrained(folder)
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=proc, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    processor.save_pretrained(folder)
    return folder


def run_import(src, out, *extra):
    result = CliRunner().invoke(app, ["import", "llava-hf", str(src), "-o", str(out), *extra])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava")
    src = make_llava(root / "tiny-llava")
    code, out = run_import(src, root / "ckpt")
    assert code == 0, out
    return src, root / "ckpt"


def _image(seed: int, size=(48, 40)):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(size[1], size[0], 3, generator=g) * 255).byte().numpy())


def test_logits_and_greedy_answers_equal_transformers(llava):
    """Same image (non-square: resized and centre-cropped by the processor) and prompt: scopebench's logits
    equal LlavaForConditionalGeneration's within 1e-4 (float32), and greedy answers are identical."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from scopebench.evaluation.adapter import request_images
    from scopebench.models.registry import load_model

    src, ckpt = llava
    ref = LlavaForConditionalGeneration.from_pretrained(src).eval()
    proc = AutoProcessor.from_pretrained(src)
    ours = load_model(str(ckpt))
    prompts = ["What colour is it?", "How many shapes?\nAnswer with a word.", "Is it left of the box?"]
    worst, answers = 0.0, []
    for k, prompt in enumerate(prompts):
        image = _image(k)
        text = proc.tokenizer.apply_chat_template([{"role": "user", "content": f"<image>\n{prompt}"}],
                                                  tokenize=False, add_generation_prompt=True)
        inputs = proc(images=[image], text=text, return_tensors="pt")
        images = request_images([image], 32)
        with torch.no_grad():
            want = ref(**inputs).logits[0]
            ids, mask, layouts = ours.encode_prompts([prompt])
            got = ours(images, ids, mask, layouts=layouts).logits[0]
            pos = (inputs["input_ids"][0] != ref.config.image_token_id).nonzero()[:, 0]  # text positions
            assert len(pos) == ids.shape[1] and pos[0] == 0 and not got[0].any()  # nothing predicts it
            # transformers' logits at position p predict token p + 1; ours at text index t predict token t
            worst = max(worst, float((got[1:] - want[pos[1:] - 1]).abs().max()))
            gen = ref.generate(**inputs, max_new_tokens=8, do_sample=False)
            answers.append((proc.tokenizer.decode(gen[0, inputs["input_ids"].shape[1]:],
                                                  skip_special_tokens=True).strip(),
                            ours.generate(images, [prompt], max_new_tokens=8).texts[0]))
    print(f"max abs logit difference vs transformers: {worst:.2e}")
    assert worst <= 1e-4
    assert all(a == b for a, b in answers), answers
    assert len({a for a, _ in answers}) == len(prompts)  # the answers depend on the prompt and image


TASKS = {"GQA": "c16mini_gqa", "MMVP": "c16mini_mmvp", "AI2D": "c16mini_ai2d"}
LIMIT = 6


def _samples(path) -> dict[int, str]:
    import json

    return {r["doc_id"]: r["resps"][0][0] for r in map(json.loads, path.read_text().splitlines())}


def test_answers_and_scores_equal_lmms_evals_own_llava_hf(llava, tmp_path):
    """cambrian16-mini tasks: the imported checkpoint under `scopebench eval` gives, sample for sample, the
    answers of lmms-eval's own `llava_hf` model on the original folder, and the same lmms-eval scores."""
    import pandas as pd
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from scopebench.paths import tasks_dir

    src, ckpt = llava
    manager = TaskManager(include_path=str(tasks_dir() / "cambrian16_mini"))
    theirs = simple_evaluate(model="llava_hf", model_args=f"pretrained={src},device=cpu,device_map=cpu",
                             tasks=list(TASKS.values()), task_manager=manager, limit=LIMIT, log_samples=True,
                             bootstrap_iters=0, batch_size=1, force_simple=True)
    result = CliRunner().invoke(app, ["eval", str(ckpt), "--tasks", ",".join(TASKS), "--limit", str(LIMIT),
                                      "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(tmp_path / "run" / "scores.parquet").set_index("benchmark")
    answers = set()
    for bench, task in TASKS.items():
        part = next((tmp_path / "run" / "parts").glob(f"*/{task}"))
        ours = _samples(part / "lmms_eval_samples.jsonl")
        ref = {s["doc_id"]: s["resps"][0][0] for s in theirs["samples"][task]}
        assert len(ref) == LIMIT and ours == {k: v.strip() for k, v in ref.items()}, (bench, ours, ref)
        want = theirs["results"][task]
        key = next(k for k in want if k.split(",")[0] == scores.loc[bench, "metric"])  # its one filter
        assert scores.loc[bench, "raw_score"] == want[key], (bench, scores.loc[bench], want)
        answers |= set(ours.values())
    assert len(answers) > LIMIT  # the answers differ from sample to sample
