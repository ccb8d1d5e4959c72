"""What each cell of the compare table shows: the columns, their titles and tooltips, the text
of a cell, the change a row is sorted by, and the texts that decide the columns' widths
(``WidthSample``, gathered as rows arrive): plain functions of a ``DiffEntry``, which the
model (``table_model.py``), the view's column fitting and the row menu share."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

from PySide6.QtCore import Qt

from ckpt_gui.core.diff import CATEGORY_TITLES, CHANGED, DTYPE, DiffEntry
from ckpt_gui.qt.formatting import format_count, format_float, format_shape, format_value
from ckpt_gui.qt.header import MEASURED

KEY, STATUS, SIDE_A, SIDE_B, MAX_ABS, MEAN_ABS, REL, COSINE = range(8)
HEADERS = ("Key", "Status", "A", "B", "max |A−B|", "mean |A−B|", "‖A−B‖/‖A‖", "cosine")
TOOLTIPS = {
    SIDE_A: "A's dtype and shape (or value)",
    SIDE_B: "B's dtype and shape (or value)",
    MAX_ABS: "Largest absolute difference over the positions where both are finite",
    MEAN_ABS: "Mean absolute difference over the positions where both are finite",
    REL: "Relative change: L2 norm of A−B over the L2 norm of A",
    COSINE: "Cosine similarity of A and B as vectors",
}
# Keys may elide (the tooltip has them in full); the other columns are fitted, never elided.
ELIDE = {KEY: Qt.TextElideMode.ElideLeft}
KEY_WIDTH = (120, 420)
# The widest text of each figure column: 4 significant digits (6 for the cosine).
BOUNDED = {
    MAX_ABS: "-8.888e+88",
    MEAN_ABS: "-8.888e+88",
    REL: "-8.888e+88",
    COSINE: "-8.88888e+88",
}  # the Key column fits its keys within these bounds and the room left


def status_text(entry: DiffEntry) -> str:
    text = CATEGORY_TITLES.get(entry.category, entry.category)
    m = entry.metrics
    if entry.category == CHANGED and m is not None and m.within_tolerance:
        text += " (within tolerance)"
    if entry.category == DTYPE and m is not None and m.diff_l2 == 0 and m.within_tolerance:
        text += ", equal values"
    if m is not None and m.nonfinite_b_only:
        text += f" · NaN/Inf in B ({format_count(m.nonfinite_b_only)})"
    return text


def side_text(entry: DiffEntry, side: str) -> str:
    if entry.kind == "value":
        present = entry.node_a if side == "a" else entry.node_b
        value = entry.value_a if side == "a" else entry.value_b
        return "" if present is None else format_value(value, limit=60)
    dtype = entry.dtype_a if side == "a" else entry.dtype_b
    shape = entry.shape_a if side == "a" else entry.shape_b
    return "" if dtype is None else f"{dtype} {format_shape(shape)}"


def cell_text(entry: DiffEntry, column: int) -> str:
    """What the cell of ``entry`` in ``column`` shows."""
    m = entry.metrics
    if column == KEY:
        return entry.key
    if column == STATUS:
        return status_text(entry)
    if column in (SIDE_A, SIDE_B):
        return side_text(entry, "a" if column == SIDE_A else "b")
    if m is None:
        return ""
    if column == MAX_ABS:
        return format_float(m.max_abs_diff)
    if column == MEAN_ABS:
        return format_float(m.mean_abs_diff)
    if column == REL:
        return "A is zero" if m.rel_l2 is None else format_float(m.rel_l2)
    if column == COSINE:
        return format_float(m.cosine, digits=6)
    return ""


def change_of(entry: DiffEntry) -> float | None:
    """How much an entry changed, for sorting: ‖A−B‖/‖A‖ (A all zeros: infinite), None when
    there is no measure (one side only, a shape mismatch, a value)."""
    m = entry.metrics
    if m is None:
        return None
    rel = m.rel_l2
    return math.inf if rel is None else rel


class WidthSample:
    """The texts that decide the columns' widths, gathered as rows arrive, so that fitting the
    columns never walks every row of a big comparison: each distinct status, one row per
    distinct pair of dtypes and shapes (each plain value: values differ), and the longest keys.
    The figure columns need no sample: their widest text is bounded (``BOUNDED``)."""

    def __init__(self) -> None:
        self.statuses: set[str] = set()
        self.sides: dict[object, DiffEntry] = {}
        self.keys: list[str] = []  # the MEASURED longest, longest first

    def add(self, entries: Iterable[DiffEntry]) -> None:
        keys = self.keys
        for e in entries:
            self.statuses.add(status_text(e))
            value = id(e) if e.kind == "value" else 0
            self.sides.setdefault((e.dtype_a, e.shape_a, e.dtype_b, e.shape_b, value), e)
            keys.append(e.key)
        self.keys = heapq.nlargest(MEASURED, keys, key=len)
