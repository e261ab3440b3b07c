"""Knowledge-category mini benchmarks (ScienceQA-IMG, MMMU, MathVista, AI2D) in each real task's schema."""

from __future__ import annotations

from datasets import Features, Image, List, Value

from scopebench.demo.synth.bench_general import STR, Item
from scopebench.demo.synth.core import LETTERS, Rng, choices
from scopebench.demo.synth.diagrams import (
    balance_fact,
    food_chain_fact,
    life_cycle_fact,
    magnets_fact,
    map_fact,
    plant_fact,
    rectangle_fact,
    subtract_fact,
    tree_fact,
)
from scopebench.demo.synth.docs import chart_fact, document_fact
from scopebench.demo.synth.shapes import shape_fact

FOOD_CHAIN_KINDS = ("producer", "top", "eats", "eaten_by")

SQA_KINDS = {  # topic -> (subject, fact, hint)
    "magnets": ("natural science", magnets_fact, "Two magnets are placed as shown.\n\nHint: Magnets that "
                "attract pull together. Magnets that repel push apart."),
    "geography": ("social science", map_fact, ""),
    "ecology": ("natural science", lambda r: food_chain_fact(r, r.pick(FOOD_CHAIN_KINDS)),
                "In a food chain diagram, each arrow points from the food to the organism that eats it."),
    "life cycles": ("natural science", lambda r: life_cycle_fact(r, r.pick(("after", "before"))),
                    "The diagram shows the stages of a life cycle."),
}
SQA_FEATURES = Features({"image": Image(), "question": STR, "choices": List(STR), "answer": Value("int64"),
                         "hint": STR, "subject": STR, "topic": STR, "grade": STR})


def scienceqa(rng: Rng, seed: int) -> list[Item]:
    """A science question with a context hint and 2-4 text choices; ``answer`` is the choice index."""
    topic = list(SQA_KINDS)[seed % len(SQA_KINDS)]
    subject, make, hint = SQA_KINDS[topic]
    fact = make(rng)
    opts, right = choices(rng, fact, 4)
    doc = {"image": fact.image, "question": fact.question, "choices": opts, "answer": right, "hint": hint,
           "subject": subject, "topic": topic, "grade": "grade4"}
    return [(doc, LETTERS[right])]


MMMU_SUBJECTS = {  # subject -> (subfield, fact, may be open-ended)
    "Math": ("Geometry", lambda r: rectangle_fact(r, r.pick(("area", "perimeter"))), True),
    "Geography": ("Cartography", map_fact, False),
    "Physics": ("Mechanics", balance_fact, False),
    "Economics": ("Econometrics", lambda r: chart_fact(r, r.pick(("highest", "lowest", "value"))), False),
    "Computer_Science": ("Data Structure", lambda r: tree_fact(r, r.pick(("leaves", "nodes"))), True),
    "Biology": ("Ecology", lambda r: food_chain_fact(r, r.pick(FOOD_CHAIN_KINDS)), False),
}
MMMU_FEATURES = Features({"id": STR, "question": STR, "options": STR, "explanation": STR, "image_1": Image(),
                          "img_type": STR, "answer": STR, "topic_difficulty": STR, "question_type": STR,
                          "subfield": STR})


def mmmu(rng: Rng, seed: int) -> list[Item]:
    """A college-style question about <image 1>: multiple-choice (letter) or open (a number)."""
    subject = list(MMMU_SUBJECTS)[seed % len(MMMU_SUBJECTS)]
    subfield, make, may_be_open = MMMU_SUBJECTS[subject]
    fact = make(rng)
    question = f"Based on <image 1>, {fact.question[0].lower()}{fact.question[1:]}"
    if may_be_open and rng.coin():
        qtype, options, answer = "open", [], fact.answer
    else:
        opts, right = choices(rng, fact, 4)
        qtype, options, answer = "multiple-choice", opts, LETTERS[right]
    doc = {"id": f"validation_{subject}_{seed + 1}", "question": question, "options": str(options),
           "explanation": "", "image_1": fact.image, "img_type": "['Diagrams']", "answer": answer,
           "topic_difficulty": "Easy", "question_type": qtype, "subfield": subfield}
    return [(doc, answer)]


MATHVISTA_KINDS = {  # task -> (context, skills, fact)
    "subtract": ("synthetic scene", ["arithmetic reasoning", "numeric commonsense"], subtract_fact),
    "chart": ("bar chart", ["arithmetic reasoning", "statistical reasoning"],
              lambda r: chart_fact(r, r.pick(("sum", "difference")))),
    "geometry": ("geometry diagram", ["geometry reasoning", "arithmetic reasoning"],
                 lambda r: rectangle_fact(r, r.pick(("area", "perimeter")))),
    "document": ("document image", ["arithmetic reasoning"], lambda r: document_fact(r, "product")),
    "tree": ("tree diagram", ["logical reasoning"], lambda r: tree_fact(r, r.pick(("leaves", "nodes")))),
    "count": ("synthetic scene", ["numeric commonsense"], lambda r: shape_fact(r, "count")),
}
MATHVISTA_TASKS = {"subtract": "math word problem", "chart": "figure question answering",
                   "geometry": "geometry problem solving", "document": "textbook question answering",
                   "tree": "figure question answering", "count": "visual question answering"}
INTEGER_HINT = ("Hint: Please answer the question requiring an integer answer and provide the final value, "
                "e.g., 1, 2, 3, at the end.\nQuestion: ")
MATHVISTA_FEATURES = Features({
    "pid": STR, "question": STR, "image": STR, "decoded_image": Image(), "choices": List(STR), "unit": STR,
    "precision": Value("float64"), "answer": STR, "question_type": STR, "answer_type": STR,
    "metadata": {"category": STR, "context": STR, "grade": STR, "img_height": Value("int64"),
                 "img_width": Value("int64"), "language": STR, "skills": List(STR), "source": STR,
                 "split": STR, "task": STR},
    "query": STR})


def mathvista(rng: Rng, seed: int) -> list[Item]:
    """A free-form question with an integer answer (counting and arithmetic over a picture)."""
    kind = list(MATHVISTA_KINDS)[seed % len(MATHVISTA_KINDS)]
    context, skills, make = MATHVISTA_KINDS[kind]
    fact = make(rng)
    pid = str(seed + 1)
    meta = {"category": "math-targeted-vqa", "context": context, "grade": "elementary school",
            "img_height": 128,
            "img_width": 128, "language": "english", "skills": skills, "source": "scopebench",
            "split": "testmini", "task": MATHVISTA_TASKS[kind]}
    doc = {"pid": pid, "question": fact.question, "image": f"images/{pid}.png", "decoded_image": fact.image,
           "choices": None, "unit": None, "precision": None, "answer": fact.answer,
           "question_type": "free_form",
           "answer_type": "integer", "metadata": meta, "query": INTEGER_HINT + fact.question}
    return [(doc, fact.answer)]


AI2D_FEATURES = Features({"question": STR, "options": List(STR), "answer": STR, "image": Image()})
AI2D_KINDS = (lambda r: food_chain_fact(r, r.pick(FOOD_CHAIN_KINDS)),
              lambda r: life_cycle_fact(r, r.pick(("after", "before"))), plant_fact)


def ai2d(rng: Rng, seed: int) -> list[Item]:
    """A diagram question with four text options; ``answer`` is the option index as a string."""
    fact = AI2D_KINDS[seed % len(AI2D_KINDS)](rng)
    opts, right = choices(rng, fact, 4)
    return [({"question": fact.question, "options": opts, "answer": str(right), "image": fact.image},
             LETTERS[right])]
