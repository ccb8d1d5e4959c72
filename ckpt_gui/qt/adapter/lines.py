"""The lines under the Adapter tab's bar: warnings (red), untrained modules (orange) and notes
(grey), each shown only when it says something; their words are ``texts``'."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ckpt_gui.core.adapters import AdapterReport
from ckpt_gui.qt import theme
from ckpt_gui.qt.adapter import texts


class ReportLines(QWidget):
    """``warning_label``, ``untrained_label`` and ``notes_label``, one above the other."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.warning_label = _label()  # config targets that match no base weight, failures
        theme.style_text(self.warning_label, "red", "font-weight: bold;")
        self.untrained_label = _label()
        theme.style_text(self.untrained_label, "orange", "font-weight: bold;")
        self.notes_label = _label()
        theme.style_secondary(self.notes_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for label in (self.warning_label, self.untrained_label, self.notes_label):
            layout.addWidget(label)

    def show_report(self, notes: list[str], report: AdapterReport | None) -> None:
        """What ``report`` (None: none yet) and the notes of finding the adapters say."""
        _show(self.warning_label, "\n".join(texts.warning_lines(report)))
        _show(self.untrained_label, texts.untrained_line(report))
        _show(self.notes_label, "\n".join(texts.note_lines(notes, report)))

    def show_failure(self, line: str) -> None:
        _show(self.warning_label, line)


def _label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)  # names come from the files
    return label


def _show(label: QLabel, text: str) -> None:
    label.setText(text)
    label.setVisible(bool(text))
