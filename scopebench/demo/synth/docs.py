"""Bar and line charts with small value labels, and document pages with typed fields."""

from __future__ import annotations

from dataclasses import dataclass

from scopebench.demo.synth.core import CITIES, MONTHS, NAMES, Fact, Rng, near_numbers
from scopebench.demo.synth.draw import (
    COLORS,
    INK,
    SIZE,
    WHITE,
    darker,
    draw_text,
    draw_text_centered,
    new_canvas,
)

DOC_TITLES = ("invoice", "receipt", "order", "form")
CHART_TITLES = ("sales", "rain", "visits", "sold")
ITEMS = ("milk", "book", "lamp", "fish", "pizza", "bread", "tea", "soap")


@dataclass
class Chart:
    kind: str
    title: str
    labels: list[str]
    values: list[int]


def sample_chart(rng: Rng, max_value: int = 60) -> Chart:
    """3-5 consecutive months with distinct integer values (a unique highest and lowest)."""
    n = rng.int(3, 5)
    start = rng.int(0, len(MONTHS) - n)
    values = rng.sample(range(3, max_value + 1), n)
    return Chart(rng.pick(("bar", "line")), rng.pick(CHART_TITLES), list(MONTHS[start:start + n]), values)


def render_chart(rng: Rng, chart: Chart):
    """The chart as an image: axes, month labels below, each value printed next to its bar or point."""
    img, d = new_canvas(WHITE)
    draw_text_centered(img, (SIZE / 2, 8), chart.title.upper(), INK)
    x0, x1, base, top = 8, SIZE - 6, SIZE - 16, 30
    d.line([(x0, top - 6), (x0, base), (x1, base)], fill=INK)
    n = len(chart.values)
    slot = (x1 - x0) / n
    scale = (base - top) / max(chart.values)
    color = COLORS[rng.pick(list(COLORS))]
    points = []
    for i, (lab, v) in enumerate(zip(chart.labels, chart.values, strict=True)):
        cx = x0 + slot * (i + 0.5)
        y = base - v * scale
        draw_text_centered(img, (cx, base + 7), lab)
        if chart.kind == "bar":
            w = min(slot * 0.6, 16)
            d.rectangle([cx - w / 2, y, cx + w / 2, base - 1], fill=color)
        points.append((cx, y))
        draw_text_centered(img, (cx, y - 7), str(v), darker(color, 0.5))
    if chart.kind == "line":
        d.line(points, fill=color, width=2)
        for cx, y in points:
            d.ellipse([cx - 2, y - 2, cx + 2, y + 2], fill=INK)
    return img


def chart_fact(rng: Rng, kind: str) -> Fact:
    """A chart question: value, highest, lowest, difference, sum or count_above."""
    chart = sample_chart(rng, 45 if kind == "sum" else 60)
    img = render_chart(rng, chart)
    labels, values = chart.labels, chart.values
    if kind == "value":
        i = rng.int(0, len(labels) - 1)
        return Fact(img, f"What is the value of {labels[i]}?", str(values[i]),
                    near_numbers(rng, values[i], 4, lo=1),
                    f"Is the value of {labels[i]} {{}}?", "chart")
    if kind in ("highest", "lowest"):
        best = values.index(max(values) if kind == "highest" else min(values))
        return Fact(img, f"Which month has the {kind} value?", labels[best], list(labels),
                    f"Is {{}} the month with the {kind} value?", "chart")
    a, b = rng.sample(range(len(labels)), 2)
    if kind == "difference":
        ans = abs(values[a] - values[b])
        return Fact(img, f"What is the difference between the values of {labels[a]} and {labels[b]}?",
                    str(ans), near_numbers(rng, ans, 4),
                    f"Is the difference between {labels[a]} and {labels[b]} {{}}?", "chart")
    if kind == "sum":
        ans = values[a] + values[b]
        return Fact(img, f"What is the sum of the values of {labels[a]} and {labels[b]}?", str(ans),
                    near_numbers(rng, ans, 4), f"Is the sum of {labels[a]} and {labels[b]} {{}}?", "chart")
    if kind == "count_above":
        t = rng.pick(sorted(values)[:-1]) + 1
        ans = sum(v > t for v in values)
        return Fact(img, f"How many months have a value greater than {t}?", str(ans),
                    near_numbers(rng, ans, 4, lo=0, hi=6), f"Do {{}} months have a value greater than {t}?",
                    "chart")
    raise ValueError(f"unknown chart fact kind {kind!r}")


