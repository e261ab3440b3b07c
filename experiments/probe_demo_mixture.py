"""Does the demo architecture use the image on the 16-task mixture, and what makes it?

Trains Baseline-0's architecture (shared encoder + the demo LLM, the recipe's ``train`` loop and
position-embedding init) on the recipe's training data for all sixteen mini tasks, optionally after
or alongside the interventions that ``probe_demo_skill.py`` found to help one skill:

* ``--warmup N``: N steps of easy perception first (shape-scene colour, shape, location, count and
  size facts asked openly), as a VLM's first stage aligns the vision pathway before instruction data;
* ``--open-copies``: every lettered training fact is also asked openly (answer: the option's text);
  ``--open-only``: asked only openly, also when measuring (does the image pathway learn the content?);
* ``--text-stage``: the LLM alone first learns the option lookup from text (answer stated in the
  prompt: 1500 steps of generic lookups over the world's words, 500 on the real task layouts);
* ``--shared resnet``: a tiny timm ResNet instead of the 64 px ViT as the (only) encoder;
* ``--train-seeds N``: N training seeds per task instead of the recipe's 400.

Prints, per task, the held-out answer loss with the right images and with images rolled across
the batch (their difference = how much the model uses the image), then saves a checkpoint that
``scopebench eval DIR`` scores on cambrian16-mini:

    python experiments/probe_demo_mixture.py --output /tmp/probe-warm --warmup 500 --lr 1e-3
    scopebench eval /tmp/probe-warm --output /tmp/probe-warm-run
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from probe_demo_skill import INSTRUCTION, pretrain_text, tensors

from scopebench.config import config_from_dict
from scopebench.demo import train as recipe
from scopebench.demo.world import (
    OPEN_INSTRUCTION,
    TASKS,
    TRAIN_SEED_START,
    WORD_PATTERN,
    options,
    training_examples,
    vocabulary_corpus,
    warmup_examples,
)
from scopebench.models.build import build_model
from scopebench.models.checkpoint import save_checkpoint
from scopebench.models.tokenizer import build_word_tokenizer

NOT_QUESTION = ("Answer with", "Please answer", "Note:")
RESNET = {"spec": "timm:resnet18", "image_size": 128, "feature_layer": "penultimate",
          "overrides": {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 96], "stem_width": 16}}


def open_copy(prompt: str, answer: str) -> tuple[str, str] | None:
    """The lettered fact asked openly: its question without options and instructions; answer: the option
    text."""
    parsed = options(prompt, answer)
    if parsed is None:
        return None
    lines, at, _, right = parsed
    kept = [line for i, line in enumerate(lines)
            if i not in at and line.strip() and not line.startswith(NOT_QUESTION)]
    question = (" ".join(kept).replace(" Select from the following choices.", "")
                .replace(" There are several options:", ""))
    return f"{question}\n{OPEN_INSTRUCTION}", right


def stated(prompt: str, answer: str, rng: random.Random) -> tuple[str, str] | None:
    """A text-only lookup: the lettered prompt, options re-shuffled, with the right option's text stated
    first."""
    parsed = options(prompt, answer)
    if parsed is None:
        return None
    lines, at, found, right = parsed
    texts = [m.group(4) for m in found]
    rng.shuffle(texts)
    for i, m, text in zip(at, found, texts, strict=True):
        lines[i] = f"{m.group(1)}{m.group(2)}{m.group(3)} {text}"
    return f"It is {right}.\n" + "\n".join(lines), found[texts.index(right)].group(2)


def generic_lookup(rng: random.Random, words: list[str]) -> tuple[str, str]:
    """A lookup over random words: 2-5 options of 1-2 words, MMBench or CV-Bench layout."""
    k, n, picked = rng.randint(2, 5), rng.randint(1, 2), set()
    while len(picked) < k:
        picked.add(" ".join(rng.choice(words) for _ in range(n)))
    opts, right, paren = sorted(picked), rng.randrange(k), rng.random() < 0.3
    rng.shuffle(opts)
    lines = [f"({'ABCDE'[i]}) {o}" if paren else f"{'ABCDE'[i]}. {o}" for i, o in enumerate(opts)]
    return f"It is {opts[right]}.\n" + "\n".join(lines) + f"\n{INSTRUCTION}", "ABCDE"[right]


def as_asked(ex: dict, open_only: bool) -> tuple[str, str]:
    """(prompt, answer) of a training example, a lettered one turned into its open question if
    ``open_only``."""
    pair = (ex["prompt"], ex["answer"])
    return (open_copy(*pair) or pair) if open_only else pair


def image_use(model, tok, open_only: bool) -> list[tuple[str, float, float]]:
    """Per task: held-out answer loss with the right images and with images rolled across the batch."""
    rows = []
    model.eval()
    for task in TASKS:
        exs = training_examples(task, range(TRAIN_SEED_START + 7000, TRAIN_SEED_START + 7040))[:48]
        d = tensors([as_asked(e, open_only) for e in exs], tok, [e["image"] for e in exs])
        images, mask = d["images"].float() / 255.0, (d["ids"] != tok.pad_token_id).long()
        with torch.no_grad():
            right = model(images, d["ids"], mask, labels=d["labels"]).loss.item()
            rolled = model(images.roll(1, 0), d["ids"], mask, labels=d["labels"]).loss.item()
        rows.append((task.removeprefix("c16mini_"), right, rolled))
    return rows


def read_layer(model, layer: int) -> None:
    """Make ``answer_hidden`` (what the content head reads) come from the LLM's ``hidden_states[layer]``:
    the LLM's outputs drop the hidden states after that one, so the model's "last" is that layer."""
    forward = model.llm.forward

    def truncated(*args, **kwargs):
        out = forward(*args, **kwargs)
        if out.hidden_states is not None:
            out.hidden_states = out.hidden_states[: len(out.hidden_states) + layer + 1]
        return out

    model.llm.forward = truncated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True, help="checkpoint folder to write")
    ap.add_argument("--steps", type=int, default=960,
                    help="mixture steps (the recipe: 800 joint + 160 variant)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=recipe.SEED, help="seed of the initial weights")
    ap.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                    help="easy perception steps first (lr 1e-3)")
    ap.add_argument("--open-copies", action="store_true", help="also ask every lettered training fact openly")
    ap.add_argument("--open-only", action="store_true",
                    help="ask every lettered fact only openly (training and measuring)")
    ap.add_argument("--text-stage", action="store_true",
                    help="first train the LLM alone on the option lookup")
    ap.add_argument("--shared", choices=("vit", "resnet"), default="vit")
    ap.add_argument("--content-head", action="store_true",
                    help="auxiliary loss: predict the right option's first word "
                         "where the letter is predicted")
    ap.add_argument("--train-seeds", type=int, default=recipe.TRAIN_SEEDS_PER_TASK,
                    help="training seeds per task (the recipe: %(default)s)")
    ap.add_argument("--llm-layers", type=int, default=2, help="LLM depth (the recipe: 2)")
    ap.add_argument("--content-layer", type=int, default=-1,
                    help="hidden_states index the content head reads "
                         "(-1: the last layer's output, after the norm)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    corpus = vocabulary_corpus()
    tok = build_word_tokenizer([*corpus, "It is"])
    exs = [ex for task in TASKS
           for ex in training_examples(task, range(TRAIN_SEED_START, TRAIN_SEED_START + args.train_seeds))]
    pairs, images = [as_asked(ex, args.open_only) for ex in exs], [ex["image"] for ex in exs]
    if args.open_copies:
        for ex in exs:
            if (copy := open_copy(ex["prompt"], ex["answer"])) is not None:
                pairs.append(copy)
                images.append(ex["image"])
    data = recipe.training_set(tok, [{"image": img, "prompt": p, "answer": a}
                                     for (p, a), img in zip(pairs, images, strict=True)])
    if not args.content_head:  # training_set also builds the content head's targets
        del data["content"]
    print(f"data: {len(pairs)} examples ({time.perf_counter() - start:.0f}s)")
    cfg = recipe.demo_config(args.output.name, "shared_only", len(tok)) | {"seed": args.seed}
    cfg["llm"]["config"]["num_hidden_layers"] = args.llm_layers
    if args.shared == "resnet":
        cfg["shared"] = RESNET
    model = build_model(config_from_dict(cfg, "demo"), tok)
    recipe.init_position_embeddings(model)
    if args.content_layer != -1:
        read_layer(model, args.content_layer)
    if args.text_stage:
        rng = random.Random(args.seed)
        words = sorted({w for w in WORD_PATTERN.findall(corpus[0]) if w.isalpha() and len(w) > 1})
        generic = tensors([generic_lookup(rng, words) for _ in range(40000)], tok)
        real = tensors([s for ex in exs if (s := stated(ex["prompt"], ex["answer"], rng)) is not None], tok)
        losses = [pretrain_text(model.llm, generic, 1500, 1e-3, tok.pad_token_id),
                  pretrain_text(model.llm, real, 500, 1e-3, tok.pad_token_id)]
        print(f"text stage: last loss {losses[0]:.3f} (generic), {losses[1]:.3f} (task layouts)")
    if args.warmup:
        warm = recipe.training_set(tok, warmup_examples(recipe.WARMUP_EXAMPLES))
        recipe.train(model, warm, args.warmup, lr=1e-3, seed=args.seed + 5, log=lambda s: None)
        print(f"warm-up: {args.warmup} steps ({time.perf_counter() - start:.0f}s)")
    recipe.train(model, data, args.steps, lr=args.lr, seed=args.seed, log=lambda s: None)
    save_checkpoint(model, args.output)
    rows = image_use(model, tok, args.open_only)
    print(f"{'task':14s} {'right':>7s} {'rolled':>7s} {'gain':>7s}")
    for task, right, rolled in rows:
        print(f"{task:14s} {right:7.3f} {rolled:7.3f} {rolled - right:+7.3f}")
    used = [task for task, right, rolled in rows if rolled - right >= 0.03]
    print(f"image used (gain >= 0.03) on {len(used)}/16: {', '.join(used) or 'none'}; "
          f"saved {args.output} ({time.perf_counter() - start:.0f}s); next: scopebench eval {args.output}")


if __name__ == "__main__":
    main()
