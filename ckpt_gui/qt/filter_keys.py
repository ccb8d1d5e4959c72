"""Keys shared by the filter boxes: Esc clears the filter (where the filter or its rows have
focus), and the cursor stays where it was."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QLineEdit, QWidget


def clear_on_escape(panel: QWidget, edit: QLineEdit) -> QShortcut:
    """Esc anywhere in ``panel`` clears ``edit`` when it holds a filter; with nothing to clear,
    the key goes on to whoever wants it (a dialog's Cancel)."""
    shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), panel)
    shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    shortcut.activated.connect(edit.clear)
    edit.textChanged.connect(lambda text: shortcut.setEnabled(bool(text)))
    shortcut.setEnabled(bool(edit.text()))
    return shortcut