@dataclass
class Document:
    title: str
    fields: dict[str, str]


def sample_document(rng: Rng, with_total: bool = True) -> Document:
    qty, price = rng.int(2, 9), rng.int(2, 11)
    fields = {"Name": rng.pick(NAMES), "Date": f"{rng.int(1, 28)} {rng.pick(MONTHS)}",
              "City": rng.pick(CITIES),
              "Item": rng.pick(ITEMS), "Qty": str(qty), "Price": str(price), "Total": str(qty * price)}
    keep = ["Item", "Qty", "Price"] + rng.sample(["Name", "Date", "City"], rng.int(1, 3))
    if with_total:
        keep.append("Total")
    order = [k for k in fields if k in keep]
    return Document(rng.pick(DOC_TITLES), {k: fields[k] for k in order})


def render_document(rng: Rng, doc: Document):
    """A page with a title, one 'Field: value' line per field and a rule under the title."""
    img, d = new_canvas((205, 200, 190))
    x0, y0 = rng.int(4, 10), rng.int(3, 8)
    d.rectangle([x0, y0, SIZE - x0 + rng.int(-3, 3), SIZE - 2], fill=WHITE, outline=(160, 160, 160))
    draw_text(img, (x0 + 5, y0 + 4), doc.title.upper(), INK)
    d.line([(x0 + 5, y0 + 17), (SIZE - x0 - 5, y0 + 17)], fill=INK)
    y = y0 + 22
    gap = (SIZE - y - 8) / len(doc.fields)
    for k, v in doc.fields.items():
        draw_text(img, (x0 + 5, y), f"{k}: {v}", INK)
        y += min(gap, 16)
    return img


FIELD_QUESTIONS = {  # field -> (question, yes/no claim)
    "Name": ("What is the name on the {doc}?", "Is the name on the {doc} {{}}?"),
    "Date": ("What is the date on the {doc}?", "Is the date on the {doc} {{}}?"),
    "City": ("Which city is written on the {doc}?", "Is {{}} the city written on the {doc}?"),
    "Item": ("Which item is listed on the {doc}?", "Is {{}} the item listed on the {doc}?"),
    "Qty": ("What is the quantity on the {doc}?", "Is the quantity on the {doc} {{}}?"),
    "Price": ("What is the price on the {doc}?", "Is the price on the {doc} {{}}?"),
    "Total": ("What is the total on the {doc}?", "Is the total on the {doc} {{}}?"),
}


def document_fact(rng: Rng, kind: str = "field") -> Fact:
    """Read one field of a document ('field'), or multiply quantity by price when no total is shown."""
    doc = sample_document(rng, with_total=kind != "product")
    img = render_document(rng, doc)
    if kind == "product":
        ans = int(doc.fields["Qty"]) * int(doc.fields["Price"])
        return Fact(img, f"What is the total cost of the {doc.fields['Item']} on this {doc.title}?", str(ans),
                    near_numbers(rng, ans, 4, lo=1), "Is the total cost {}?", "arithmetic")
    key = rng.pick(list(doc.fields))
    value = doc.fields[key]
    pools = {"Name": NAMES, "City": CITIES, "Item": ITEMS}
    if key in pools:
        options = [value, *rng.sample([p for p in pools[key] if p != value], 3)]
    elif key == "Date":
        day, month = value.split()
        options = [value, *(f"{int(day) + k} {month}" for k in (1, 2, 3))]
    else:
        options = near_numbers(rng, int(value), 4, lo=1)
    question, claim = (t.format(doc=doc.title) for t in FIELD_QUESTIONS[key])
    return Fact(img, question, value, options, claim, "document",
                {"ocr_tokens": [f"{k}: {v}" for k, v in doc.fields.items()]})
