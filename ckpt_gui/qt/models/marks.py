"""Marks that draw the eye to a row: NaN/Inf, all zeros, tied weights or a shared storage, no data
to read, saved on a GPU, and the
stand-ins of the structural view (what a real load would import and call).

Each mark is a coloured dot in the name column; the legend under the tree names the colours.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

from ckpt_gui.qt import theme
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.items import Item

STANDIN_COLOUR = "#e65100"
# Order matters: dots are drawn left to right in this order. Each dot has a light and a dark
# theme colour, both at least 3:1 against the tree's background (WCAG AA for marks).
MARK_COLOURS = {
    "nonfinite": ("#d32f2f", "#ff6e6e"),
    "zero": ("#7a7a7a", "#9e9e9e"),
    "tied": ("#1e6fd0", "#64b5f6"),
    "shared": ("#00897b", "#4db6ac"),
    "nodata": ("#5d4037", "#bcaaa4"),
    "gpu": ("#8e24aa", "#d69be0"),
    "standin": (STANDIN_COLOUR, "#ffa040"),
}
MARKS = {
    "nonfinite": (MARK_COLOURS["nonfinite"][0], "NaN/Inf"),
    "zero": (MARK_COLOURS["zero"][0], "all zeros"),
    "tied": (MARK_COLOURS["tied"][0], "tied: the same bytes as another key"),
    "shared": (MARK_COLOURS["shared"][0], "shares a storage (distinct bytes)"),
    "nodata": (MARK_COLOURS["nodata"][0], "no data: nothing to measure"),
    "gpu": (MARK_COLOURS["gpu"][0], "saved on GPU"),
    "standin": (STANDIN_COLOUR, "stand-in: a real load would run code"),
}
_DOT = 8
_GAP = 3
_icons: dict[tuple[bool, tuple[str, ...]], QIcon] = {}


def mark_colour(mark: str) -> str:
    """The dot colour of ``mark`` in the theme in use."""
    light, dark = MARK_COLOURS[mark]
    return dark if theme.is_dark() else light


def marks_of(item: Item, stats: Any) -> tuple[str, ...]:
    """The marks a row carries, in legend order."""
    found = []
    if col.nonfinite(stats):
        found.append("nonfinite")
    node = item.node
    if item.is_tensor and node is not None and node.tensor is not None:
        if col.is_all_zero(stats):
            found.append("zero")
        if node.tied:
            found.append("tied")
        elif node.shares_storage_with:
            found.append("shared")
        if node.tensor.no_data:
            found.append("nodata")
        if node.tensor.device not in ("cpu", "meta"):
            found.append("gpu")
    if node is not None and node.standin:
        found.append("standin")
    return tuple(found)


def marks_tooltip(marks: tuple[str, ...], item: Item) -> list[str]:
    node = item.node
    lines = []
    for mark in marks:
        if mark == "tied" and node is not None:
            lines.append(f"tied to {node.shares_storage_with}: the same bytes")
        elif mark == "shared" and node is not None:
            lines.append(f"shares a storage with {node.shares_storage_with} (distinct bytes)")
        elif mark == "nodata" and node is not None and node.tensor is not None:
            lines.append(f"no data: {node.tensor.no_data}")
        elif mark == "gpu" and node is not None and node.tensor is not None:
            lines.append(f"saved on {node.tensor.device}")
        elif mark == "standin" and node is not None:
            lines.append(col.standin_tooltip(node))
        else:
            lines.append(MARKS[mark][1])
    return lines


def dot_pixmap(colour: str, size: int = _DOT) -> QPixmap:
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(colour))
    painter.drawEllipse(QPointF(size / 2, size / 2), size / 2 - 0.5, size / 2 - 0.5)
    painter.end()
    return pix


def mark_icon(marks: tuple[str, ...]) -> QIcon | None:
    """One icon holding a dot per mark (cached), or ``None`` for an unmarked row."""
    if not marks:
        return None
    key = (theme.is_dark(), marks)
    icon = _icons.get(key)
    if icon is None:
        width = len(marks) * (_DOT + _GAP)
        pix = QPixmap(width, 16)
        pix.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pix)
        for i, mark in enumerate(marks):
            painter.drawPixmap(i * (_DOT + _GAP), (16 - _DOT) // 2, dot_pixmap(mark_colour(mark)))
        painter.end()
        icon = QIcon(pix)
        _icons[key] = icon
    return icon
