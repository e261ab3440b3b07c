"""Vision-Centric mini benchmarks (MMVP, RealWorldQA, CV-Bench 2D and 3D) in each real task's schema."""

from __future__ import annotations

from datasets import Features, Image, List, Value

from scopebench.demo.synth.bench_general import STR, Item
from scopebench.demo.synth.core import LETTERS, Rng, choices
from scopebench.demo.synth.depth import depth_fact
from scopebench.demo.synth.pairs import PAIR_KINDS, mmvp_pair
from scopebench.demo.synth.road import road_fact

MMVP_FEATURES = Features({"Index": Value("int64"), "Question": STR, "Options": STR, "Correct Answer": STR,
                          "image": Image()})


def mmvp(rng: Rng, seed: int) -> list[Item]:
    """Two images that differ in one visual pattern, the same question, opposite answers (consecutive
    Index)."""
    pair = mmvp_pair(rng, list(PAIR_KINDS)[seed % len(PAIR_KINDS)])
    options = f"(a) {pair.options[0]} (b) {pair.options[1]}"
    order = rng.shuffled([0, 1])
    items = []
    for k, which in enumerate(order):
        doc = {"Index": 2 * seed + k + 1, "Question": pair.question, "Options": options,
               "Correct Answer": f"({'ab'[which]})", "image": pair.images[which]}
        items.append((doc, LETTERS[which]))
    return items


RWQA_FEATURES = Features({"image": Image(), "question": STR, "answer": STR})
RWQA_MCQ = "Please answer directly with only the letter of the correct option and nothing else."
RWQA_OPEN = "Please answer directly with a single word or number."


def realworldqa(rng: Rng, seed: int) -> list[Item]:
    """Road scenes: counting cars (open answer) or a lettered choice (light colour, nearer car, lane)."""
    kind = ("count", "light", "closer", "lane")[seed % 4]
    fact = road_fact(rng, kind)
    if kind == "count":
        return [({"image": fact.image, "question": f"{fact.question}\n{RWQA_OPEN}", "answer": fact.answer},
                 fact.answer)]
    opts, right = choices(rng, fact, 4)
    listing = "\n".join(f"{c}. {o}" for c, o in zip(LETTERS, opts, strict=False))
    doc = {"image": fact.image, "question": f"{fact.question}\n{listing}\n{RWQA_MCQ}",
           "answer": LETTERS[right]}
    return [(doc, LETTERS[right])]


CV_BENCH_FEATURES = Features({"idx": Value("int64"), "type": STR, "task": STR, "image": Image(),
                              "question": STR,
                              "choices": List(STR), "answer": STR, "prompt": STR, "source": STR})


def _cv_bench(rng: Rng, seed: int, dim: str, task: str) -> list[Item]:
    fact = depth_fact(rng, task.lower(), highlight=task != "Count")
    opts, right = choices(rng, fact, 4)
    select = " Select from the following choices." if dim == "2D" else ""
    prompt = f"{fact.question}{select}\n" + "\n".join(
        f"({c}) {o}" for c, o in zip(LETTERS, opts, strict=False))
    source = "Omni3D" if dim == "3D" else ("ADE20K", "COCO")[seed % 2]
    doc = {"idx": seed, "type": dim, "task": task, "image": fact.image, "question": fact.question,
           "choices": opts, "answer": f"({LETTERS[right]})", "prompt": prompt, "source": source}
    return [(doc, LETTERS[right])]


def cv_bench_2d(rng: Rng, seed: int) -> list[Item]:
    """Counting objects of a kind, or the left/right relation of two boxed objects."""
    return _cv_bench(rng, seed, "2D", ("Count", "Relation")[seed % 2])


def cv_bench_3d(rng: Rng, seed: int) -> list[Item]:
    """Which boxed object is nearer the camera, or nearer another boxed object (real-world distance)."""
    return _cv_bench(rng, seed, "3D", ("Depth", "Distance")[seed % 2])
