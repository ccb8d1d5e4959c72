"""``ComparePlaceholder``: the compare tab until compare mode is built; it says what is coming."""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class ComparePlaceholder(QWidget):
    def __init__(self, a: Path, b: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paths = (a, b)
        text = (
            "<p style='font-size:15pt'>Compare</p>"
            f"<p><b>A</b> &nbsp;{escape(str(a))}<br><b>B</b> &nbsp;{escape(str(b))}</p>"
            "<p style='color:gray'>Side-by-side comparison is coming in a later version.<br>"
            "Meanwhile, A and B are open in their own tabs, and <code>ckpt-gui diff A B</code> "
            "compares them on the command line.</p>"
        )
        self.label = QLabel(text)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)

    def is_idle(self) -> bool:
        return True
