"""3D scenes on a ground plane seen through a pinhole camera: depth from ground contact, relative size and
occlusion. They carry the Vision-Centric skills (CV-Bench depth/distance/count/relation, RealWorldQA
roads)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

from scopebench.demo.synth.core import Fact, Rng, near_numbers
from scopebench.demo.synth.draw import COLORS, INK, SIZE, darker, lighter, new_canvas

KINDS = {"box": 0.9, "ball": 0.8, "cone": 1.0}  # real-world size of each object kind
FOCAL = 70.0
Z_NEAR, Z_FAR = 2.0, 9.0
HIGHLIGHTS = ("red", "blue", "green")


@dataclass(frozen=True)
class Thing:
    kind: str
    color: str
    X: float  # metres right of the camera axis
    Z: float  # metres in front of the camera

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass
class Camera:
    horizon: float

    def base_y(self, Z: float) -> float:
        return self.horizon + (SIZE - 3 - self.horizon) * Z_NEAR / Z

    def screen_x(self, X: float, Z: float) -> float:
        return SIZE / 2 + FOCAL * X / Z

    def bbox(self, t: Thing) -> tuple[float, float, float, float]:
        s = FOCAL * KINDS[t.kind] / t.Z
        x, y = self.screen_x(t.X, t.Z), self.base_y(t.Z)
        return x - s / 2, y - s, x + s / 2, y


def _overlap(a: tuple, b: tuple) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def sample_things(rng: Rng, cam: Camera, kinds: list[tuple[str, str]]) -> list[Thing]:
    """Objects of the given (kind, colour) at random ground positions, each at most 30% hidden."""
    while True:
        things = []
        for kind, color in kinds:
            Z = rng.uniform(Z_NEAR, Z_FAR)
            half = (SIZE / 2 - 10) * Z / FOCAL - KINDS[kind] / 2
            things.append(Thing(kind, color, rng.uniform(-half, half), Z))
        boxes = [cam.bbox(t) for t in things]
        area = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        if all(sum(_overlap(boxes[i], boxes[j]) for j in range(len(things)) if things[j].Z < things[i].Z)
               <= 0.3 * area[i] for i in range(len(things))):
            return things


def _ground(rng: Rng, cam: Camera) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img, d = new_canvas(lighter((120, 170, 220), rng.uniform(0.2, 0.5)))
    floor = rng.pick(((150, 150, 145), (120, 160, 95), (185, 160, 120)))
    d.rectangle([0, cam.horizon, SIZE, SIZE], fill=floor)
    line = darker(floor, 0.15)
    for Z in (2.5, 3.5, 5.0, 7.5):
        d.line([(0, cam.base_y(Z)), (SIZE, cam.base_y(Z))], fill=line)
    for X in (-6, -3, 0, 3, 6):
        d.line([(cam.screen_x(X, Z_NEAR * 0.8), cam.base_y(Z_NEAR * 0.8)), (SIZE / 2, cam.horizon)],
               fill=line)
    return img, d


def _draw_thing(d: ImageDraw.ImageDraw, cam: Camera, t: Thing) -> None:
    x0, y0, x1, y1 = cam.bbox(t)
    c = COLORS[t.color]
    if t.kind == "box":
        depth = (x1 - x0) * 0.3
        d.polygon([(x0, y0 + depth), (x0 + depth, y0), (x1 + depth, y0), (x1, y0 + depth)],
                  fill=lighter(c, 0.35))
        d.polygon([(x1, y0 + depth), (x1 + depth, y0), (x1 + depth, y1 - depth), (x1, y1)],
                  fill=darker(c, 0.3))
        d.rectangle([x0, y0 + depth, x1, y1], fill=c, outline=INK)
    elif t.kind == "ball":
        d.ellipse([x0, y0, x1, y1], fill=c, outline=INK)
        r = (x1 - x0) / 6
        d.ellipse([x0 + 2 * r, y0 + 1.5 * r, x0 + 3 * r, y0 + 2.5 * r], fill=lighter(c, 0.6))
    else:
        d.polygon([((x0 + x1) / 2, y0), (x1, y1 - 2), (x0, y1 - 2)], fill=c, outline=INK)
        d.ellipse([x0, y1 - 4, x1, y1], fill=darker(c, 0.25))


def render_scene(rng: Rng, cam: Camera, things: list[Thing], highlight: list[Thing] = ()) -> Image.Image:
    """Draw far to near (so nearer objects hide farther ones), then optional coloured boxes around objects."""
    img, d = _ground(rng, cam)
    for t in sorted(things, key=lambda t: -t.Z):
        _draw_thing(d, cam, t)
    for t, color in zip(highlight, HIGHLIGHTS, strict=False):
        x0, y0, x1, y1 = cam.bbox(t)
        d.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], outline=COLORS[color], width=2)
    return img


def _distinct(rng: Rng, n: int) -> list[tuple[str, str]]:
    return rng.sample([(k, c) for k in KINDS for c in COLORS], n)


def depth_fact(rng: Rng, kind: str, highlight: bool = False) -> Fact:
    """depth (closer to the camera), distance (closer to a reference object), count or relation (left/right).

    With ``highlight``, the objects named in the question get red/blue/green boxes (CV-Bench style) and
    the question refers to them; ``extra['refs']`` lists them in that order.
    """
    cam = Camera(rng.uniform(36, 50))
    if kind == "count":
        target = rng.pick(list(KINDS))
        n = rng.int(1, 5)
        others = [k for k in KINDS if k != target]
        kinds = [(target, rng.pick(list(COLORS))) for _ in range(n)]
        kinds += [(rng.pick(others), rng.pick(list(COLORS))) for _ in range(rng.int(0, 2))]
        things = sample_things(rng, cam, kinds)
        return Fact(render_scene(rng, cam, things), f"How many {target}s are in the image?", str(n),
                    near_numbers(rng, n, 4, lo=0, hi=6), f"Are there {{}} {target}s in the image?", "count",
                    {"target": target})
    while True:
        things = sample_things(rng, cam, _distinct(rng, rng.int(2 if kind != "distance" else 3, 4)))
        fact = _pair_fact(rng, cam, things, kind, highlight)
        if fact is not None:
            return fact


def _pair_fact(rng: Rng, cam: Camera, things: list[Thing], kind: str, highlight: bool) -> Fact | None:
    def ref(t: Thing, i: int) -> str:
        return f"the {t.name} (highlighted by a {HIGHLIGHTS[i]} box)" if highlight else f"the {t.name}"

    if kind == "depth":
        a, b = rng.sample(things, 2)
        if abs(a.Z - b.Z) < 1.5:
            return None
        near = a if a.Z < b.Z else b
        q = f"Which object is closer to the camera taking this photo, {ref(a, 0)} or {ref(b, 1)}?"
        return Fact(render_scene(rng, cam, things, [a, b] if highlight else []), q, near.name,
                    [a.name, b.name],
                    "Is the {} closer to the camera?", "depth", {"refs": [a, b]})
    if kind == "distance":
        a, b, c = rng.sample(things, 3)
        db, dc = math.dist((a.X, a.Z), (b.X, b.Z)), math.dist((a.X, a.Z), (c.X, c.Z))
        if max(db, dc) < 1.4 * min(db, dc):
            return None
        near = b if db < dc else c
        q = (f"Estimate the real-world distances between objects in this image. Which object is closer to "
             f"{ref(a, 0)}, {ref(b, 1)} or {ref(c, 2)}?")
        return Fact(render_scene(rng, cam, things, [a, b, c] if highlight else []), q, near.name,
                    [b.name, c.name], f"Is the {{}} closer to the {a.name}?", "distance", {"refs": [a, b, c]})
    if kind == "relation":
        a, b = rng.sample(things, 2)
        ax, bx = (cam.screen_x(t.X, t.Z) for t in (a, b))
        if abs(ax - bx) < 18:
            return None
        pos = "left" if ax < bx else "right"
        if highlight:
            a_ref, b_ref = (f"the {t.name} (annotated by the {c} box)" for t, c in ((a, "red"), (b, "blue")))
            q = (f"Considering the relative positions of {a_ref} and {b_ref} in the image provided, "
                 f"where is {a_ref} located with respect to {b_ref}?")
        else:
            q = f"Is the {a.name} to the left or to the right of the {b.name}?"
        return Fact(render_scene(rng, cam, things, [a, b] if highlight else []), q, pos, ["left", "right"],
                    f"Is the {a.name} on the {{}} of the {b.name}?", "position", {"refs": [a, b]})
    raise ValueError(f"unknown depth fact kind {kind!r}")
