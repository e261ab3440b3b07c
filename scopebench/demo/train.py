"""The demo recipe: train the tiny SCOPE model and its baselines on the synthetic world, on CPU.

One command (``scopebench demo train``), fixed seeds. Training data come from world seeds
disjoint from the cambrian16-mini suite's. Three stages, as multi-encoder VLMs are usually built:

1. warm-up (alignment): one model with every encoder learns easy perception, facts about shape scenes
   asked openly (colour, shape, location, count, size), so the vision pathway starts to carry content;
2. joint stage: the same model learns the 16 mini tasks' training data; each sample takes the shared
   encoder plus one routed encoder drawn at random (the ``random`` policy), so a step costs one path;
3. variant stage: each demo model starts from the joint weights of the modules it has and is
   fine-tuned with its own policy: Baseline-0 (shared only), Baseline-1 per routed encoder,
   Baseline-all, and SCOPE, whose new router is trained with the dual entropy losses.

In the joint and variant stages a content head (a linear layer, training only) predicts the first
word of the right option's text from the LLM's last hidden state where an option letter is
predicted: a from-scratch LLM otherwise learns each lettered task's letter prior and ignores the
image (see ``docs/demo-training-notes.md`` and ``benchmarks/probe_demo_skill.py``).

The demo encoders come from all three sources and differ by design: a low-resolution ViT
(timm, 64 px) as the shared encoder; a high-resolution ViT (transformers CLIP, 128 px, the
costliest path), a convolutional net (timm ConvNeXt, 96 px) and a mid-resolution ViT (open_clip,
96 px) as routed encoders. Every ViT patch spans 16 px or less of the 128 px scene: with coarser
patches these from-scratch models never learned to use the image at all (loss unchanged when
images were shuffled across the batch), and small objects carry most questions here.

The ViTs' position embeddings are re-drawn at a larger scale before training (see
:func:`init_position_embeddings`): at the libraries' default scale these from-scratch models never
learned where anything is (a single shape's quadrant stayed at chance after 300 steps; at std 0.5 it
is answered 100% right after the same 300 steps).
"""

from __future__ import annotations

import copy
import itertools
import time
from pathlib import Path

import torch

from scopebench.config import Policy, config_from_dict
from scopebench.errors import ScopebenchError

SEED = 0
TRAIN_SEEDS_PER_TASK = 400
ROUTED = ("hires", "conv", "clip")
DEMO_MODELS = {
    "demo-baseline-0": "shared_only",
    **{f"demo-baseline-1-{e}": f"fixed:{e}" for e in ROUTED},
    "demo-baseline-all": "all",
    "demo-scope": "router",
    # every pair of routed encoders, retrained: with the models above, all subsets for `sweep` / `roles`
    **{f"demo-baseline-2-{a}+{b}": f"fixed:{a},{b}" for a, b in itertools.combinations(ROUTED, 2)},
}
WARMUP_STEPS, JOINT_STEPS, VARIANT_STEPS, BATCH = 500, 800, 160, 32
WARMUP_EXAMPLES = 6000
JOINT_LR = 2e-3
POSITION_STD = 0.5
POSITION_PARAMS = ("pos_embed", "positional_embedding", "position_embedding.weight")


