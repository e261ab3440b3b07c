"""Scenes of flat shapes (colour, shape, texture, size, position) and the facts they answer.

These carry the General-category skills: colour, shape, texture, counting, relative position and size.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from scopebench.demo.synth.core import QUADRANTS, Fact, Rng, near_numbers
from scopebench.demo.synth.draw import COLORS, PAPER, PATTERNS, SHAPES, SIZE, draw_shape, new_canvas

BACKGROUNDS = (PAPER, (236, 236, 236), (245, 238, 222), (228, 240, 232))
SMALL, LARGE = (8, 10), (16, 19)


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    x: float
    y: float
    r: float
    pattern: str = "solid"

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


def place(rng: Rng, radii: list[float],
          taken: list[tuple[float, float, float]] = ()) -> list[tuple[float, float]] | None:
    """Centres for discs of the given radii on the canvas, clear of each other and of the ``taken``
    (x, y, r) discs (None if it fails)."""
    discs = list(taken)
    out = []
    for r in radii:
        for _ in range(200):
            x, y = rng.uniform(r + 3, SIZE - r - 3), rng.uniform(r + 3, SIZE - r - 3)
            if all((x - a) ** 2 + (y - b) ** 2 > (r + c + 5) ** 2 for a, b, c in discs):
                break
        else:
            return None
        discs.append((x, y, r))
        out.append((x, y))
    return out


def scatter(rng: Rng, kinds: list[tuple[str, str]], radius: tuple[int, int] | None = None,
            patterns: bool = False, radii: list[int] | None = None) -> list[Obj]:
    """Objects of the given (shape, colour) kinds at random non-overlapping places."""
    while True:
        rs = radii or [rng.int(*(radius or rng.pick((SMALL, LARGE)))) for _ in kinds]
        spots = place(rng, rs)
        if spots is not None:
            return [Obj(s, c, x, y, r, rng.pick(PATTERNS) if patterns else "solid")
                    for (s, c), (x, y), r in zip(kinds, spots, rs, strict=True)]


def distinct_kinds(rng: Rng, n: int) -> list[tuple[str, str]]:
    """n (shape, colour) pairs, no two alike."""
    pairs = [(s, c) for s in SHAPES for c in COLORS]
    return rng.sample(pairs, n)


def render(objs: list[Obj], bg: tuple[int, int, int] = PAPER) -> Image.Image:
    img, _ = new_canvas(bg)
    for o in objs:
        draw_shape(img, o.shape, o.x, o.y, o.r, COLORS[o.color], o.pattern)
    return img


def _unique_by(rng: Rng, n: int, attr: str) -> list[tuple[str, str]]:
    """n kinds whose shapes (attr='shape') or colours (attr='color') are all different."""
    shapes, colors = rng.sample(SHAPES, n), rng.sample(list(COLORS), n)
    if attr == "shape":
        return [(s, rng.pick(list(COLORS))) for s in shapes]
    return [(rng.pick(SHAPES), c) for c in colors]


def shape_fact(rng: Rng, kind: str) -> Fact:
    """A fact of one kind: color, shape, pattern, count, exists, relation, size or location."""
    bg = rng.pick(BACKGROUNDS)
    if kind in ("color", "pattern"):
        objs = scatter(rng, _unique_by(rng, rng.int(1, 4), "shape"), patterns=kind == "pattern")
        o = rng.pick(objs)
        if kind == "color":
            return Fact(render(objs, bg), f"What color is the {o.shape}?", o.color, list(COLORS),
                        f"Is the {o.shape} {{}}?", "color")
        return Fact(render(objs, bg), f"What pattern does the {o.shape} have?", o.pattern, list(PATTERNS),
                    f"Is the {o.shape} {{}}?", "texture")
    if kind == "shape":
        objs = scatter(rng, _unique_by(rng, rng.int(1, 4), "color"))
        o = rng.pick(objs)
        return Fact(render(objs, bg), f"What shape is the {o.color} object?", o.shape, list(SHAPES),
                    f"Is the {o.color} object a {{}}?", "shape")
    if kind == "count":
        target = rng.pick(SHAPES)
        n = rng.int(1, 5)
        others = [s for s in SHAPES if s != target]
        kinds = [(target, rng.pick(list(COLORS))) for _ in range(n)]
        kinds += [(rng.pick(others), rng.pick(list(COLORS))) for _ in range(rng.int(0, 3))]
        objs = scatter(rng, kinds, radius=(8, 12))
        return Fact(render(objs, bg), f"How many {target}s are there in the image?", str(n),
                    near_numbers(rng, n, 4, lo=1, hi=9), f"Is the number of {target}s in the image {{}}?",
                    "count")
    if kind == "exists":
        kinds = distinct_kinds(rng, rng.int(2, 4))
        objs = scatter(rng, kinds)
        absent = [f"{c} {s}" for s in SHAPES for c in COLORS if (s, c) not in kinds
                  and any(s == k[0] or c == k[1] for k in kinds)]
        present = rng.pick(objs).name
        return Fact(render(objs, bg), "Which of these objects is in the image?", present,
                    [present, *rng.sample(absent, 3)], "Is there a {} in the image?", "existence")
    if kind == "relation":
        return _relation_fact(rng, bg)
    if kind == "size":
        small, big = scatter(rng, distinct_kinds(rng, 2), radii=[rng.int(*SMALL), rng.int(*LARGE)])
        a, b = rng.shuffled([small, big])
        return Fact(render([small, big], bg), f"Which object is larger, the {a.name} or the {b.name}?",
                    big.name, [a.name, b.name],
                    f"Of the {a.name} and the {b.name}, is the {{}} the larger one?",
                    "size")
    if kind == "location":
        quad = rng.int(0, 3)
        half = SIZE / 2
        x0, y0 = (quad % 2) * half, (quad // 2) * half
        s, c = distinct_kinds(rng, 1)[0]
        r = rng.int(*SMALL)
        x, y = rng.uniform(x0 + 14, x0 + half - 14), rng.uniform(y0 + 14, y0 + half - 14)
        o = Obj(s, c, x, y, r)
        return Fact(render([o], bg), f"Where is the {o.name} in the image?", QUADRANTS[quad], list(QUADRANTS),
                    f"Is the {o.name} in the {{}} of the image?", "location")
    raise ValueError(f"unknown shape fact kind {kind!r}")


def _relation_fact(rng: Rng, bg: tuple[int, int, int]) -> Fact:
    while True:
        objs = scatter(rng, distinct_kinds(rng, rng.int(2, 4)))
        a, b = rng.sample(objs, 2)
        dx, dy = a.x - b.x, a.y - b.y
        if abs(dx) >= 24 and abs(dx) >= abs(dy):
            answer = "left" if dx < 0 else "right"
            return Fact(render(objs, bg), f"Is the {a.name} to the left or to the right of the {b.name}?",
                        answer, ["left", "right"], f"Is the {a.name} on the {{}} of the {b.name}?",
                        "position")
        if abs(dy) >= 24:
            answer = "above" if dy < 0 else "below"
            return Fact(render(objs, bg), f"Is the {a.name} above or below the {b.name}?", answer,
                        ["above", "below"], f"Is the {a.name} {{}} the {b.name}?", "position")
