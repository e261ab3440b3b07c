"""Rich tables that fit the terminal (or ``COLUMNS`` when piped) without cutting a name.

A table is printed whole when it fits. When it does not, the model names in its headers become short
labels (``m1``, ``m2``, ...) with a legend; when it still does not fit, its columns are split over several
tables, each repeating the key columns (the model, path or benchmark a row is about). A cell is never
wrapped or cut: only headers wrap, at spaces.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 120  # columns for a pipe or file when COLUMNS is unset (a CI log)


def console(stderr: bool = False, file=None, **kwargs) -> Console:
    """A console as wide as ``COLUMNS`` when set, else the terminal, else PIPE_WIDTH columns."""
    out = Console(stderr=stderr, file=file, **kwargs)
    if not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        out = Console(stderr=stderr, file=file, width=PIPE_WIDTH, **kwargs)
    return out


@dataclass(frozen=True)
class Col:
    header: str
    justify: str = "right"
    key: bool = False  # names what the row is about: repeated in every part of a split table
    wrap: bool = False  # a list (e.g. "a, b, c"): its cells may wrap at spaces; other cells never wrap


def _longest_word(texts: list[str]) -> int:
    return max([len(w) for t in texts for w in t.split()] + [1])


def _header(text: str, width: int) -> str:
    """The header wrapped at spaces to ``width`` (or its longest word)."""
    return "\n".join(textwrap.wrap(text, max(width, _longest_word([text])), break_long_words=False,
                                   break_on_hyphens=False)) or text


def _build(title: str, cols: Sequence[Col], rows: list[list[str]], caption: str, styles: list[str | None],
           sections: set[int], narrow: bool = True) -> Table:
    """The rich table; ``narrow``: headers wrapped to their cells' width."""
    table = Table(title=title, caption=caption or None, title_style="bold", caption_justify="left")
    for j, col in enumerate(cols):
        cells = [row[j] for row in rows]
        if col.wrap:
            table.add_column(col.header, justify=col.justify, min_width=_longest_word(cells + [col.header]))
            continue
        header = _header(col.header, max([len(c) for c in cells] + [1])) if narrow else col.header
        table.add_column(header, justify=col.justify, no_wrap=True,
                         min_width=max(len(line) for line in [*header.splitlines(), *cells]))
    for i, row in enumerate(rows):
        table.add_row(*(Text(c, no_wrap=not col.wrap) for c, col in zip(row, cols, strict=True)),
                      style=styles[i], end_section=i in sections)
    return table


def _fits(out: Console, table: Table) -> bool:
    """Whether ``table`` fits ``out`` with every cell whole (lists wrapped at spaces at most)."""
    return Measurement.get(out, out.options.update_width(10_000), table).minimum <= out.width


def _labelled(cols: Sequence[Col], names: Sequence[str]) -> tuple[list[Col], dict[str, str]]:
    """``cols`` with every model name in a header replaced by a short label; the labels used."""
    labels = {n: f"m{i + 1}" for i, n in enumerate(dict.fromkeys(names))}
    pattern = re.compile("|".join(map(re.escape, sorted(labels, key=len, reverse=True))))
    used: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        used[m.group(0)] = labels[m.group(0)]
        return labels[m.group(0)]

    return [Col(pattern.sub(sub, c.header), c.justify, c.key, c.wrap) for c in cols], used


def _parts(out: Console, cols: Sequence[Col], fit) -> list[list[int]]:
    """Column indices of each part: the key columns, then as many others as fit."""
    keys = [j for j, c in enumerate(cols) if c.key]
    parts: list[list[int]] = []
    for j in (j for j, c in enumerate(cols) if not c.key):
        if parts and fit(sorted(keys + parts[-1] + [j])):
            parts[-1].append(j)
        else:
            parts.append([j])
    return [sorted(keys + p) for p in parts] or [keys]


def print_table(out: Console, title: str, cols: Sequence[Col], rows: list[list[str]], caption: str = "",
                styles: list[str | None] | None = None, sections: set[int] | None = None,
                names: Sequence[str] = ()) -> None:
    """Print one table that fits ``out``: whole, with labels for ``names`` in its headers, or split."""
    styles = styles or [None] * len(rows)
    sections = sections or set()
    for narrow in (False, True):  # headers on one line when that fits
        table = _build(title, cols, rows, caption, styles, sections, narrow)
        if _fits(out, table):
            out.print(table)
            return
    used: dict[str, str] = {}
    if names:
        cols, used = _labelled(cols, names)
        table = _build(title, cols, rows, caption, styles, sections)

    def sub(idx: list[int], part_title: str, part_caption: str) -> Table:
        return _build(part_title, [cols[j] for j in idx], [[r[j] for j in idx] for r in rows], part_caption,
                      styles, sections)

    if _fits(out, table):
        out.print(table)
    else:
        parts = _parts(out, cols, lambda idx: _fits(out, sub(idx, title, "")))
        for k, idx in enumerate(parts, start=1):
            last = k == len(parts)
            out.print(sub(idx, f"{title} ({k}/{len(parts)})", caption if last else ""))
    if used:
        out.print("   ".join(f"{label}={name}" for name, label in used.items()), highlight=False)
