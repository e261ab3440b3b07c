"""MMVP-style image pairs: two nearly identical pictures that differ in one fine visual pattern."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from scopebench.demo.synth.core import Rng
from scopebench.demo.synth.draw import COLORS, INK, SIZE, draw_shape, lighter, new_canvas
from scopebench.demo.synth.shapes import BACKGROUNDS, distinct_kinds, place


@dataclass
class Pair:
    """One question, its two options, and one image per option (image i is answered by option i)."""

    question: str
    options: list[str]
    images: list[Image.Image]


def _decor(rng: Rng, avoid: list[tuple[float, float, float]]) -> Callable[[Image.Image], None]:
    """A few background shapes shared by both images of a pair."""
    kinds = distinct_kinds(rng, rng.int(0, 2))
    radii = [rng.int(6, 9) for _ in kinds]
    spots = place(rng, radii, avoid) or []

    def draw(img: Image.Image) -> None:
        for (s, c), (x, y), r in zip(kinds, spots, radii, strict=False):
            draw_shape(img, s, x, y, r, lighter(COLORS[c], 0.35))

    return draw


def _arrow(rng: Rng) -> Pair:
    axis = rng.pick((("up", "down"), ("left", "right")))
    cx, cy, L = rng.uniform(40, 88), rng.uniform(40, 88), rng.uniform(16, 24)
    color = COLORS[rng.pick(list(COLORS))]
    decor = _decor(rng, [(cx, cy, L + 4)])
    bg = rng.pick(BACKGROUNDS)

    def draw(direction: str) -> Image.Image:
        img, d = new_canvas(bg)
        decor(img)
        ux, uy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[direction]
        tail, tip = (cx - ux * L, cy - uy * L), (cx + ux * L, cy + uy * L)
        d.line([tail, (cx + ux * L * 0.4, cy + uy * L * 0.4)], fill=color, width=5)
        px, py = -uy, ux
        head = [tip, (cx + ux * L * 0.2 + px * 9, cy + uy * L * 0.2 + py * 9),
                (cx + ux * L * 0.2 - px * 9, cy + uy * L * 0.2 - py * 9)]
        d.polygon(head, fill=color)
        return img

    return Pair(f"Is the arrow pointing {axis[0]} or {axis[1]}?", list(axis), [draw(a) for a in axis])


def _dot_color(rng: Rng) -> Pair:
    shape = rng.pick(("square", "circle", "diamond"))
    base, c1, c2 = rng.sample(list(COLORS), 3)
    cx, cy, r = rng.uniform(44, 84), rng.uniform(44, 84), rng.uniform(20, 28)
    dx, dy = rng.uniform(-0.4, 0.4) * r, rng.uniform(-0.4, 0.4) * r
    decor = _decor(rng, [(cx, cy, r)])
    bg = rng.pick(BACKGROUNDS)

    def draw(color: str) -> Image.Image:
        img, d = new_canvas(bg)
        decor(img)
        draw_shape(img, shape, cx, cy, r, lighter(COLORS[base], 0.6))
        d.ellipse([cx + dx - 3, cy + dy - 3, cx + dx + 3, cy + dy + 3], fill=COLORS[color])
        return img

    return Pair(f"What color is the small dot on the {shape}?", [c1, c2], [draw(c1), draw(c2)])


def _count(rng: Rng) -> Pair:
    n = rng.int(2, 4)
    shape = rng.pick(("star", "triangle", "circle"))
    color = COLORS[rng.pick(list(COLORS))]
    radii = [rng.int(7, 10) for _ in range(n + 1)]
    spots = None
    while spots is None:
        spots = place(rng, radii)
    bg = rng.pick(BACKGROUNDS)

    def draw(k: int) -> Image.Image:
        img, _ = new_canvas(bg)
        for (x, y), r in list(zip(spots, radii, strict=True))[:k]:
            draw_shape(img, shape, x, y, r, color)
        return img

    return Pair(f"How many {shape}s are in the image?", [str(n), str(n + 1)], [draw(n), draw(n + 1)])


def _inside(rng: Rng) -> Pair:
    cx, cy, R = rng.uniform(48, 80), rng.uniform(48, 80), rng.uniform(22, 30)
    ring, dot = rng.sample(list(COLORS), 2)
    ang = rng.uniform(0, 6.28)
    bg = rng.pick(BACKGROUNDS)

    def draw(where: str) -> Image.Image:
        img, d = new_canvas(bg)
        d.ellipse([cx - R, cy - R, cx + R, cy + R], outline=COLORS[ring], width=3)
        rad = R - 8 if where == "inside" else R + 8
        x, y = cx + rad * math.cos(ang), cy + rad * math.sin(ang)
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLORS[dot])
        return img

    return Pair("Is the dot inside or outside the circle?", ["inside", "outside"],
                [draw("inside"), draw("outside")])


def _filled(rng: Rng) -> Pair:
    shape = rng.pick(("circle", "square", "triangle"))
    color = rng.pick(list(COLORS))
    cx, cy, r = rng.uniform(40, 88), rng.uniform(40, 88), rng.uniform(14, 22)
    decor = _decor(rng, [(cx, cy, r)])
    bg = rng.pick(BACKGROUNDS)

    def draw(state: str) -> Image.Image:
        img, _ = new_canvas(bg)
        decor(img)
        if state == "filled":
            draw_shape(img, shape, cx, cy, r, COLORS[color], outline=COLORS[color])
        else:
            draw_shape(img, shape, cx, cy, r, bg, outline=COLORS[color])
        return img

    return Pair(f"Is the {shape} filled or empty?", ["filled", "empty"], [draw("filled"), draw("empty")])


def _line(rng: Rng) -> Pair:
    y = rng.uniform(30, 98)
    x0, x1 = rng.uniform(10, 30), rng.uniform(98, 118)
    color = INK if rng.coin() else COLORS[rng.pick(list(COLORS))]
    bg = rng.pick(BACKGROUNDS)

    def draw(style: str) -> Image.Image:
        img, d = new_canvas(bg)
        if style == "solid":
            d.line([(x0, y), (x1, y)], fill=color, width=2)
        else:
            x = x0
            while x < x1:
                d.line([(x, y), (min(x + 5, x1), y)], fill=color, width=2)
                x += 9
        return img

    return Pair("Is the line solid or dashed?", ["solid", "dashed"], [draw("solid"), draw("dashed")])


def _side(rng: Rng) -> Pair:
    shape = rng.pick(("square", "circle", "star", "triangle"))
    color = COLORS[rng.pick(list(COLORS))]
    y, off, r = rng.uniform(30, 98), rng.uniform(18, 40), rng.uniform(8, 13)
    bg = rng.pick(BACKGROUNDS)

    def draw(side: str) -> Image.Image:
        img, d = new_canvas(bg)
        d.line([(SIZE / 2, 0), (SIZE / 2, SIZE)], fill=(200, 200, 200), width=1)
        draw_shape(img, shape, SIZE / 2 - off if side == "left" else SIZE / 2 + off, y, r, color)
        return img

    return Pair(f"Is the {shape} on the left or the right side of the image?", ["left", "right"],
                [draw("left"), draw("right")])


PAIR_KINDS: dict[str, Callable[[Rng], Pair]] = {
    "orientation": _arrow, "color": _dot_color, "quantity": _count, "position": _inside,
    "state": _filled, "structure": _line, "spatial": _side,
}


def mmvp_pair(rng: Rng, kind: str) -> Pair:
    """A pair of images of the given visual pattern kind (see ``PAIR_KINDS``)."""
    return PAIR_KINDS[kind](rng)
