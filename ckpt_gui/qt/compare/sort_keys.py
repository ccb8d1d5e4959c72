"""Sort keys for rows sorted in one Python sort (the compare table's): ascending keys for
either order, rows without a value last in both."""

from __future__ import annotations

import functools
from typing import Any

_LAST = (1,)  # the sort key of a row without a value, last in either order


@functools.total_ordering
class _Reversed:
    """A value that sorts the other way round (descending text in an ascending key)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    __hash__ = None  # type: ignore[assignment]


def sort_key(value: Any, *, descending: bool) -> tuple[Any, ...]:
    """The ascending key of ``value`` (``None``: no value, last either way)."""
    if value is None:
        return _LAST
    if not descending:
        return (0, value)
    if isinstance(value, (int, float)):
        return (0, -value)
    return (0, _Reversed(value))
