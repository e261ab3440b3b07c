"""General-category mini benchmarks (MME, MMBench, SEED-Bench, GQA): documents in each real task's schema."""

from __future__ import annotations

from datasets import Features, Image, List, Value

from scopebench.demo.synth.core import LETTERS, Fact, Rng, choices, yes_no
from scopebench.demo.synth.diagrams import balance_fact, subtract_fact
from scopebench.demo.synth.docs import chart_fact
from scopebench.demo.synth.pictures import picture_fact
from scopebench.demo.synth.shapes import shape_fact
from scopebench.demo.synth.text import shop_fact, signs_fact

Item = tuple[dict, str]  # (document in the real task's schema, a target answer that gets full marks)
STR = Value("string")

MME_CATEGORIES = {  # MME perception category -> fact
    "existence": lambda r: shape_fact(r, "exists"),
    "count": lambda r: shape_fact(r, "count"),
    "position": lambda r: shape_fact(r, "relation"),
    "color": lambda r: shape_fact(r, "color"),
    "posters": lambda r: picture_fact(r, "poster"),
    "celebrity": lambda r: picture_fact(r, "character"),
    "scene": lambda r: picture_fact(r, "place"),
    "landmark": lambda r: picture_fact(r, "landmark"),
    "artwork": lambda r: picture_fact(r, "style"),
    "OCR": signs_fact,
}
MME_FEATURES = Features({"question_id": STR, "image": Image(), "question": STR, "answer": STR,
                         "category": STR})


def mme(rng: Rng, seed: int) -> list[Item]:
    """One image, two yes/no questions about it (the first true, the second false), like MME."""
    category = list(MME_CATEGORIES)[seed % len(MME_CATEGORIES)]
    fact = MME_CATEGORIES[category](rng)
    items = []
    for truth in (True, False):
        answer = "Yes" if truth else "No"
        doc = {"question_id": f"{category}/{seed:04d}.png", "image": fact.image,
               "question": f"{yes_no(rng, fact, truth)} Please answer yes or no.", "answer": answer,
               "category": category}
        items.append((doc, answer))
    return items


MMBENCH_CATEGORIES = {  # category -> (L2-category, fact, hint)
    "image_style": ("Coarse Perception", lambda r: picture_fact(r, "style"), None),
    "image_scene": ("Coarse Perception", lambda r: picture_fact(r, "place"), None),
    "object_localization": ("Fine-grained Perception (single-instance)", lambda r: shape_fact(r, "location"),
                            None),
    "attribute_recognition": ("Fine-grained Perception (single-instance)",
                              lambda r: shape_fact(r, r.pick(("color", "shape", "pattern"))), None),
    "celebrity_recognition": ("Fine-grained Perception (single-instance)",
                              lambda r: picture_fact(r, "character"), None),
    "ocr": ("Fine-grained Perception (single-instance)", lambda r: r.pick((signs_fact, shop_fact))(r), None),
    "spatial_relationship": ("Fine-grained Perception (cross-instance)", lambda r: shape_fact(r, "relation"),
                             None),
    "attribute_comparison": ("Fine-grained Perception (cross-instance)", lambda r: shape_fact(r, "size"),
                             None),
    "physical_relation": ("Relation Reasoning", balance_fact, "The pan with the heavier object goes down."),
    "structuralized_imagetext_understanding": ("Logic Reasoning",
                                               lambda r: chart_fact(r, r.pick(("highest", "lowest"))), None),
}
MMBENCH_FEATURES = Features({"index": Value("int64"), "question": STR, "hint": STR, "A": STR, "B": STR,
                             "C": STR,
                             "D": STR, "answer": STR, "category": STR, "L2-category": STR, "source": STR,
                             "split": STR, "image": Image()})


def mmbench(rng: Rng, seed: int) -> list[Item]:
    """A single-choice question with up to four options A-D (unused options are null)."""
    category = list(MMBENCH_CATEGORIES)[seed % len(MMBENCH_CATEGORIES)]
    l2, make, hint = MMBENCH_CATEGORIES[category]
    fact = make(rng)
    opts, right = choices(rng, fact, 4)
    doc = {"index": seed, "question": fact.question, "hint": hint, **dict.fromkeys(LETTERS),
           **dict(zip(LETTERS, opts, strict=False)), "answer": LETTERS[right], "category": category,
           "L2-category": l2, "source": "scopebench", "split": "dev", "image": fact.image}
    return [(doc, LETTERS[right])]


SEED_TYPES = {  # question_type_id -> fact (each with at least four candidate answers)
    1: lambda r: picture_fact(r, "place"),
    2: lambda r: shape_fact(r, "shape"),
    3: lambda r: shape_fact(r, "color"),
    4: lambda r: shape_fact(r, "location"),
    5: lambda r: shape_fact(r, "count"),
    8: subtract_fact,
    9: signs_fact,
}
SEED_FEATURES = Features({"answer": STR, "choice_a": STR, "choice_b": STR, "choice_c": STR, "choice_d": STR,
                          "data_id": STR, "data_type": STR, "question": STR, "question_id": STR,
                          "question_type_id": Value("int64"), "image": List(Image())})


def seedbench(rng: Rng, seed: int) -> list[Item]:
    """A four-choice image question; ``image`` is a list of images, as in SEED-Bench."""
    type_id = list(SEED_TYPES)[seed % len(SEED_TYPES)]
    fact = SEED_TYPES[type_id](rng)
    opts, right = choices(rng, fact, 4)
    letter = LETTERS[right]
    doc = {"answer": letter, **{f"choice_{c.lower()}": o for c, o in zip(LETTERS, opts, strict=True)},
           "data_id": f"{seed}.png", "data_type": "image", "question": fact.question,
           "question_id": str(seed), "question_type_id": type_id, "image": [fact.image]}
    return [(doc, letter)]


GQA_FEATURES = Features({"id": STR, "imageId": STR, "question": STR, "answer": STR, "image": Image()})
GQA_KINDS = ("color", "shape", "pattern", "relation", "size", "exists")


def gqa(rng: Rng, seed: int) -> list[Item]:
    """A short-answer question (a word, two at most); 'exists' facts become yes/no questions."""
    fact: Fact = shape_fact(rng, GQA_KINDS[seed % len(GQA_KINDS)])
    if fact.skill == "existence" or rng.coin(0.2):
        truth = rng.coin()
        question, answer = yes_no(rng, fact, truth), "yes" if truth else "no"
    else:
        question, answer = fact.question, fact.answer
    doc = {"id": str(seed), "imageId": f"n{seed}", "question": question, "answer": answer,
           "image": fact.image}
    return [(doc, answer)]
