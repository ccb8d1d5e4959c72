"""The legend under the tree: a coloured dot and a word for each mark a row can carry,
recoloured when the theme changes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from ckpt_gui.qt import theme
from ckpt_gui.qt.models.marks import MARKS, mark_colour


def marks_legend(marks: tuple[str, ...]) -> QLabel:
    """A label naming ``marks`` (keys of ``MARKS``), each after a dot of its colour."""
    label = QLabel()
    label.setTextFormat(Qt.TextFormat.RichText)

    def restyle() -> None:
        dots = " &nbsp; ".join(
            f"<span style='color:{mark_colour(m)}; font-size:large'>●</span> {MARKS[m][1]}"
            for m in marks
        )
        label.setText(f"<span style='color:{theme.colour('secondary')}'>{dots}</span>")

    restyle()
    theme.follow_theme(label, restyle)
    return label
