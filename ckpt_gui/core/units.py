"""Human-readable numbers, shared by the CLI and the window."""

from __future__ import annotations

import math


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
    """A shape as users write it: ``[768, 3072]``; a scalar is ``[]``."""
    return "[" + ", ".join(map(str, shape)) + "]"


def float_text(x: float, digits: int = 4) -> str:
    """The one rule for a statistic on screen and in the CLI's tables: ``digits`` significant
    digits, trailing zeros dropped (``1235``, ``0.5``, ``12346``), scientific notation below 1e-3
    and from 1e5 (``-3.410e-04``, ``2.500e+07``) as the value reads once rounded; a
    Python int (an integer tensor's extremes, a count) stays exact."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    sci = f"{x:.{max(digits - 1, 1)}e}"
    rounded = abs(float(sci))  # 99999.9 rounds to 1.000e+05: decided on what is shown
    if not 1e-3 <= rounded < 1e5:
        return sci
    decimals = max(digits - 1 - math.floor(math.log10(rounded)), 0)
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
