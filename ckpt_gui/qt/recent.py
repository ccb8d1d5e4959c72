"""Recently opened files, kept in ``QSettings``."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from ckpt_gui.core.remote.location import is_remote

MAX_RECENT = 10
KEY = "recent_files"


def settings() -> QSettings:
    return QSettings("ckpt-gui", "ckpt-gui")


def recent_files() -> list[str]:
    value = settings().value(KEY, [])
    if isinstance(value, str):  # QSettings returns a lone string for a one-item list
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []  # nothing stored (None), or not a list


def remember(path: str | Path) -> list[str]:
    """Put ``path`` first in the list and return the list (a URL as it is shown: without
    credentials, which come from the environment)."""
    text = str(path) if is_remote(str(path)) else str(Path(path).resolve())
    items = [text] + [p for p in recent_files() if p != text]
    items = items[:MAX_RECENT]
    settings().setValue(KEY, items)
    return items


def forget_all() -> None:
    settings().setValue(KEY, [])
