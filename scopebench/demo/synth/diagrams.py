"""Diagrams and reasoning pictures for the Knowledge category: food chains, life cycles, plant parts,
magnets, maps, balances, trees, labelled rectangles and counting with arithmetic over shape scenes."""

from __future__ import annotations

import math

from scopebench.demo.synth.core import CITIES, LETTERS, Fact, Rng, near_numbers
from scopebench.demo.synth.draw import (
    COLORS,
    INK,
    SIZE,
    WHITE,
    draw_arrow,
    draw_shape,
    draw_text,
    draw_text_centered,
    lighter,
    new_canvas,
    text_size,
)
from scopebench.demo.synth.shapes import SHAPES, render, scatter

FOOD_CHAINS = (("grass", "rabbit", "fox"), ("seeds", "mouse", "snake", "hawk"), ("algae", "fish", "bear"),
               ("leaves", "insect", "frog", "heron"), ("plant", "deer", "wolf"))
LIFE_CYCLES = (("egg", "larva", "pupa", "adult"), ("egg", "tadpole", "froglet", "frog"),
               ("seed", "sprout", "plant", "flower"))
PLANT_PARTS = ("flower", "leaf", "stem", "root")
ORGANISMS = tuple(dict.fromkeys(o for chain in FOOD_CHAINS for o in chain))


def _label_box(img, d, center: tuple[float, float], text: str,
               fill=WHITE) -> tuple[float, float, float, float]:
    tw, th = text_size(text)
    x, y = center
    box = (x - tw / 2 - 3, y - th / 2 - 2, x + tw / 2 + 3, y + th / 2 + 2)
    d.rectangle(box, fill=fill, outline=INK)
    draw_text_centered(img, center, text)
    return box


def food_chain_fact(rng: Rng, kind: str) -> Fact:
    """A chain of labelled boxes from bottom to top or top to bottom; arrows point from the food to
    the eater."""
    chain = rng.pick(FOOD_CHAINS)
    img, d = new_canvas(lighter(COLORS[rng.pick(list(COLORS))], 0.85))
    n = len(chain)
    upward = rng.coin()  # the producer at the bottom (arrows up) or at the top (arrows down)
    x_from, x_to = rng.uniform(30, 98), rng.uniform(30, 98)
    centers = []
    for i in range(n):
        t = (i + 0.5) / n
        centers.append((x_from + (x_to - x_from) * t, SIZE * (1 - t) if upward else SIZE * t))
    boxes = [_label_box(img, d, c, name) for c, name in zip(centers, chain, strict=True)]
    for a, b in zip(boxes, boxes[1:], strict=False):
        start, end = ((a[1], b[3] + 1) if upward else (a[3], b[1] - 1))
        draw_arrow(d, ((a[0] + a[2]) / 2, start), ((b[0] + b[2]) / 2, end))
    others = [o for o in ORGANISMS if o not in chain]
    if kind == "producer":
        ans = chain[0]
        q, claim = ("Which organism is the producer in this food chain?",
                    "Is the {} the producer in this food chain?")
    elif kind == "top":
        ans = chain[-1]
        q, claim = ("Which organism is at the top of this food chain?",
                    "Is the {} at the top of this food chain?")
    elif kind == "eats":
        i = rng.int(1, n - 1)
        ans = chain[i - 1]
        q, claim = f"What does the {chain[i]} eat in this food chain?", f"Does the {chain[i]} eat the {{}}?"
    elif kind == "eaten_by":
        i = rng.int(0, n - 2)
        ans = chain[i + 1]
        q, claim = f"Which organism eats the {chain[i]}?", f"Does the {{}} eat the {chain[i]}?"
    else:
        raise ValueError(f"unknown food chain kind {kind!r}")
    options = [ans, *rng.sample([o for o in chain if o != ans] + others, 3)]
    return Fact(img, q, ans, options, claim, "diagram")


