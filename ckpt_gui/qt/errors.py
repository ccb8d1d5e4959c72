"""``error_text``: how the window words an exception, the same way in every panel and dialog."""

from __future__ import annotations

import traceback

from ckpt_gui.core.errors import CheckpointError, first_line


def error_text(exc: BaseException) -> tuple[str, str]:
    """(one line for the user, details on request) for an error raised by work on a worker.

    A ``CheckpointError`` already says what went wrong in words, so its first line is shown as
    is; anything else is a bug or an environment problem, named as unexpected, with the
    traceback as the details.
    """
    if isinstance(exc, CheckpointError):
        return first_line(exc, limit=1000), f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError):
        return "Not enough memory.", "MemoryError"
    line = first_line(f"Unexpected {type(exc).__name__}: {exc}", limit=1000)
    return line, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
