"""Can the demo architecture learn ONE skill of the synthetic world in a few hundred CPU steps?

Trains Baseline-0's architecture (shared encoder + the demo LLM, the recipe's ``train`` loop and
position-embedding init) on a single kind of shape fact, asked as an open question or in the
lettered multiple-choice layout of MMBench-style tasks, and prints the held-out loss with the right
images and with images shuffled across the batch (equal: the image is ignored) and teacher-forced
exact match. Options test what the letter format needs:

    python experiments/probe_demo_skill.py --format open       # learned, image used
    python experiments/probe_demo_skill.py --format letters    # chance, image ignored
    python experiments/probe_demo_skill.py --format letters --steps 900 --lr 1e-3 \\
        --llm-layers 4 --text-pretrain 1000 --mix-open        # above chance
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.transforms.functional import pil_to_tensor

from scopebench.config import config_from_dict
from scopebench.demo import train as recipe
from scopebench.demo.synth.core import LETTERS, Rng, choices
from scopebench.demo.synth.shapes import shape_fact
from scopebench.models.build import build_model
from scopebench.models.tokenizer import build_word_tokenizer

INSTRUCTION = "Answer with the option's letter from the given choices directly."


def examples(kind: str, n: int) -> list[dict]:
    """n facts of one kind, each with its open question and its lettered form (MMBench's prompt layout)."""
    out = []
    for i in range(n):
        fact = shape_fact(Rng(7, i), kind)
        opts, right = choices(Rng(8, i), fact, 4)
        listed = "\n".join(f"{letter}. {o}" for letter, o in zip(LETTERS, opts, strict=False))
        out.append({"image": fact.image, "question": fact.question, "content": fact.answer,
                    "lettered": f"{fact.question}\n{listed}\n{INSTRUCTION}", "letter": LETTERS[right],
                    "stated": f"{fact.question} It is {fact.answer}.\n{listed}\n{INSTRUCTION}"})
    return out


def tensors(pairs: list[tuple[str, str]], tok, images=None) -> dict[str, torch.Tensor]:
    """Right-padded token ids and labels (answer + eos) for (prompt, answer) pairs, plus uint8 images."""
    seqs = []
    for prompt, answer in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append((p + a, [-100] * len(p) + a))
    width = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    for i, (s, lab) in enumerate(seqs):
        ids[i, : len(s)], labels[i, : len(lab)] = torch.tensor(s), torch.tensor(lab)
    out = {"ids": ids, "labels": labels}
    if images is not None:
        out["images"] = torch.stack([pil_to_tensor(img.convert("RGB").resize((128, 128))) for img in images])
    return out


def pretrain_text(llm, data: dict[str, torch.Tensor], steps: int, lr: float, pad: int) -> float:
    """Text-only stage: the LLM alone learns to find a stated answer among lettered options; last loss."""
    opt = torch.optim.AdamW(llm.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(recipe.SEED)
    for _ in range(steps):
        idx = torch.randint(data["ids"].shape[0], (recipe.BATCH,), generator=gen)
        ids = data["ids"][idx]
        loss = llm(input_ids=ids, attention_mask=(ids != pad).long(), labels=data["labels"][idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(llm.parameters(), 1.0)
        opt.step()
        sched.step()
    return loss.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="location",
                    help="shape fact kind: location, color, shape, count, relation, ...")
    ap.add_argument("--format", choices=("open", "letters"), default="open")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--llm-layers", type=int, default=None, help="LLM depth (default: the demo's)")
    ap.add_argument("--tie-embeddings", action="store_true", help="tie the LLM's input and output embeddings")
    ap.add_argument("--text-pretrain", type=int, default=0, metavar="STEPS",
                    help="first train the LLM alone on lettered prompts that state the answer (lr 1e-3)")
    ap.add_argument("--mix-open", action="store_true",
                    help="ask every other training fact as an open question")
    ap.add_argument("--content-head", action="store_true",
                    help="auxiliary loss: predict the right option's first word "
                         "where the letter is predicted")
    ap.add_argument("--position-std", type=float, default=recipe.POSITION_STD,
                    help="re-draw the ViT position embeddings at this std (0: keep the libraries' init)")
    ap.add_argument("--seed", type=int, default=recipe.SEED, help="seed of the initial weights")
    ap.add_argument("--train", type=int, default=2500)
    ap.add_argument("--test", type=int, default=500)
    args = ap.parse_args()

    rows = examples(args.kind, args.train + args.test)
    tok = build_word_tokenizer([f"{r['stated']} {r['letter']}" for r in rows])
    letters = args.format == "letters"

    def pair(i: int, r: dict) -> tuple[str, str]:
        if letters and not (args.mix_open and i < args.train and i % 2 == 0):
            return r["lettered"], r["letter"]
        return r["question"], r["content"]

    data = tensors([pair(i, r) for i, r in enumerate(rows)], tok, [r["image"] for r in rows])
    train = {k: v[: args.train] for k, v in data.items()}
    test = {k: v[args.train:] for k, v in data.items()}
    cfg = recipe.demo_config("probe", "shared_only", len(tok)) | {"seed": args.seed}
    if args.llm_layers:
        cfg["llm"]["config"]["num_hidden_layers"] = args.llm_layers
    cfg["llm"]["config"]["tie_word_embeddings"] = args.tie_embeddings
    model = build_model(config_from_dict(cfg, "demo"), tok)
    if args.position_std:
        recipe.init_position_embeddings(model, args.position_std)
    start = time.perf_counter()
    if args.text_pretrain:
        stated = tensors([(r["stated"], r["letter"]) for r in rows[: args.train]], tok)
        loss = pretrain_text(model.llm, stated, args.text_pretrain, 1e-3, tok.pad_token_id)
        print(f"text-only stage: {args.text_pretrain} steps, last loss {loss:.3f}")
    if args.content_head:  # the recipe's content head: predict the right option's first word
        train["content"] = torch.tensor([tok(r["content"], add_special_tokens=False)["input_ids"][0]
                                         for r in rows[: args.train]])
    recipe.train(model, train, args.steps, args.lr, recipe.SEED, log=lambda s: None)
    with torch.no_grad():
        mask = (test["ids"] != tok.pad_token_id).long()
        images = test["images"].float() / 255.0
        out = model(images, test["ids"], mask, labels=test["labels"])
        shuffled = model(images[torch.randperm(len(images))], test["ids"], mask, labels=test["labels"])
        pred, lab = out.logits.argmax(-1), test["labels"]
        exact = ((pred == lab) | (lab == -100)).all(1).float().mean().item()
    print(f"{args.kind} ({args.format}), {args.steps} steps at lr {args.lr}: "
          f"held-out loss {out.loss.item():.3f} "
          f"(images shuffled: {shuffled.loss.item():.3f}), exact {exact:.1%}, "
          f"{time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
