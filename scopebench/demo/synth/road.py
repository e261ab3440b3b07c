"""Road scenes in perspective (RealWorldQA-style): cars in two lanes, a traffic light, depth by distance."""

from __future__ import annotations

from scopebench.demo.synth.core import Fact, Rng, near_numbers
from scopebench.demo.synth.depth import FOCAL, Z_FAR, Z_NEAR, Camera
from scopebench.demo.synth.draw import COLORS, INK, SIZE, SKY, darker, lighter, new_canvas

LIGHTS = ("red", "yellow", "green")
CAR_COLORS = ("red", "blue", "yellow", "green", "purple", "orange")
LANE_X = {"left": -0.9, "right": 0.9}


def _scene(rng: Rng, cars: list[tuple[str, str, float]], light: str | None):
    """cars: (colour, lane, Z). The light, if any, stands on one verge."""
    cam = Camera(rng.uniform(42, 52))
    img, d = new_canvas(lighter(SKY, rng.uniform(0, 0.5)))
    d.rectangle([0, cam.horizon, SIZE, SIZE], fill=darker((120, 175, 95), rng.uniform(0, 0.25)))
    edge = 2.2
    road = [(cam.screen_x(-edge, Z_NEAR * 0.7), SIZE), (cam.screen_x(edge, Z_NEAR * 0.7), SIZE),
            (SIZE / 2 + 1, cam.horizon), (SIZE / 2 - 1, cam.horizon)]
    d.polygon(road, fill=(95, 95, 100))
    Z = Z_NEAR * 0.8
    while Z < 30:
        d.line([(SIZE / 2, cam.base_y(Z)), (SIZE / 2, cam.base_y(Z * 1.25))], fill=(240, 240, 240),
               width=max(1, int(4 / Z)))
        Z *= 1.6
    if light:
        lz = rng.uniform(3.5, 5.0)
        lx = cam.screen_x(2.5 if rng.coin() else -2.5, lz)
        base = cam.base_y(lz)
        h = FOCAL * 2.4 / lz
        d.line([(lx, base), (lx, base - h)], fill=INK, width=2)
        w = FOCAL * 0.35 / lz
        d.rectangle([lx - w, base - h - 3 * w * 1.6, lx + w, base - h], fill=(40, 40, 40))
        for k, c in enumerate(LIGHTS):
            cy = base - h - w * 1.6 * (2.5 - k)
            d.ellipse([lx - w * 0.7, cy - w * 0.7, lx + w * 0.7, cy + w * 0.7],
                      fill=COLORS[c] if c == light else (70, 70, 70))
    for color, lane, Z in sorted(cars, key=lambda c: -c[2]):
        s = FOCAL * 1.6 / Z
        x, y = cam.screen_x(LANE_X[lane], Z), cam.base_y(Z)
        body = COLORS[color]
        d.rectangle([x - s / 2, y - s * 0.55, x + s / 2, y - s * 0.12], fill=body, outline=INK)
        d.rectangle([x - s * 0.35, y - s * 0.85, x + s * 0.35, y - s * 0.55], fill=darker(body, 0.2),
                    outline=INK)
        d.rectangle([x - s * 0.28, y - s * 0.8, x + s * 0.28, y - s * 0.6], fill=(170, 200, 230))
        for wx in (x - s * 0.4, x + s * 0.28):
            d.rectangle([wx, y - s * 0.14, wx + s * 0.12, y], fill=INK)
    return img


def _cars(rng: Rng, n: int) -> list[tuple[str, str, float]]:
    """n cars of different colours, spaced along their lanes so none hides another."""
    while True:
        cars = [(c, rng.pick(list(LANE_X)), rng.uniform(Z_NEAR, Z_FAR * 1.4))
                for c in rng.sample(CAR_COLORS, n)]
        if all(abs(a[2] - b[2]) > 1.2 * min(a[2], b[2]) * 0.5
               for i, a in enumerate(cars) for b in cars[i + 1:]
               if a[1] == b[1]):
            return cars


def road_fact(rng: Rng, kind: str) -> Fact:
    """count (cars), light (colour shown), closer (of two cars) or lane (of one car)."""
    light = rng.pick(LIGHTS)
    if kind == "count":
        cars = _cars(rng, rng.int(1, 4))
        n = len(cars)
        return Fact(_scene(rng, cars, light if rng.coin() else None), "How many cars are on the road?",
                    str(n),
                    near_numbers(rng, n, 4, lo=0, hi=6), "Are there {} cars on the road?", "count")
    if kind == "light":
        cars = _cars(rng, rng.int(1, 3))
        return Fact(_scene(rng, cars, light), "What color is the traffic light showing?", light, list(LIGHTS),
                    "Is the traffic light showing {}?", "state")
    if kind == "closer":
        while True:
            cars = _cars(rng, rng.int(2, 3))
            a, b = rng.sample(cars, 2)
            if abs(a[2] - b[2]) >= 1.5:
                break
        near = a if a[2] < b[2] else b
        return Fact(_scene(rng, cars, light if rng.coin() else None),
                    f"Which car is closer to the camera, the {a[0]} car or the {b[0]} car?", f"{near[0]} car",
                    [f"{a[0]} car", f"{b[0]} car"], "Is the {} closer to the camera?", "depth")
    if kind == "lane":
        cars = _cars(rng, rng.int(1, 3))
        car = rng.pick(cars)
        return Fact(_scene(rng, cars, light if rng.coin() else None),
                    f"Is the {car[0]} car in the left lane or the right lane?", car[1], ["left", "right"],
                    f"Is the {car[0]} car in the {{}} lane?", "position")
    raise ValueError(f"unknown road fact kind {kind!r}")
