"""How fast does the demo LLM learn the option lookup from text alone?

The lettered mini tasks need the LLM to find the option that matches what it knows and name its
letter. This probe trains the demo LLM (text only, no image) on prompts that state the answer
("It is red." then lettered options, MMBench or CV-Bench layout) and prints held-out exact match
every 500 steps, so a text-only stage can be sized before it is put in front of the recipe:

    python experiments/probe_demo_lookup.py                      # 2-5 options of 1-2 words
    python experiments/probe_demo_lookup.py --single             # 4 options of one word
    python experiments/probe_demo_lookup.py --hidden 192 --steps 1000
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from probe_demo_mixture import generic_lookup
from probe_demo_skill import INSTRUCTION, tensors

from scopebench.config import config_from_dict
from scopebench.demo import train as recipe
from scopebench.demo.world import WORD_PATTERN, vocabulary_corpus
from scopebench.models.build import build_model
from scopebench.models.tokenizer import build_word_tokenizer


def single_word_lookup(rng: random.Random, words: list[str]) -> tuple[str, str]:
    """Four one-word options in MMBench's layout, the right one stated first."""
    opts, right = rng.sample(words, 4), rng.randrange(4)
    listed = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(opts))
    return f"It is {opts[right]}.\nWhat is it?\n{listed}\n{INSTRUCTION}", "ABCD"[right]


def exact_match(llm, data: dict[str, torch.Tensor], pad: int) -> float:
    """Teacher-forced exact match of every labelled token."""
    llm.eval()
    with torch.no_grad():
        ids, labels = data["ids"], data["labels"][:, 1:]
        pred = llm(input_ids=ids, attention_mask=(ids != pad).long()).logits[:, :-1].argmax(-1)
    llm.train()
    return ((pred == labels) | (labels == -100)).all(1).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", action="store_true",
                    help="four one-word options (default: 2-5 options of 1-2 words)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3, help="constant after 200 warm-up steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=96, help="LLM width (the demo's: 96; MLP is twice as wide)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    corpus = vocabulary_corpus()
    tok = build_word_tokenizer([*corpus, "It is What"])
    words = sorted({w for w in WORD_PATTERN.findall(corpus[0]) if w.isalpha() and len(w) > 1})
    make = single_word_lookup if args.single else generic_lookup
    rng = random.Random(args.seed)
    train, test = (tensors([make(rng, words) for _ in range(60000)], tok),
                   tensors([make(rng, words) for _ in range(1000)], tok))
    cfg = recipe.demo_config("probe", "shared_only", len(tok))
    cfg["llm"]["config"].update(hidden_size=args.hidden, intermediate_size=2 * args.hidden)
    llm = build_model(config_from_dict(cfg, "demo"), tok).llm
    opt = torch.optim.AdamW(llm.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200))
    gen, pad, start = torch.Generator().manual_seed(args.seed), tok.pad_token_id, time.perf_counter()
    print(f"{len(words)} words, {'4 one-word' if args.single else '2-5 one- or two-word'} options, chance ~"
          f"{'25%' if args.single else '30%'}")
    for step in range(args.steps + 1):
        if step % 500 == 0:
            print(f"step {step:5d}: held-out exact match {exact_match(llm, test, pad):.1%} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
        if step == args.steps:
            break
        idx = torch.randint(train["ids"].shape[0], (args.batch,), generator=gen)
        ids, labels = train["ids"][idx], train["labels"][idx]
        width = int((ids != pad).sum(1).max())
        loss = llm(input_ids=ids[:, :width], attention_mask=(ids[:, :width] != pad).long(),
                   labels=labels[:, :width]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(llm.parameters(), 1.0)
        opt.step()
        sched.step()


if __name__ == "__main__":
    main()
