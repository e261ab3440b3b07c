"""The synthetic visual world behind the offline ``cambrian16-mini`` suite, and its training-data API.

Every item is drawn from a seed: ``numpy`` generator keyed by (task namespace, seed), PIL drawing, a
bitmap font. The suite uses seeds ``0..999`` of each task's namespace (the first ``units`` of them);
training data must use seeds from ``TRAIN_SEED_START`` on, so the two never share an item.

Each of the 16 mini tasks (``c16mini_<benchmark>``) asks questions of its benchmark's kind:
General (colour/shape/texture, scenes, characters, posters), Knowledge (diagrams, counting and
arithmetic over a picture), OCR & Chart (small text in signs, charts and documents: needs a
high-resolution view), Vision-Centric (ground-plane depth, relative size, occlusion, fine patterns).

    >>> ex = training_examples("c16mini_gqa", [1_000_000])[0]
    >>> sorted(ex)
    ['answer', 'image', 'prompt']
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from datasets import Features
from PIL import Image

from scopebench.demo.synth import bench_general as g
from scopebench.demo.synth import bench_knowledge as k
from scopebench.demo.synth import bench_ocr as o
from scopebench.demo.synth import bench_vision as v
from scopebench.demo.synth.core import Rng, lexicon
from scopebench.demo.synth.shapes import shape_fact

SUITE_SEEDS = range(1000)
TRAIN_SEED_START = 1_000_000


@dataclass(frozen=True)
class MiniTask:
    """How one mini task is generated: builder, Parquet schema, number of seeds in the suite."""

    name: str
    build: Callable[[Rng, int], list[tuple[dict, str]]]
    features: Features
    units: int

    @property
    def data_file(self) -> str:
        """Data file path relative to the task folder."""
        return f"data/{self.name.removeprefix('c16mini_')}.parquet"


TASKS: dict[str, MiniTask] = {t.name: t for t in (
    MiniTask("c16mini_mme", g.mme, g.MME_FEATURES, 30),
    MiniTask("c16mini_mmbench", g.mmbench, g.MMBENCH_FEATURES, 60),
    MiniTask("c16mini_seedbench", g.seedbench, g.SEED_FEATURES, 63),
    MiniTask("c16mini_gqa", g.gqa, g.GQA_FEATURES, 60),
    MiniTask("c16mini_scienceqa", k.scienceqa, k.SQA_FEATURES, 60),
    MiniTask("c16mini_mmmu", k.mmmu, k.MMMU_FEATURES, 60),
    MiniTask("c16mini_mathvista", k.mathvista, k.MATHVISTA_FEATURES, 60),
    MiniTask("c16mini_ai2d", k.ai2d, k.AI2D_FEATURES, 60),
    MiniTask("c16mini_chartqa", o.chartqa, o.CHARTQA_FEATURES, 60),
    MiniTask("c16mini_ocrbench", o.ocrbench, o.OCRBENCH_FEATURES, 100),
    MiniTask("c16mini_textvqa", o.textvqa, o.TEXTVQA_FEATURES, 60),
    MiniTask("c16mini_docvqa", o.docvqa, o.DOCVQA_FEATURES, 60),
    MiniTask("c16mini_mmvp", v.mmvp, v.MMVP_FEATURES, 35),
    MiniTask("c16mini_realworldqa", v.realworldqa, v.RWQA_FEATURES, 60),
    MiniTask("c16mini_cv_bench_2d", v.cv_bench_2d, v.CV_BENCH_FEATURES, 60),
    MiniTask("c16mini_cv_bench_3d", v.cv_bench_3d, v.CV_BENCH_FEATURES, 60),
)}


def _task(task: str) -> MiniTask:
    if task not in TASKS:
        raise ValueError(f"unknown mini task {task!r}; choose from {', '.join(TASKS)}")
    return TASKS[task]


def items(task: str, seed: int) -> list[tuple[dict, str]]:
    """The documents (real task schema, PIL images) that one seed gives, each with a full-marks answer."""
    return _task(task).build(Rng(zlib.crc32(task.encode()), seed), seed)


def suite_docs(task: str) -> list[dict]:
    """The task's documents in the shipped suite (seeds ``0..units-1``), in order."""
    return [doc for seed in range(_task(task).units) for doc, _ in items(task, seed)]


def suite_answers(task: str) -> list[str]:
    """Full-marks answers for ``suite_docs(task)``, in the same order."""
    return [ans for seed in range(_task(task).units) for _, ans in items(task, seed)]


def doc_images(doc: dict) -> list[Image.Image]:
    """The PIL images in a generated document (image fields and lists of images)."""
    found = []
    for value in doc.values():
        found += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, Image.Image)]
    return found


def pixel_digest(img: Image.Image) -> str:
    """SHA-256 of an image's raw pixels."""
    return hashlib.sha256(img.tobytes()).hexdigest()


@cache
def _suite_digests(task: str) -> frozenset[str]:
    return frozenset(pixel_digest(img) for doc in suite_docs(task) for img in doc_images(doc))


