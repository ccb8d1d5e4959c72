"""Help > Keyboard Shortcuts and Help > About: what every shortcut does, and the versions of
ckpt-gui, torch, Qt and PySide6 (for bug reports)."""

from __future__ import annotations

from html import escape
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QLabel, QMessageBox, QVBoxLayout, QWidget

from ckpt_gui import __version__

# Keys that are not menu actions: they work where the focus is.
FOCUS_KEYS = (
    ("Ctrl+C", "Copy what has focus: keys in the tree, selected text of the details, cells"),
    ("Esc", "Clear the filter"),
    ("Right-click a row", "Copy key, shape, statistics or Python; compare; export"),
)


def versions() -> dict[str, str]:
    """ckpt-gui, torch (read from its metadata: no import), Qt and PySide6."""
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    return {"ckpt-gui": __version__, "torch": torch, "Qt": qVersion(), "PySide6": pyside_version}


def about_text() -> str:
    lines = [f"{name} {version}" for name, version in versions().items()]
    return "A desktop checkpoint browser for PyTorch.\n\n" + "\n".join(lines)


def show_about(parent: QWidget) -> QMessageBox:
    box = QMessageBox(parent)
    box.setWindowTitle("About ckpt-gui")
    box.setIcon(QMessageBox.Icon.Information)
    box.setText(about_text())
    box.open()
    return box


def shortcut_rows(actions: list[QAction]) -> list[tuple[str, str]]:
    """(keys, what they do) for every action with a shortcut, then the focus keys."""
    rows = []
    for action in actions:
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if keys:
            rows.append((keys, action.text().replace("&", "").rstrip("…")))
    return rows + list(FOCUS_KEYS)


class ShortcutsDialog(QDialog):
    """A table of the window's shortcuts."""

    def __init__(self, actions: list[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard Shortcuts")
        self.rows = shortcut_rows(actions)
        cells = "".join(
            f"<tr><td style='padding-right:16px'><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>"
            for k, v in self.rows
        )
        label = QLabel(f"<table cellspacing='3'>{cells}</table>")
        layout = QVBoxLayout(self)
        layout.addWidget(label)
