"""How numbers, sizes and values read on screen: "1.2 M", "4.8 MB", "0.0123"."""

from __future__ import annotations

from typing import Any

from ckpt_gui.core.units import float_text, human_bytes, human_count, shape_text


def format_count(n: int | float | None) -> str:
    """A count in short form, as the CLI writes it: 950, 12.3 K, 1.2 M, 7.0 B."""
    return "" if n is None else human_count(n)


def format_bytes(n: int | float | None) -> str:
    """A size with decimal units, as file managers show them: 512 B, 4.8 MB, 2.1 GB."""
    return "" if n is None else human_bytes(n)


def format_float(x: float | None, digits: int = 4) -> str:
    """A statistic with ``digits`` significant digits (``core.units.float_text``); blank when
    there is none."""
    return "" if x is None else float_text(x, digits)


def format_percent(fraction: float | None) -> str:
    """A fraction as a percentage; tiny but non-zero fractions do not round to "0 %"."""
    if fraction is None:
        return ""
    pct = fraction * 100
    if pct == 0:
        return "0 %"
    if pct < 0.01:
        return "<0.01 %"
    if pct >= 100:
        return "100 %"
    if pct < 10:
        return f"{pct:.2f} %"
    return f"{pct:.1f} %"


def format_shape(shape: tuple[int, ...] | list[int] | None) -> str:
    """A shape as users write it: ``[768, 3072]``; a scalar is ``[]``."""
    return "" if shape is None else shape_text(shape)


def format_value(value: Any, limit: int = 120) -> str:
    """A non-tensor value on one line, shortened to ``limit`` characters."""
    if isinstance(value, float):
        text = format_float(value, digits=6)
    elif isinstance(value, str):
        text = repr(value)
    else:
        text = repr(value)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


ROLE_TITLES = {
    "parameter": "Model",
    "buffer": "Buffers",
    "optimizer_state": "Optimizer state",
    "other": "Other",
}


def role_title(role: str) -> str:
    """The summary-bar name of a tensor role."""
    return ROLE_TITLES.get(role, role.replace("_", " ").capitalize())


ROLE_SHORT = {
    "parameter": "param",
    "buffer": "buffer",
    "optimizer_state": "optim",
    "other": "",
}
