"""File > Open URL… and File > Remote Cache…: a checkpoint opened where it lives, and the cache
of the bytes fetched from remote checkpoints (its size limit, kept in ``QSettings``, and a button
that empties it)."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.remote.location import is_remote
from ckpt_gui.core.units import human_bytes

LIMIT_SETTING = "remote/cache_limit_gb"
EXAMPLES = (
    "https://huggingface.co/org/model/resolve/main/model.safetensors",
    "hf://org/model@main/ (a sharded model)",
    "s3://bucket/run/epoch10.pt",
    "gs://bucket/checkpoints/",
)


class OpenUrlDialog(QDialog):
    """One line for a URL; OK only once it is one this app can open."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open URL")
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText("https://… s3://… gs://… hf://org/repo[@revision]/path")
        self.edit.setMinimumWidth(560)
        hint = QLabel(
            "Only the bytes that describe the checkpoint are fetched; tensors are fetched "
            "when you look at them.\nFor example:\n  " + "\n  ".join(EXAMPLES),
            self,
        )
        hint.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.edit)
        layout.addWidget(hint)
        layout.addWidget(self.buttons)
        self.edit.textChanged.connect(self._validate)
        self._validate()

    def url(self) -> str:
        return self.edit.text().strip()

    def _validate(self) -> None:
        button = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        button.setEnabled(is_remote(self.url()))


def apply_cache_limit() -> None:
    """The limit the user chose (``QSettings``), for the process's remote cache."""
    from ckpt_gui.core.remote.store import shared_cache

    value = QSettings("ckpt-gui", "ckpt-gui").value(LIMIT_SETTING, None)
    try:
        gigabytes = float(str(value))
    except ValueError:
        return  # never set (None), or not a number
    shared_cache().limit = int(gigabytes * 2**30)


class CacheDialog(QDialog):
    """Where the remote cache is, how much it holds, its limit, and Clear."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ckpt_gui.core.remote.store import shared_cache

        self.cache = shared_cache()
        self.setWindowTitle("Remote Cache")
        self.usage = QLabel(self)
        self.limit = QDoubleSpinBox(self)
        self.limit.setRange(0.1, 10_000)
        self.limit.setDecimals(1)
        self.limit.setSuffix(" GB")
        self.limit.setValue(self.cache.limit / 2**30)
        self.clear_button = QPushButton("Clear Cache", self)
        self.clear_button.clicked.connect(self.clear)
        form = QFormLayout()
        form.addRow("Folder", QLabel(str(self.cache.folder), self))
        form.addRow("Holds", self.usage)
        form.addRow("Limit", self.limit)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.clear_button)
        layout.addWidget(buttons)
        self._show_usage()

    def _show_usage(self) -> None:
        self.usage.setText(human_bytes(self.cache.usage()))

    def clear(self) -> None:
        self.cache.clear()
        self._show_usage()

    def accept(self) -> None:
        QSettings("ckpt-gui", "ckpt-gui").setValue(LIMIT_SETTING, self.limit.value())
        self.cache.limit = int(self.limit.value() * 2**30)
        self.cache.trim()
        super().accept()
