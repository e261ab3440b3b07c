"""The shared pieces of the synthetic world: a seeded random source, a visual fact, and its closed word lists.

A :class:`Fact` is one question about one rendered image, with its answer, the candidate answers
(for multiple-choice formats) and a yes/no claim template; every benchmark formats facts its own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from PIL import Image

T = TypeVar("T")

NUMBERS = tuple(str(n) for n in range(100))  # every number the world writes or asks for is in 0..99
LETTERS = ("A", "B", "C", "D")
WORDS = ("stop", "open", "cafe", "bank", "shop", "park", "book", "milk", "taxi", "hotel", "exit", "sale",
         "pizza", "music", "bus", "fish", "moon", "star", "rain", "gold", "lamp", "tree", "door", "road")
NAMES = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry")
CITIES = ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Quito")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


class Rng:
    """A small convenience layer over ``numpy.random.Generator`` (deterministic for a given key)."""

    def __init__(self, *key: int) -> None:
        self.gen = np.random.default_rng([int(k) for k in key])

    def int(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi] (both ends included)."""
        return int(self.gen.integers(lo, hi + 1))

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.gen.uniform(lo, hi))

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.gen.random() < p)

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.gen.integers(len(seq)))]

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        """k distinct elements of ``seq`` in random order."""
        return [seq[i] for i in self.gen.permutation(len(seq))[:k]]

    def shuffled(self, seq: Sequence[T]) -> list[T]:
        return self.sample(seq, len(seq))


@dataclass
class Fact:
    """One question about one image.

    ``options`` holds every candidate answer (the right one included, distinct); ``claim`` is a yes/no
    question template with one ``{}`` slot that is true when filled with ``answer``.
    """

    image: Image.Image
    question: str
    answer: str
    options: list[str]
    claim: str
    skill: str
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer not in self.options or len(set(self.options)) != len(self.options):
            raise ValueError(f"bad options {self.options} for answer {self.answer!r} ({self.question})")

    def distractors(self) -> list[str]:
        return [o for o in self.options if o != self.answer]


def choices(rng: Rng, fact: Fact, k: int = 4) -> tuple[list[str], int]:
    """Up to k shuffled candidate answers (the right one included) and the index of the right one."""
    picked = [fact.answer] + rng.sample(fact.distractors(), min(k, len(fact.options)) - 1)
    order = rng.shuffled(picked)
    return order, order.index(fact.answer)


def yes_no(rng: Rng, fact: Fact, truth: bool) -> str:
    """The fact's claim filled with the right answer (truth=True) or a wrong one."""
    return fact.claim.format(fact.answer if truth else rng.pick(fact.distractors()))


def near_numbers(rng: Rng, value: int, k: int, lo: int = 0, hi: int = 99) -> list[str]:
    """``value`` and k-1 other distinct numbers close to it, as strings."""
    pool = [n for n in range(max(lo, value - 6), min(hi, value + 6) + 1) if n != value]
    return [str(value)] + [str(n) for n in rng.sample(pool, k - 1)]


def lexicon() -> list[str]:
    """Every closed word list of the world (numbers, letters, words, names, ...)."""
    return [*NUMBERS, *LETTERS, *WORDS, *(w.upper() for w in WORDS), *NAMES, *CITIES, *MONTHS, *QUADRANTS]