def life_cycle_fact(rng: Rng, kind: str) -> Fact:
    """Four stages around a circle with arrows going clockwise; asks what comes after or before."""
    stages = rng.pick(LIFE_CYCLES)
    img, d = new_canvas(lighter(COLORS[rng.pick(list(COLORS))], rng.uniform(0.85, 0.97)))
    a0 = rng.uniform(0, 2 * math.pi)
    R = rng.uniform(34, 42)
    cx, cy = SIZE / 2 + rng.uniform(-6, 6), SIZE / 2 + rng.uniform(-6, 6)
    box_color = lighter(COLORS[rng.pick(list(COLORS))], 0.75)
    centers = [(cx + R * math.cos(a0 + k * math.pi / 2), cy + R * math.sin(a0 + k * math.pi / 2))
               for k in range(4)]
    for k in range(4):
        a1, a2 = a0 + k * math.pi / 2 + 0.45, a0 + (k + 1) * math.pi / 2 - 0.45
        p1 = (cx + R * math.cos(a1), cy + R * math.sin(a1))
        p2 = (cx + R * math.cos(a2), cy + R * math.sin(a2))
        draw_arrow(d, p1, p2, (90, 90, 90), width=2)
    for c, s in zip(centers, stages, strict=True):
        _label_box(img, d, c, s, box_color)
    i = rng.int(0, 3)
    if kind == "after":
        ans = stages[(i + 1) % 4]
        q, claim = (f"Which stage comes after the {stages[i]}?",
                    f"Does the {{}} stage come after the {stages[i]}?")
    elif kind == "before":
        ans = stages[(i - 1) % 4]
        q, claim = (f"Which stage comes before the {stages[i]}?",
                    f"Does the {{}} stage come before the {stages[i]}?")
    else:
        raise ValueError(f"unknown life cycle kind {kind!r}")
    return Fact(img, q, ans, [s for s in stages if s != stages[i]], claim, "diagram")


def plant_fact(rng: Rng) -> Fact:
    """A plant with letter labels A-D pointing at its flower, a leaf, the stem and the root."""
    img, d = new_canvas(lighter((120, 180, 230), 0.7))
    ground = rng.int(80, 92)
    d.rectangle([0, ground, SIZE, SIZE], fill=(160, 120, 80))
    x = rng.uniform(50, 78)
    d.line([(x, ground), (x, 34)], fill=(40, 140, 50), width=3)
    for dx in (-10, 10):
        d.ellipse([x + dx - 8 + (0 if dx > 0 else -4), 52, x + dx + 8 + (4 if dx > 0 else 0), 62],
                  fill=(50, 160, 60))
    for k in range(6):
        a = k * math.pi / 3
        d.ellipse([x + 8 * math.cos(a) - 6, 30 + 8 * math.sin(a) - 6,
                   x + 8 * math.cos(a) + 6, 30 + 8 * math.sin(a) + 6],
                  fill=COLORS[rng.pick(("red", "purple", "orange", "yellow"))])
    d.ellipse([x - 4, 26, x + 4, 34], fill=(250, 220, 60))
    for k in range(4):
        d.line([(x, ground), (x - 14 + 9 * k, ground + 18 + (k % 2) * 6)], fill=(230, 220, 200), width=2)
    anchors = {"flower": (x + 10, 28), "leaf": (x + 18, 57), "stem": (x + 1, 72),
               "root": (x + 4, ground + 14)}
    letters = rng.shuffled(LETTERS)
    label_x = 112 if x < 64 else 16
    for i, part in enumerate(PLANT_PARTS):
        ly = 20 + i * 26
        d.line([(label_x, ly), anchors[part]], fill=INK)
        d.ellipse([label_x - 7, ly - 7, label_x + 7, ly + 7], fill=WHITE, outline=INK)
        draw_text_centered(img, (label_x + 1, ly), letters[i])
    part = rng.pick(PLANT_PARTS)
    letter = letters[PLANT_PARTS.index(part)]
    return Fact(img, f"Which part of the plant does label {letter} show?", part, list(PLANT_PARTS),
                f"Does label {letter} show the {{}}?", "diagram")