def demo_config(name: str, policy: str, vocab: int) -> dict:
    """The demo architecture with the routed pool pruned to what ``policy`` uses."""
    routed = {
        "hires": {"spec": "hf:scopebench-demo/hires-vit", "image_size": 128, "config": {
            "model_type": "clip_vision_model", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": 128, "patch_size": 8}},
        "conv": {"spec": "timm:convnext_atto", "image_size": 96, "feature_layer": "penultimate",
                 "overrides": {"dims": [24, 48, 64, 96], "depths": [1, 1, 2, 1]}},
        "clip": {"spec": "open_clip:ViT-B-32", "image_size": 96, "overrides": {
            "vision_cfg": {"layers": 2, "width": 64, "patch_size": 12, "head_width": 32, "image_size": 96},
            "text_cfg": {"layers": 1, "width": 32, "heads": 2, "context_length": 8, "vocab_size": 64},
            "embed_dim": 32}},
    }
    keep = Policy.parse(policy, list(ROUTED), where=f"demo model '{name}'").encoders_used(list(ROUTED))
    return {
        "name": name,
        "description": "scopebench demo model (synthetic world, CPU-trained; not a paper result)",
        "llm": {"spec": "hf:scopebench-demo/tiny-qwen2", "config": {
            "model_type": "qwen2", "vocab_size": vocab, "hidden_size": 96, "intermediate_size": 192,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 1024, "tie_word_embeddings": False}},
        "shared": {"spec": "timm:vit_tiny_patch16_224", "image_size": 64,
                   "overrides": {"embed_dim": 64, "depth": 2, "num_heads": 2, "patch_size": 8}},
        "routed": {k: v for k, v in routed.items() if k in keep},
        "projector": "mlp2x_gelu",
        "fusion": "sequence",
        "policy": policy,
        "router": {"dim": 48, "heads": 2, "batch_entropy_weight": 0.2, "sample_entropy_weight": 0.05,
                   "load_balance_weight": 0.01, "train_mode": "soft"},
        "image_size": 128,
        "prompt_template": "<image>{prompt}", "interleave": False,  # the trained layout: the image first
        "max_new_tokens": 6,
        "seed": SEED,
    }


def training_set(tokenizer, examples: list[dict]) -> dict[str, torch.Tensor]:
    """Examples ``{"image", "prompt", "answer"}`` as tensors: uint8 images, token ids, labels (answer +
    eos) and content targets (first token of the right option's text; -100 if the answer is no letter)."""
    from torchvision.transforms.functional import pil_to_tensor

    from scopebench.demo.world import options

    images, seqs, labels, content = [], [], [], []
    for ex in examples:
        prompt = tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"]
        answer = tokenizer(ex["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        images.append(pil_to_tensor(ex["image"].convert("RGB").resize((128, 128))))
        seqs.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
        parsed = options(ex["prompt"], ex["answer"])
        content.append(tokenizer(parsed[3], add_special_tokens=False)["input_ids"][0] if parsed else -100)
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    lab = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        lab[i, : len(lb)] = torch.tensor(lb)
    return {"images": torch.stack(images), "ids": ids, "labels": lab, "content": torch.tensor(content)}


def train(model, data: dict[str, torch.Tensor], steps: int, lr: float, seed: int,
          head: torch.nn.Linear | None = None, log=print) -> torch.nn.Linear | None:
    """AdamW with warm-up and cosine decay; batches drawn with a fixed generator.

    If ``data`` has content targets (``"content"``, any >= 0), the content head (``head``, or a new one)
    is trained alongside: the cross-entropy of its prediction from ``answer_hidden`` is added to the
    loss. Returns the head.
    """
    use_head = "content" in data and bool((data["content"] >= 0).any())
    if use_head and head is None:
        vocab = model.llm.get_output_embeddings().out_features
        head = torch.nn.Linear(model.llm.get_input_embeddings().embedding_dim, vocab)
    params = [*model.parameters(), *(head.parameters() if use_head else [])]
    model.train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    n = data["ids"].shape[0]
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(n, (BATCH,), generator=gen)
        ids, labels = data["ids"][idx], data["labels"][idx]
        lengths = _lengths(labels)
        width = int(lengths.max())
        ids, labels = ids[:, :width], labels[:, :width]
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        first = (labels != -100).long().argmax(1)  # text index of each answer's first token
        out = model(data["images"][idx].float() / 255.0, ids, mask, labels=labels,
                    hidden_at=first if use_head else None)
        loss, aux = out.loss, {k: v for k, v in out.aux.items() if k != "lm_loss"}
        target = data["content"][idx] if use_head else None
        if use_head and bool((target >= 0).any()):
            aux["content_loss"] = torch.nn.functional.cross_entropy(head(out.answer_hidden), target,
                                                                    ignore_index=-100)
            loss = loss + aux["content_loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            extra = "".join(f" {k}={v.item():.3f}" for k, v in aux.items())
            log(f"  step {step:4d}/{steps} loss={out.aux['lm_loss'].item():.3f}{extra} "
                f"({time.perf_counter() - start:.0f}s)")
    model.eval()
    return head


def init_position_embeddings(model, std: float = POSITION_STD) -> list[str]:
    """Re-draw every vision encoder's position embedding from N(0, std); returns the parameter names.

    timm and transformers ViTs start them at std 0.02 and open_clip at width^-0.5, far below the
    scale of the patch embeddings they are added to: a pretrained ViT has learned large ones, but a
    from-scratch tiny ViT keeps its tokens nearly position-blind for longer than the recipe trains.
    """
    names = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("llm.") and name.endswith(POSITION_PARAMS):
                param.normal_(0.0, std)
                names.append(name)
    return names


def _lengths(labels: torch.Tensor) -> torch.Tensor:
    """Real length of each right-padded sequence = last labelled position + 1."""
    pos = torch.arange(labels.shape[1]).expand_as(labels)
    return torch.where(labels != -100, pos, torch.zeros_like(pos)).max(1).values + 1


def _transfer(src, dst) -> None:
    """Copy every tensor ``dst`` shares (by name and shape) with the joint model."""
    own = dst.state_dict()
    shared = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
    dst.load_state_dict(shared, strict=False)


def train_all(output: Path | None = None, steps: int | None = None, only: list[str] | None = None) -> None:
    """`scopebench demo train`: build the tokenizer and data, run the three stages, save the checkpoints."""
    from scopebench.demo.world import (
        TASKS,
        TRAIN_SEED_START,
        training_examples,
        vocabulary_corpus,
        warmup_examples,
    )
    from scopebench.models.build import build_model
    from scopebench.models.checkpoint import save_checkpoint
    from scopebench.models.tokenizer import build_word_tokenizer
    from scopebench.paths import demo_checkpoints_dir

    if steps is not None and steps < 1:
        raise ScopebenchError(f"--steps must be >= 1, got {steps}")
    unknown = sorted(set(only or []) - set(DEMO_MODELS))
    if unknown:
        raise ScopebenchError(f"--only: unknown demo model '{unknown[0]}'; "
                              f"choose from {', '.join(DEMO_MODELS)}")
    if only is not None and not only:
        raise ScopebenchError(f"--only is empty; name demo models from {', '.join(DEMO_MODELS)}, "
                              "or leave it out to train all")
    out = Path(output or demo_checkpoints_dir())
    if out.exists() and not out.is_dir():
        raise ScopebenchError(f"--output {out}: is a file; give a folder for the checkpoints")
    torch.manual_seed(SEED)
    start = time.perf_counter()
    tokenizer = build_word_tokenizer(vocabulary_corpus())
    seeds = range(TRAIN_SEED_START, TRAIN_SEED_START + (TRAIN_SEEDS_PER_TASK if steps is None else 4))
    data = training_set(tokenizer, [ex for task in TASKS for ex in training_examples(task, seeds)])
    warm = training_set(tokenizer, warmup_examples(WARMUP_EXAMPLES if steps is None else 64))
    print(f"data: {data['ids'].shape[0]} examples, {warm['ids'].shape[0]} warm-up, vocab {len(tokenizer)} "
          f"({time.perf_counter() - start:.0f}s)")
    warmup_steps, joint_steps, variant_steps = ((WARMUP_STEPS, JOINT_STEPS, VARIANT_STEPS) if steps is None
                                                else (steps,) * 3)
    joint = build_model(config_from_dict(demo_config("demo-joint", "random", len(tokenizer)), "demo"),
                        tokenizer)
    init_position_embeddings(joint)
    print(f"warm-up: {sum(p.numel() for p in joint.parameters()) / 1e6:.2f}M parameters, "
          f"{warmup_steps} steps")
    train(joint, warm, warmup_steps, lr=1e-3, seed=SEED + 100)
    print(f"joint stage: {joint_steps} steps")
    head = train(joint, data, joint_steps, lr=JOINT_LR, seed=SEED)
    for i, (name, policy) in enumerate(DEMO_MODELS.items()):
        if only and name not in only:
            continue
        model = build_model(config_from_dict(demo_config(name, policy, len(tokenizer)), "demo"), tokenizer)
        _transfer(joint, model)
        print(f"{name} ({policy}): {variant_steps} steps")
        train(model, data, variant_steps, lr=1e-3, seed=SEED + 1 + i, head=copy.deepcopy(head))
        save_checkpoint(model, out / name)
    print(f"saved to {out} in {time.perf_counter() - start:.0f}s")
