"""User-facing errors: one clear line naming the file or field and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ScopebenchError(Exception):
    """An error caused by user input. The CLI prints `str(err)` on one line and exits with code 2."""


def suggest(name: str, known: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean 'PREFIXx'?)`` for the closest of ``known`` to ``name``, or "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""
