"""Rendered words and digits: signs in scenes, shop fronts, buses, plain and styled word crops.

The text is small (the 6x11 bitmap font, sometimes doubled), so reading it needs a high-resolution view.
"""

from __future__ import annotations

from scopebench.demo.synth.core import WORDS, Fact, Rng, near_numbers
from scopebench.demo.synth.draw import (
    COLORS,
    INK,
    SIZE,
    SKY,
    WHITE,
    darker,
    draw_text,
    draw_text_centered,
    lighter,
    new_canvas,
    text_size,
)

GROUND = ((110, 110, 115), (95, 160, 80), (200, 190, 170))


def _other_words(rng: Rng, word: str, k: int = 3) -> list[str]:
    return rng.sample([w for w in WORDS if w != word], k)


def signs_fact(rng: Rng) -> Fact:
    """One to three coloured signs on posts, each with a word; asks for the word on one of them."""
    img, d = new_canvas(SKY)
    h = rng.int(84, 100)
    d.rectangle([0, h, SIZE, SIZE], fill=rng.pick(GROUND))
    n = rng.int(1, 3)
    colors = rng.sample(list(COLORS), n)
    words = rng.sample(WORDS, n)
    slot = SIZE / n
    for i, (c, w) in enumerate(zip(colors, words, strict=True)):
        tw, th = text_size(w.upper())
        cx = slot * (i + 0.5) + rng.uniform(-slot * 0.1, slot * 0.1)
        cy = rng.uniform(24, h - 24)
        box = [cx - tw / 2 - 4, cy - th / 2 - 3, cx + tw / 2 + 4, cy + th / 2 + 3]
        d.rectangle([cx - 1, box[3], cx + 1, h + 8], fill=(90, 90, 90))
        d.rectangle(box, fill=COLORS[c], outline=INK)
        draw_text_centered(img, (cx, cy), w.upper(),
                           WHITE if c in ("red", "blue", "purple", "green") else INK)
    k = rng.int(0, n - 1)
    where = "the sign" if n == 1 else f"the {colors[k]} sign"
    return Fact(img, f"What word is written on {where}?", words[k], [words[k], *_other_words(rng, words[k])],
                f"Is the word on {where} {{}}?", "ocr", {"ocr_tokens": [w.upper() for w in words]})


def shop_fact(rng: Rng) -> Fact:
    """A shop front with its name above the door."""
    wall = lighter(COLORS[rng.pick(list(COLORS))], 0.6)
    img, d = new_canvas(SKY)
    top = rng.int(20, 40)
    d.rectangle([8, top, SIZE - 8, SIZE - 10], fill=wall, outline=INK)
    d.rectangle([0, SIZE - 10, SIZE, SIZE], fill=GROUND[0])
    name = rng.pick(WORDS)
    board = darker(COLORS[rng.pick(list(COLORS))], 0.3)
    d.rectangle([20, top + 6, SIZE - 20, top + 22], fill=board)
    draw_text_centered(img, (SIZE / 2, top + 14), name.upper(), WHITE)
    dx = rng.uniform(30, 70)
    d.rectangle([dx, SIZE - 45, dx + 20, SIZE - 10], fill=(120, 80, 40), outline=INK)
    d.rectangle([dx + 30, SIZE - 45, dx + 55, SIZE - 25], fill=(200, 230, 250), outline=INK)
    return Fact(img, "What is the name of the shop?", name, [name, *_other_words(rng, name)],
                "Is the name of the shop {}?", "ocr", {"ocr_tokens": [name.upper()]})


def bus_fact(rng: Rng) -> Fact:
    """A bus with its route number on the front panel."""
    img, d = new_canvas(SKY)
    d.rectangle([0, 96, SIZE, SIZE], fill=GROUND[0])
    x0, y0 = rng.uniform(6, 30), rng.uniform(40, 55)
    body = COLORS[rng.pick(("red", "yellow", "blue", "green", "orange"))]
    d.rounded_rectangle([x0, y0, x0 + 92, y0 + 48], radius=6, fill=body, outline=INK)
    for k in range(4):
        wx = x0 + 6 + k * 17
        d.rectangle([wx, y0 + 6, wx + 13, y0 + 20], fill=(200, 230, 250), outline=INK)
    number = rng.int(1, 99)
    d.rectangle([x0 + 72, y0 + 6, x0 + 88, y0 + 20], fill=INK)
    draw_text_centered(img, (x0 + 80, y0 + 13), str(number), (250, 200, 60))
    for wx in (x0 + 18, x0 + 72):
        d.ellipse([wx - 8, y0 + 40, wx + 8, y0 + 56], fill=INK)
    return Fact(img, "What number is on the bus?", str(number), near_numbers(rng, number, 4, lo=1),
                "Is the number on the bus {}?", "ocr", {"ocr_tokens": [str(number)]})


def word_crop(rng: Rng, text: str, style: str) -> Fact:
    """A word or number alone on a background: regular, irregular (rotated) or artistic (big, shadowed)."""
    bg = lighter(COLORS[rng.pick(list(COLORS))], rng.uniform(0.75, 0.95))
    img, _ = new_canvas(bg)
    shown = text.upper()
    if style == "regular":
        scale = rng.pick((1, 2))
        tw, th = text_size(shown, scale)
        draw_text(img, (rng.uniform(4, SIZE - tw - 4), rng.uniform(4, SIZE - th - 4)), shown, INK, scale)
    elif style == "irregular":
        tw, th = text_size(shown, 2)
        ang = rng.uniform(15, 35) * (1 if rng.coin() else -1)
        xy = (SIZE / 2 - tw / 2 - 8 + rng.uniform(-10, 10), SIZE / 2 - th / 2 - 14 + rng.uniform(-10, 10))
        draw_text(img, xy, shown, darker(COLORS[rng.pick(list(COLORS))]), 2, angle=ang)
    elif style == "artistic":
        fg, shadow = (COLORS[c] for c in rng.sample(list(COLORS), 2))
        tw, th = text_size(shown, 2)
        x, y = rng.uniform(4, SIZE - tw - 8), rng.uniform(4, SIZE - th - 8)
        draw_text(img, (x + 3, y + 3), shown, shadow, 2)
        draw_text(img, (x, y), shown, fg, 2)
    else:
        raise ValueError(f"unknown text style {style!r}")
    question = "what is the number in the image?" if text.isdigit() else "what is written in the image?"
    return Fact(img, question, text, [text], "Is the text in the image {}?", "ocr")
