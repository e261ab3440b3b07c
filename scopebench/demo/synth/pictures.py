"""Whole pictures with one identity: place types, landmarks, painting styles, characters, posters.

They give the coarse-perception questions (MME's scene/landmark/artwork/celebrity/posters categories,
MMBench's image_scene and image_style, SEED's scene understanding).
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from scopebench.demo.synth.core import NAMES, WORDS, Fact, Rng
from scopebench.demo.synth.draw import (
    COLORS,
    INK,
    SIZE,
    SKY,
    WHITE,
    darker,
    draw_shape,
    draw_text_centered,
    lighter,
    new_canvas,
    text_size,
)

PLACES = ("beach", "forest", "desert", "city", "mountain")
LANDMARKS = ("tower", "pyramid", "bridge", "lighthouse", "windmill")
STYLES = ("striped", "dotted", "checkered", "wavy")
CHARACTERS = NAMES[:4]
GRASS, SAND, SEA, TRUNK = (90, 170, 80), (225, 200, 140), (50, 110, 190), (120, 80, 40)


def _sky_ground(rng: Rng, ground: tuple[int, int, int], horizon: int | None = None,
                sky: tuple[int, int, int] = SKY) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    img, d = new_canvas(sky)
    h = horizon if horizon is not None else rng.int(70, 90)
    d.rectangle([0, h, SIZE, SIZE], fill=ground)
    return img, d, h


def _tree(d: ImageDraw.ImageDraw, x: float, base: float, s: float) -> None:
    d.rectangle([x - s * 0.12, base - s * 0.5, x + s * 0.12, base], fill=TRUNK)
    d.polygon([(x, base - s * 1.4), (x + s * 0.5, base - s * 0.4), (x - s * 0.5, base - s * 0.4)],
              fill=(30, 120, 50))


def _sun(d: ImageDraw.ImageDraw, rng: Rng, color: tuple[int, int, int] = (250, 210, 40)) -> None:
    x, y, r = rng.uniform(15, 113), rng.uniform(12, 30), rng.uniform(7, 11)
    d.ellipse([x - r, y - r, x + r, y + r], fill=color)


def place_picture(rng: Rng, place: str) -> Image.Image:
    """A simple landscape of the given place type."""
    if place == "beach":
        img, d, h = _sky_ground(rng, SAND, rng.int(80, 95))
        d.rectangle([0, h - rng.int(18, 28), SIZE, h], fill=SEA)
        _sun(d, rng)
        x = rng.uniform(20, 108)
        d.line([(x, h + 25), (x, h + 2)], fill=INK, width=2)
        d.pieslice([x - 16, h - 8, x + 16, h + 10], 180, 360, fill=COLORS[rng.pick(list(COLORS))])
    elif place == "forest":
        img, d, h = _sky_ground(rng, GRASS)
        for _ in range(rng.int(3, 6)):
            _tree(d, rng.uniform(10, 118), rng.uniform(h + 5, SIZE - 4), rng.uniform(20, 34))
    elif place == "desert":
        img, d, h = _sky_ground(rng, (235, 190, 110), sky=(200, 225, 245))
        for _ in range(2):
            x = rng.uniform(0, SIZE)
            d.ellipse([x - 50, h - 14, x + 50, h + 20], fill=(225, 175, 95))
        _sun(d, rng, (255, 190, 40))
        x, base = rng.uniform(20, 108), rng.uniform(h + 20, SIZE - 5)
        d.rectangle([x - 4, base - 30, x + 4, base], fill=(40, 140, 60))
        d.rectangle([x - 14, base - 22, x - 4, base - 18], fill=(40, 140, 60))
        d.rectangle([x - 14, base - 30, x - 10, base - 18], fill=(40, 140, 60))
    elif place == "city":
        img, d, h = _sky_ground(rng, (60, 60, 70), rng.int(100, 112), sky=(20, 25, 60))
        mx, my = rng.uniform(15, 113), rng.uniform(10, 25)
        d.ellipse([mx - 7, my - 7, mx + 7, my + 7], fill=(240, 240, 210))
        x = 0.0
        while x < SIZE:
            w, top = rng.uniform(14, 26), rng.uniform(35, 80)
            d.rectangle([x, top, x + w - 2, h], fill=(80, 80, 95))
            for wy in range(int(top) + 4, h - 4, 8):
                for wx in range(int(x) + 3, int(x + w) - 6, 6):
                    if rng.coin(0.6):
                        d.rectangle([wx, wy, wx + 2, wy + 3], fill=(250, 220, 90))
            x += w
    elif place == "mountain":
        img, d, h = _sky_ground(rng, GRASS, rng.int(90, 100))
        for _ in range(rng.int(2, 3)):
            x, top, w = rng.uniform(10, 118), rng.uniform(20, 45), rng.uniform(35, 55)
            d.polygon([(x, top), (x + w, h), (x - w, h)], fill=(120, 120, 135))
            f = 0.3
            d.polygon([(x, top), (x + w * f, top + (h - top) * f), (x - w * f, top + (h - top) * f)],
                      fill=WHITE)
    else:
        raise ValueError(f"unknown place {place!r}")
    return img


def landmark_picture(rng: Rng, name: str) -> Image.Image:
    """A landmark drawn on a sky and ground background."""
    img, d, h = _sky_ground(rng, GRASS, rng.int(96, 108))
    x = rng.uniform(44, 84)
    if name == "tower":
        top = rng.uniform(12, 22)
        d.polygon([(x - 3, top), (x + 3, top), (x + 22, h), (x - 22, h)], fill=(110, 90, 70))
        d.polygon([(x - 1, top + 12), (x + 1, top + 12), (x + 12, h), (x - 12, h)], fill=SKY)
        for frac in (0.35, 0.65):
            y = top + (h - top) * frac
            half = 3 + 19 * frac
            d.rectangle([x - half, y - 2, x + half, y + 2], fill=(110, 90, 70))
        d.line([(x, top), (x, top - 10)], fill=INK, width=1)
    elif name == "pyramid":
        w = rng.uniform(40, 55)
        d.polygon([(x, h - w * 1.1), (x + w, h), (x - w, h)], fill=(215, 180, 110))
        for k in range(1, 5):
            y = h - w * 1.1 * k / 5
            half = w * (1 - k / 5)
            d.line([(x - half, y), (x + half, y)], fill=(170, 135, 80))
    elif name == "bridge":
        d.rectangle([0, h - 4, SIZE, SIZE], fill=SEA)
        deck = rng.uniform(55, 70)
        d.rectangle([0, deck, SIZE, deck + 5], fill=(150, 60, 40))
        for cx in (SIZE * 0.25, SIZE * 0.75):
            d.arc([cx - 30, deck + 4, cx + 30, h + 40], 180, 360, fill=(150, 60, 40), width=4)
            d.rectangle([cx + 28, deck, cx + 34, h], fill=(150, 60, 40))
    elif name == "lighthouse":
        top = rng.uniform(20, 30)
        for k in range(6):
            y0 = top + (h - top) * k / 6
            y1 = top + (h - top) * (k + 1) / 6
            w0, w1 = 7 + 7 * k / 6, 7 + 7 * (k + 1) / 6
            d.polygon([(x - w0, y0), (x + w0, y0), (x + w1, y1), (x - w1, y1)],
                      fill=COLORS["red"] if k % 2 == 0 else WHITE)
        d.rectangle([x - 6, top - 10, x + 6, top], fill=(250, 230, 80), outline=INK)
        d.polygon([(x - 8, top - 10), (x + 8, top - 10), (x, top - 18)], fill=INK)
    elif name == "windmill":
        top = rng.uniform(40, 55)
        d.polygon([(x - 7, top), (x + 7, top), (x + 13, h), (x - 13, h)], fill=(200, 190, 170), outline=INK)
        a0 = rng.uniform(0, math.pi / 2)
        for k in range(4):
            a = a0 + k * math.pi / 2
            ex, ey = x + 30 * math.cos(a), top + 30 * math.sin(a)
            d.line([(x, top), (ex, ey)], fill=(90, 60, 40), width=4)
        d.ellipse([x - 3, top - 3, x + 3, top + 3], fill=INK)
    else:
        raise ValueError(f"unknown landmark {name!r}")
    return img


def painting(rng: Rng, style: str) -> Image.Image:
    """A framed painting with a pattern of the given style in two colours."""
    c1, c2 = (COLORS[c] for c in rng.sample(list(COLORS), 2))
    img, d = new_canvas((235, 230, 220))
    m = rng.int(10, 18)
    box = [m, m, SIZE - m, SIZE - m]
    d.rectangle([box[0] - 5, box[1] - 5, box[2] + 5, box[3] + 5], fill=(130, 90, 50))
    d.rectangle(box, fill=lighter(c1, 0.7))
    step = rng.int(8, 12)
    if style == "striped":
        for k in range(box[0], box[2], step):
            d.rectangle([k, box[1], k + step // 2, box[3]], fill=c2)
    elif style == "dotted":
        for y in range(box[1] + step // 2, box[3], step):
            for x in range(box[0] + step // 2, box[2], step):
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c2)
    elif style == "checkered":
        for i, y in enumerate(range(box[1], box[3], step)):
            for j, x in enumerate(range(box[0], box[2], step)):
                if (i + j) % 2 == 0:
                    d.rectangle([x, y, min(x + step, box[2]), min(y + step, box[3])], fill=c2)
    elif style == "wavy":
        for y0 in range(box[1] + 4, box[3], step):
            pts = [(x, y0 + 3 * math.sin(x / 5.0)) for x in range(box[0], box[2] + 1)]
            d.line(pts, fill=c2, width=2)
    else:
        raise ValueError(f"unknown style {style!r}")
    return img


def character_picture(rng: Rng, who: str) -> Image.Image:
    """A portrait of one of the world's characters; each has a look of their own."""
    img, d = new_canvas(lighter(COLORS[rng.pick(list(COLORS))], 0.7))
    x, y, r = rng.uniform(58, 70), rng.uniform(56, 66), rng.uniform(24, 29)
    shirt = COLORS[rng.pick(list(COLORS))]
    d.pieslice([x - 40, y + r - 4, x + 40, y + r + 70], 180, 360, fill=shirt)
    if who == "Carol":  # long black hair behind the face
        d.rectangle([x - r - 4, y - 6, x + r + 4, y + r + 14], fill=(30, 25, 25))
    d.ellipse([x - r, y - r, x + r, y + r], fill=(240, 200, 170), outline=INK)
    for ex in (x - r * 0.4, x + r * 0.4):
        d.ellipse([ex - 2, y - 5, ex + 2, y - 1], fill=INK)
    d.arc([x - 9, y + 2, x + 9, y + 14], 20, 160, fill=INK, width=2)
    if who == "Alice":  # red pointed hat, yellow hair
        d.chord([x - r, y - r, x + r, y + r], 180, 360, fill=(240, 210, 60))
        d.polygon([(x - r, y - r * 0.6), (x + r, y - r * 0.6), (x, y - r * 2.1)], fill=COLORS["red"])
    elif who == "Bob":  # round glasses, short brown hair
        d.chord([x - r, y - r, x + r, y + r * 0.2], 190, 350, fill=(110, 70, 40))
        for ex in (x - r * 0.4, x + r * 0.4):
            d.ellipse([ex - 7, y - 10, ex + 7, y + 4], outline=INK, width=2)
        d.line([(x - r * 0.4 + 7, y - 3), (x + r * 0.4 - 7, y - 3)], fill=INK, width=2)
    elif who == "Carol":  # red bow
        d.polygon([(x + r * 0.5, y - r), (x + r * 1.1, y - r * 1.3), (x + r * 1.1, y - r * 0.7)],
                  fill=COLORS["red"])
    elif who == "David":  # beard and blue cap
        d.chord([x - r, y - r * 0.1, x + r, y + r], 20, 160, fill=(90, 60, 35))
        d.chord([x - r, y - r * 1.1, x + r, y + r * 0.3], 180, 360, fill=COLORS["blue"])
        d.rectangle([x, y - r * 0.45, x + r * 1.3, y - r * 0.3], fill=darker(COLORS["blue"]))
    else:
        raise ValueError(f"unknown character {who!r}")
    return img


