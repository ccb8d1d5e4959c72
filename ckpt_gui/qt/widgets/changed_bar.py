"""``ChangedBar``: the line that says the file changed on disk, with Reload and Dismiss, and
``FileWatch``, which notices the change (``QFileSystemWatcher``, quietened while a writer is
still at it)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from ckpt_gui.qt import theme

QUIET_MS = 400  # a file being written changes many times: say so once it has settled


class FileWatch(QObject):
    """Emits ``changed`` once the watched file (or folder) has changed and settled. Writers that
    replace the file (write to a temporary name, then rename) are followed to the new file."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.fileChanged.connect(self._on_change)
        self.watcher.directoryChanged.connect(self._on_change)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(QUIET_MS)
        self.timer.timeout.connect(self._settled)
        self.path: Path | None = None

    def watch(self, path: Path) -> None:
        self.stop()
        self.path = path
        if path.exists():
            self.watcher.addPath(str(path))

    def stop(self) -> None:
        self.timer.stop()
        paths = self.watcher.files() + self.watcher.directories()
        if paths:
            self.watcher.removePaths(paths)

    def _on_change(self, _path: str) -> None:
        self.timer.start()

    def _settled(self) -> None:
        path = self.path
        if path is None:
            return
        if path.exists() and str(path) not in self.watcher.files() + self.watcher.directories():
            self.watcher.addPath(str(path))  # replaced by a rename: watch the new file
        self.changed.emit()


class ChangedBar(QFrame):
    """Hidden until the file changes on disk; Reload asks the tab to read it again."""

    reload_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("changedBar")
        self.label = QLabel("This file changed on disk.")
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("Read the file again, keeping the selection (F5)")
        self.reload_button.clicked.connect(self.reload_requested)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 10, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.reload_button)
        layout.addWidget(self.dismiss_button)
        self._restyle()
        theme.follow_theme(self, self._restyle)
        self.hide()

    def _restyle(self) -> None:
        blue = theme.colour("blue")
        self.setStyleSheet(f"#changedBar {{ border: 1px solid {blue}; border-radius: 3px; }}")
