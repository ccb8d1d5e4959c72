"""Human-readable numbers, shared by the CLI and the window."""

from __future__ import annotations


def human_bytes(n: int | float) -> str:
    """``1536`` -> ``"1.5 KB"`` (decimal units, like file managers)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_count(n: int | float) -> str:
    """``1234567`` -> ``"1.2 M"``; small counts stay exact."""
    value = float(n)
    if abs(value) < 1000:
        return str(int(value))
    for unit in ("K", "M", "B", "T"):
        value /= 1000
        if abs(value) < 1000 or unit == "T":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
