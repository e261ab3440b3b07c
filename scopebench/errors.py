"""User-facing errors: one clear line naming the file or field and the fix."""


class ScopebenchError(Exception):
    """An error caused by user input. The CLI prints `str(err)` on one line and exits with code 2."""
