"""OCR & Chart mini benchmarks (ChartQA, OCRBench, TextVQA, DocVQA) in each real task's schema."""

from __future__ import annotations

from datasets import Features, Image, List, Value

from scopebench.demo.synth.bench_general import STR, Item
from scopebench.demo.synth.core import WORDS, Rng
from scopebench.demo.synth.docs import chart_fact, document_fact
from scopebench.demo.synth.text import bus_fact, shop_fact, signs_fact, word_crop

CHARTQA_KINDS = {"value": "augmented_test", "highest": "augmented_test", "lowest": "augmented_test",
                 "difference": "human_test", "sum": "human_test", "count_above": "human_test"}
CHARTQA_FEATURES = Features({"type": STR, "question": STR, "answer": STR, "image": Image()})


def chartqa(rng: Rng, seed: int) -> list[Item]:
    """A bar or line chart question: read a value or a label, or compute with values (human split)."""
    kind = list(CHARTQA_KINDS)[seed % len(CHARTQA_KINDS)]
    fact = chart_fact(rng, kind)
    doc = {"type": CHARTQA_KINDS[kind], "question": fact.question, "answer": fact.answer, "image": fact.image}
    return [(doc, fact.answer)]


def _recognition(style: str, digits: bool = False):
    def make(rng: Rng):
        text = str(rng.int(10, 99)) if digits else rng.pick(WORDS)
        return word_crop(rng, text, style)

    return make


OCRBENCH_TYPES = {  # question_type -> (source dataset name, fact)
    "Regular Text Recognition": ("IIIT5K", _recognition("regular")),
    "Irregular Text Recognition": ("CUTE80", _recognition("irregular")),
    "Artistic Text Recognition": ("WordArt", _recognition("artistic")),
    "Digit String Recognition": ("ORAND", _recognition("regular", digits=True)),
    "Scene Text-centric VQA": ("textVQA", lambda r: r.pick((signs_fact, shop_fact, bus_fact))(r)),
    "Doc-oriented VQA": ("docVQA", document_fact),
    "Key Information Extraction": ("SROIE", document_fact),
}
OCRBENCH_FEATURES = Features({"dataset": STR, "question": STR, "question_type": STR, "answer": List(STR),
                              "image": Image()})


def ocrbench(rng: Rng, seed: int) -> list[Item]:
    """Text recognition (words, digits; plain, rotated, styled) and text-based VQA; ``answer`` is a list."""
    qtype = list(OCRBENCH_TYPES)[seed % len(OCRBENCH_TYPES)]
    dataset, make = OCRBENCH_TYPES[qtype]
    fact = make(rng)
    doc = {"dataset": dataset, "question": fact.question, "question_type": qtype, "answer": [fact.answer],
           "image": fact.image}
    return [(doc, fact.answer)]


TEXTVQA_FEATURES = Features({"question_id": Value("int64"), "question": STR, "image_id": STR,
                             "answers": List(STR),
                             "ocr_tokens": List(STR), "image": Image()})


def textvqa(rng: Rng, seed: int) -> list[Item]:
    """Scene-text questions (signs, shop names, bus numbers) with ten human-style answers."""
    fact = (signs_fact, shop_fact, bus_fact)[seed % 3](rng)
    doc = {"question_id": seed, "question": fact.question[0].lower() + fact.question[1:],
           "image_id": f"{seed:06d}",
           "answers": [fact.answer] * 10, "ocr_tokens": fact.extra["ocr_tokens"], "image": fact.image}
    return [(doc, fact.answer)]


DOCVQA_FEATURES = Features({"questionId": STR, "question": STR, "question_types": List(STR),
                            "docId": Value("int64"),
                            "answers": List(STR), "data_split": STR, "image": Image()})


def docvqa(rng: Rng, seed: int) -> list[Item]:
    """A question about one field of a document page (name, date, city, item, quantity, price, total)."""
    fact = document_fact(rng)
    doc = {"questionId": str(seed), "question": fact.question, "question_types": ["form"], "docId": seed,
           "answers": [fact.answer], "data_split": "val", "image": fact.image}
    return [(doc, fact.answer)]