def poster(rng: Rng, title: str) -> Image.Image:
    """A film poster: a big title word over a coloured background with decorations."""
    bgc, fg = rng.sample(list(COLORS), 2)
    img, d = new_canvas(darker(COLORS[bgc], 0.5))
    d.rectangle([6, 6, SIZE - 7, SIZE - 7], outline=lighter(COLORS[fg], 0.3), width=2)
    for _ in range(rng.int(3, 6)):
        s = rng.pick(("star", "circle", "diamond"))
        draw_shape(img, s, rng.uniform(16, 112), rng.uniform(60, 112), rng.uniform(4, 9),
                   lighter(COLORS[rng.pick(list(COLORS))], 0.2), outline=None)
    scale = 3 if text_size(title, 3)[0] <= SIZE - 16 else 2
    draw_text_centered(img, (SIZE / 2, rng.uniform(28, 40)), title.upper(), lighter(COLORS[fg], 0.5), scale)
    return img


PICTURE_KINDS = {  # kind -> (painter, identities, question, yes/no claim, skill)
    "place": (place_picture, PLACES, "What kind of place is shown in the image?",
              "Is this a picture of a {}?", "scene"),
    "landmark": (landmark_picture, LANDMARKS, "Which landmark is shown in the image?",
                 "Is this a picture of a {}?",
                 "landmark"),
    "style": (painting, STYLES, "What is the style of this painting?", "Is this painting {}?", "artwork"),
    "character": (character_picture, CHARACTERS, "Who is the person in the picture?",
                  "Is the person in this picture {}?",
                  "celebrity"),
}


def picture_fact(rng: Rng, kind: str) -> Fact:
    """A fact of one kind: place, landmark, style, character (see ``PICTURE_KINDS``) or poster."""
    if kind == "poster":
        title = rng.pick(WORDS)
        return Fact(poster(rng, title), "What is the title of this film poster?", title,
                    [title, *rng.sample([w for w in WORDS if w != title], 3)],
                    "Is this a poster of the film {}?", "posters")
    paint, identities, question, claim, skill = PICTURE_KINDS[kind]
    who = rng.pick(identities)
    return Fact(paint(rng, who), question, who, list(identities), claim, skill)