def magnets_fact(rng: Rng) -> Fact:
    """Two bar magnets end to end; facing poles decide attract (different) or repel (same)."""
    img, d = new_canvas(WHITE)
    y, h, w, gap = rng.uniform(45, 80), 20, rng.uniform(36, 44), rng.uniform(12, 22)
    x0 = (SIZE - 2 * w - gap) / 2
    north, south = (COLORS["red"], (90, 120, 200)) if rng.coin() else ((200, 90, 160), (80, 170, 160))
    poles = []
    for m in range(2):
        left = rng.pick(("N", "S"))
        right = "S" if left == "N" else "N"
        mx = x0 + m * (w + gap)
        for j, pole in enumerate((left, right)):
            px = mx + j * w / 2
            d.rectangle([px, y, px + w / 2, y + h], fill=north if pole == "N" else south, outline=INK)
            draw_text_centered(img, (px + w / 4, y + h / 2), pole, WHITE)
        poles.append((left, right))
    ans = "repel" if poles[0][1] == poles[1][0] else "attract"
    return Fact(img, "Will these magnets attract or repel each other?", ans, ["repel", "attract"],
                "Will these magnets {} each other?", "physics")


def map_fact(rng: Rng) -> Fact:
    """Cities as dots with names on a map with a compass; asks for the one farthest in a direction."""
    img, d = new_canvas((220, 235, 200))
    d.polygon([(8, 10), (118, 6), (122, 118), (12, 122)], fill=(200, 225, 175), outline=(120, 140, 100))
    cx, cy = 112, 18
    draw_arrow(d, (cx, cy + 8), (cx, cy - 6), INK, width=2)
    draw_text_centered(img, (cx, cy + 14), "N")
    names = rng.sample(CITIES, rng.int(3, 4))
    while True:
        pts = [(rng.uniform(14, 80), rng.uniform(36, 110)) for _ in names]
        if all(abs(a[0] - b[0]) >= 10 and abs(a[1] - b[1]) >= 10
               for i, a in enumerate(pts) for b in pts[i + 1:]):
            break
    for (x, y), name in zip(pts, names, strict=True):
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=INK)
        draw_text(img, (x + 5, y - 5), name)
    direction = rng.pick(("north", "south", "east", "west"))
    key = {"north": lambda p: p[1], "south": lambda p: -p[1], "east": lambda p: -p[0],
           "west": lambda p: p[0]}[direction]
    ans = names[min(range(len(names)), key=lambda i: key(pts[i]))]
    return Fact(img, f"Which city is farthest {direction}?", ans, names,
                f"Is {{}} the city farthest {direction}?",
                "geography")


def balance_fact(rng: Rng) -> Fact:
    """A balance with one object on each pan, tilted down on the heavier side."""
    img, d = new_canvas(lighter(COLORS[rng.pick(list(COLORS))], rng.uniform(0.85, 0.97)))
    (s1, c1), (s2, c2) = [(s, c) for s, c in zip(rng.sample(SHAPES, 2), rng.sample(list(COLORS), 2),
                                                 strict=True)]
    heavy = rng.int(0, 1)
    tilt = rng.uniform(8, 14) * (1 if heavy == 1 else -1)
    px, py, arm = SIZE / 2 + rng.uniform(-8, 8), rng.uniform(54, 66), rng.uniform(38, 46)
    d.polygon([(px, py), (px - 14, 110), (px + 14, 110)], fill=(120, 120, 120))
    ends = [(px - arm, py - tilt), (px + arm, py + tilt)]
    d.line(ends, fill=INK, width=3)
    for (ex, ey), (s, c) in zip(ends, ((s1, c1), (s2, c2)), strict=True):
        d.line([(ex, ey), (ex, ey + 10)], fill=INK)
        d.rectangle([ex - 14, ey + 10, ex + 14, ey + 13], fill=(90, 90, 90))
        draw_shape(img, s, ex, ey + 10 - 11, 10, COLORS[c])
    names = [f"{c1} {s1}", f"{c2} {s2}"]
    return Fact(img, f"Which object is heavier, the {names[0]} or the {names[1]}?", names[heavy], names,
                "Is the {} the heavier object?", "physics")


