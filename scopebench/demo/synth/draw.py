"""Drawing primitives of the synthetic visual world: 128x128 RGB canvases, textured shapes, bitmap text.

Text uses Pillow's built-in bitmap font (``ImageFont.load_default_imagefont``: monospace, 6x11 pixels a
character), scaled by whole factors with nearest-neighbour resampling, so rendering is identical on
every machine and small text really needs a high-resolution view to be read.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

SIZE = 128
CHAR_W, CHAR_H = 6, 11

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (36, 150, 60),
    "blue": (40, 85, 215),
    "yellow": (235, 195, 25),
    "purple": (135, 55, 175),
    "orange": (245, 125, 25),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
PATTERNS = ("solid", "striped", "dotted")
INK = (25, 25, 25)
PAPER = (250, 250, 246)
WHITE = (255, 255, 255)
GRAY = (150, 150, 150)
SKY = (170, 210, 240)


def new_canvas(color: tuple[int, int, int] = PAPER) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A blank 128x128 RGB image and a drawing context on it."""
    img = Image.new("RGB", (SIZE, SIZE), color)
    return img, ImageDraw.Draw(img)


def png_bytes(img: Image.Image) -> bytes:
    """Deterministic PNG encoding (no metadata chunks, fixed compression)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def lighter(color: tuple[int, int, int], amount: float = 0.55) -> tuple[int, int, int]:
    return tuple(int(c + (255 - c) * amount) for c in color)


def darker(color: tuple[int, int, int], amount: float = 0.45) -> tuple[int, int, int]:
    return tuple(int(c * (1 - amount)) for c in color)


def shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon of a shape of 'radius' r centred on (cx, cy) (circles are drawn as ellipses instead)."""
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            ang = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
        return pts
    raise ValueError(f"unknown shape {shape!r}")


def _texture(color: tuple[int, int, int], pattern: str) -> Image.Image:
    layer = Image.new("RGB", (SIZE, SIZE), color)
    if pattern == "solid":
        return layer
    d = ImageDraw.Draw(layer)
    light = lighter(color, 0.75)
    if pattern == "striped":
        for k in range(-SIZE, SIZE, 6):
            d.line([(k, 0), (k + SIZE, SIZE)], fill=light, width=2)
    elif pattern == "dotted":
        for y in range(1, SIZE, 5):
            for x in range(1 + (y // 5 % 2) * 2, SIZE, 5):
                d.rectangle([x, y, x + 1, y + 1], fill=light)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return layer


def draw_shape(img: Image.Image, shape: str, cx: float, cy: float, r: float, color: tuple[int, int, int],
               pattern: str = "solid", outline: tuple[int, int, int] | None = INK) -> None:
    """Draw a filled, textured shape with an outline."""
    mask = Image.new("L", img.size, 0)
    md = ImageDraw.Draw(mask)
    d = ImageDraw.Draw(img)
    if shape == "circle":
        box = [cx - r, cy - r, cx + r, cy + r]
        md.ellipse(box, fill=255)
        img.paste(_texture(color, pattern), (0, 0), mask)
        if outline:
            d.ellipse(box, outline=outline)
    else:
        pts = shape_points(shape, cx, cy, r)
        md.polygon(pts, fill=255)
        img.paste(_texture(color, pattern), (0, 0), mask)
        if outline:
            d.polygon(pts, outline=outline)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """Width and height in pixels of ``text`` in the bitmap font at an integer scale."""
    return CHAR_W * len(text) * scale, CHAR_H * scale


def draw_text(img: Image.Image, xy: tuple[float, float], text: str, color: tuple[int, int, int] = INK,
              scale: int = 1, angle: float = 0.0) -> None:
    """Draw ``text`` with its top-left corner at ``xy`` (optionally rotated about its centre)."""
    w, h = text_size(text)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text((0, 0), text, font=_font(), fill=255)
    if scale > 1:
        mask = mask.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    if angle:
        mask = mask.rotate(angle, resample=Image.Resampling.NEAREST, expand=True)
    img.paste(Image.new("RGB", mask.size, color), (int(round(xy[0])), int(round(xy[1]))), mask)


def draw_text_centered(img: Image.Image, center: tuple[float, float], text: str,
                       color: tuple[int, int, int] = INK, scale: int = 1) -> None:
    w, h = text_size(text, scale)
    draw_text(img, (center[0] - w / 2, center[1] - h / 2), text, color, scale)


def draw_arrow(d: ImageDraw.ImageDraw, p0: tuple[float, float], p1: tuple[float, float],
               color: tuple[int, int, int] = INK, width: int = 1, head: float = 5.0) -> None:
    """A straight arrow from p0 to p1 with a filled head at p1."""
    d.line([p0, p1], fill=color, width=width)
    ang = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
    left = (p1[0] - head * math.cos(ang - 0.45), p1[1] - head * math.sin(ang - 0.45))
    right = (p1[0] - head * math.cos(ang + 0.45), p1[1] - head * math.sin(ang + 0.45))
    d.polygon([p1, left, right], fill=color)
