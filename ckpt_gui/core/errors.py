"""The few typed errors the core raises. ``str(error)`` is one line a user understands."""

from __future__ import annotations


def first_line(what: BaseException | str, limit: int = 160) -> str:
    """The first line of an error's message (or of a text), cut to ``limit`` characters; an
    exception with no message gives its type's name. Messages must stay one line for a user."""
    text = what if isinstance(what, str) else str(what)
    lines = text.strip().splitlines()
    line = lines[0] if lines else ("" if isinstance(what, str) else type(what).__name__)
    return line if len(line) <= limit else line[: limit - 1] + "…"


class CheckpointError(Exception):
    """Base class: anything that stops a checkpoint from being read or written."""


class NotFoundError(CheckpointError):
    """The path does not exist."""


class NotACheckpointError(CheckpointError):
    """The file is readable but is not a checkpoint (the message says what it looks like)."""


class CorruptError(CheckpointError):
    """The file is a checkpoint but truncated or damaged."""


class UnsupportedFormatError(CheckpointError):
    """The file is recognised, but ckpt-gui cannot read its contents."""


class UnsafeError(CheckpointError):
    """Loading the file would need to run code from it; it was refused."""


class NoDataError(CheckpointError):
    """The tensor has no data to read: uninitialised memory, a meta tensor. Not damage: its
    dtype and shape are real, there is just nothing to measure or write."""


class Cancelled(Exception):  # noqa: N818 - reads better at call sites than CancelledError
    """Raised inside long work when the caller asked it to stop."""