def tree_fact(rng: Rng, kind: str) -> Fact:
    """A binary tree diagram; asks for the number of leaves or of nodes."""
    img, d = new_canvas(WHITE)
    nodes = {(0, 0)}
    for _ in range(rng.int(2, 8)):
        parents = [n for n in nodes
                   if n[0] < 3 and sum((n[0] + 1, 2 * n[1] + k) in nodes for k in (0, 1)) < 2]
        depth, i = rng.pick(sorted(parents))
        free = [k for k in (0, 1) if (depth + 1, 2 * i + k) not in nodes]
        nodes.add((depth + 1, 2 * i + rng.pick(free)))
    top, gap = rng.uniform(10, 20), rng.uniform(26, 34)
    pos = {(dp, i): (SIZE * (i + 0.5) / 2 ** dp + rng.uniform(-3, 3), top + dp * gap)
           for dp, i in sorted(nodes)}
    node_color = lighter(COLORS[rng.pick(list(COLORS))], 0.5)
    for (dp, i) in nodes:
        if dp:
            d.line([pos[(dp, i)], pos[(dp - 1, i // 2)]], fill=INK)
    for p in pos.values():
        d.ellipse([p[0] - 6, p[1] - 6, p[0] + 6, p[1] + 6], fill=node_color, outline=INK)
    leaves = sum(not any((dp + 1, 2 * i + k) in nodes for k in (0, 1)) for dp, i in nodes)
    if kind == "leaves":
        ans, q, claim = leaves, "How many leaf nodes does the tree have?", "Does the tree have {} leaf nodes?"
    else:
        ans, q, claim = len(nodes), "How many nodes does the tree have?", "Does the tree have {} nodes?"
    return Fact(img, q, str(ans), near_numbers(rng, ans, 4, lo=1, hi=15), claim, "counting")


def rectangle_fact(rng: Rng, kind: str) -> Fact:
    """A rectangle with its side lengths written beside it; asks for its area or perimeter."""
    w, h = rng.int(2, 9), rng.int(2, 9)
    unit = min(90 / w, 80 / h, rng.uniform(9, 12))
    img, d = new_canvas(lighter(COLORS[rng.pick(list(COLORS))], rng.uniform(0.85, 0.97)))
    x0 = rng.uniform(16, SIZE - 6 - w * unit)
    y0 = rng.uniform(6, SIZE - 18 - h * unit)
    d.rectangle([x0, y0, x0 + w * unit, y0 + h * unit], fill=lighter(COLORS[rng.pick(list(COLORS))], 0.6),
                outline=INK)
    draw_text_centered(img, (x0 + w * unit / 2, y0 + h * unit + 8), str(w))
    draw_text_centered(img, (x0 - 8, y0 + h * unit / 2), str(h))
    ans = w * h if kind == "area" else 2 * (w + h)
    return Fact(img, f"What is the {kind} of the rectangle?", str(ans), near_numbers(rng, ans, 4, lo=1),
                f"Is the {kind} of the rectangle {{}}?", "geometry")


def subtract_fact(rng: Rng) -> Fact:
    """CLEVR-style counting with subtraction: remove all objects of a colour or shape, count the rest."""
    n = rng.int(3, 8)
    kinds = [(rng.pick(SHAPES[:4]), rng.pick(list(COLORS)[:4])) for _ in range(n)]
    objs = scatter(rng, kinds, radius=(8, 11))
    by_color = rng.coin()
    target = rng.pick([k[1] if by_color else k[0] for k in kinds])
    left = sum((k[1] if by_color else k[0]) != target for k in kinds)
    what = f"{target} objects" if by_color else f"{target}s"
    q = f"Subtract all {what}. How many objects are left?"
    return Fact(render(objs), q, str(left), near_numbers(rng, left, 4, lo=0, hi=9),
                f"After subtracting all {what}, are {{}} objects left?", "arithmetic")
