"""Where the Adapter tab's "Open with base model…" asks for the base: a file or a folder, in a
dialog that starts where the base (or the adapter) is."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QWidget

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.qt.file_commands import FILE_FILTERS


def start_folder(base: Checkpoint | None, adapter: Checkpoint | None) -> str:
    """The folder of the base chosen before, else the one the adapter's folder is in."""
    if base is not None:
        return str(base.path.parent)
    if adapter is not None:
        path = adapter.path
        return str(path.parent.parent if path.is_file() else path.parent)
    return ""


def ask_base_file(parent: QWidget, start: str) -> str:
    """A base model file (safetensors, a torch.save file, an index), or "" when cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open the base model (file)", start, FILE_FILTERS)
    return path


def ask_base_folder(parent: QWidget, start: str) -> str:
    """A base model folder (a Hugging Face model folder, shards, DCP), or "" when cancelled."""
    return QFileDialog.getExistingDirectory(parent, "Open the base model (folder)", start)
