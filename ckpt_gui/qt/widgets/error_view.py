"""``ErrorView``: why a file could not be opened, in one line, with details on request."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.qt import theme


class ErrorView(QWidget):
    """A clear message in the window instead of a dialog or a traceback."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # The title names the file and the message quotes it: text, never markup.
        self._title = QLabel()
        self._title.setTextFormat(Qt.TextFormat.PlainText)
        font = QFont(self._title.font())
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self._title.setFont(font)
        self._title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._message = QLabel()
        self._message.setTextFormat(Qt.TextFormat.PlainText)
        self._message.setWordWrap(True)
        self._message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        theme.style_text(self._message, "red")
        self._toggle = QPushButton("Show details")
        self._toggle.setCheckable(True)
        self._toggle.toggled.connect(self._show_details)
        self.retry_button = QPushButton("Try again")
        # What else may help (Download and Open, for a remote file read only whole): the page
        # that shows the error sets its text and connects it.
        self.action_button = QPushButton()
        self.action_button.setVisible(False)
        self._details = QPlainTextEdit()
        self._details.setReadOnly(True)
        self._details.setVisible(False)

        buttons = QHBoxLayout()
        buttons.addWidget(self.action_button)
        buttons.addWidget(self.retry_button)
        buttons.addWidget(self._toggle)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 32, 32, 32)
        layout.addWidget(self._title)
        layout.addSpacing(8)
        layout.addWidget(self._message)
        layout.addSpacing(12)
        layout.addLayout(buttons)
        layout.addWidget(self._details, 1)
        layout.addStretch(0)
        self._stretch_when_hidden = layout.count() - 1

    def set_error(
        self, title: str, message: str, details: str = "", action: str | None = None
    ) -> None:
        """Show an error; ``action``: the text of the action button, shown only when given."""
        self._title.setText(title)
        self._message.setText(message)
        self._details.setPlainText(details or message)
        self._toggle.setChecked(False)
        self.action_button.setText(action or "")
        self.action_button.setVisible(action is not None)

    def message(self) -> str:
        return self._message.text()

    def title(self) -> str:
        return self._title.text()

    def details(self) -> str:
        return self._details.toPlainText()

    def _show_details(self, shown: bool) -> None:
        self._details.setVisible(shown)
        self._toggle.setText("Hide details" if shown else "Show details")
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.setStretch(self._stretch_when_hidden, 0 if shown else 1)
