"""``ExportChoice``: which file to export when a tab shows several (a compare tab: A or B)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMessageBox, QPushButton, QWidget

from ckpt_gui.qt.page import Page


class ExportChoice(QMessageBox):
    """A window-modal question with one button per file; ``chosen(path)`` says which."""

    chosen = Signal(object)  # Path

    def __init__(self, page: Page, sources: list[Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setText("Which checkpoint do you want to export?")
        self.setIcon(QMessageBox.Icon.Question)
        self.choices: list[QPushButton] = []
        for label, path in zip("AB" if len(sources) == 2 else _numbers(sources), sources):
            button = self.addButton(
                f"Export {label}: {page.name_of(path)}", QMessageBox.ButtonRole.AcceptRole
            )
            button.setToolTip(str(path))
            button.clicked.connect(lambda _=False, p=path: self.chosen.emit(p))
            self.choices.append(button)
        self.addButton(QMessageBox.StandardButton.Cancel)


def _numbers(sources: list[Path]) -> list[str]:
    return [str(i + 1) for i in range(len(sources))]