@cache
def _task_config(task: str) -> dict[str, Any]:
    from lmms_eval.utils import load_yaml_config

    from scopebench.demo.suite_data import mini_task_include_path

    return load_yaml_config(str(mini_task_include_path() / f"{task}.yaml"), mode="full")


def _prompt_kwargs(config: dict[str, Any]) -> dict[str, Any] | None:
    """The task's lmms_eval_specific_kwargs as lmms-eval resolves them for a model without its own entry."""
    kwargs = config.get("lmms_eval_specific_kwargs")
    if kwargs is None:
        return None
    resolved = dict(kwargs)
    resolved.update(kwargs.get("default", {}))
    return resolved


def task_prompt(task: str, doc: dict) -> str:
    """The exact text lmms-eval gives a model for ``doc`` (the task's own doc_to_text, zero-shot)."""
    config = _task_config(task)
    kwargs = _prompt_kwargs(config)
    return config["doc_to_text"](doc) if kwargs is None else config["doc_to_text"](doc, kwargs)


def task_visuals(task: str, doc: dict) -> list:
    """The images lmms-eval gives a model for ``doc`` (the task's own doc_to_visual)."""
    return _task_config(task)["doc_to_visual"](doc)


def training_examples(task: str, seeds: Iterable[int]) -> list[dict]:
    """Training examples ``{"image", "prompt", "answer"}`` for a mini task, one per document of each seed.

    Seeds must be >= ``TRAIN_SEED_START`` (the suite's own seeds are refused), and a document whose
    image is pixel-identical to one in the suite is left out. ``prompt`` is exactly what lmms-eval
    gives the model; ``answer`` gets full marks under the task's own process_results, also when its
    words are re-joined with single spaces.
    """
    out = []
    for seed in seeds:
        if seed < TRAIN_SEED_START:
            raise ValueError(f"training seed {seed} is below {TRAIN_SEED_START}: "
                             "seeds under it belong to the suite")
        for doc, answer in items(task, seed):
            if any(pixel_digest(img) in _suite_digests(task) for img in doc_images(doc)):
                continue
            out.append({"image": task_visuals(task, doc)[0], "prompt": task_prompt(task, doc),
                        "answer": answer})
    return out


WARMUP_KINDS = ("color", "shape", "location", "count", "size")
OPEN_INSTRUCTION = "Answer the question using a single word or phrase."


def warmup_examples(n: int) -> list[dict]:
    """``n`` easy perception examples ``{"image", "prompt", "answer"}``: facts about a shape scene (colour,
    shape, location, count, size) asked openly, as a VLM's alignment stage asks them. Seeds from
    ``TRAIN_SEED_START`` on, in a namespace of their own."""
    namespace = zlib.crc32(b"warmup")
    facts = [shape_fact(Rng(namespace, TRAIN_SEED_START + i), WARMUP_KINDS[i % len(WARMUP_KINDS)])
             for i in range(n)]
    return [{"image": f.image, "prompt": f"{f.question}\n{OPEN_INSTRUCTION}", "answer": f.answer}
            for f in facts]


WORD_PATTERN = re.compile(r"\w+|[^\w\s]+")
OPTION = re.compile(r"^(\(?)([A-Z])([.)])\s+(.*)$")  # "A. text" or "(A) text"


def options(prompt: str, answer: str) -> tuple[list[str], list[int], list[re.Match], str] | None:
    """A lettered prompt's lines, option line numbers, option matches and the right option's text;
    None when ``answer`` is not one of the prompt's option letters."""
    lines = prompt.split("\n")
    at = [i for i, line in enumerate(lines) if OPTION.match(line)]
    found = [OPTION.match(lines[i]) for i in at]
    letters = [m.group(2) for m in found]
    if answer not in letters:
        return None
    return lines, at, found, found[letters.index(answer)].group(4)



def vocabulary_corpus(seeds_per_task: int = 300) -> list[str]:
    """Texts covering every word the world can produce: all closed word lists, plus prompts and answers
    of ``seeds_per_task`` training seeds of every task (for the prompt templates)."""
    from scopebench.demo.synth import depth, diagrams, docs, draw, pictures, road

    words = [*lexicon(), *draw.COLORS, *draw.SHAPES, *(f"{s}s" for s in draw.SHAPES), *draw.PATTERNS,
             *pictures.PLACES, *pictures.LANDMARKS, *pictures.STYLES, *diagrams.ORGANISMS,
             *diagrams.PLANT_PARTS, *(s for cycle in diagrams.LIFE_CYCLES for s in cycle), *docs.DOC_TITLES,
             *docs.CHART_TITLES, *docs.ITEMS,
             *depth.KINDS, *(f"{k}s" for k in depth.KINDS), *road.LIGHTS, *road.CAR_COLORS,
             "yes", "no", "Yes", "No", "left", "right", "above", "below", "repel", "attract", "car", "filled",
             "empty",
             "solid", "dashed", "inside", "outside", "up", "down"]
    corpus = [" ".join(words), *(f"{ex['prompt']} {ex['answer']}" for ex in warmup_examples(200))]
    for task in TASKS:
        for ex in training_examples(task, range(TRAIN_SEED_START, TRAIN_SEED_START + seeds_per_task)):
            corpus += [ex["prompt"], ex["answer"]]
    return corpus
