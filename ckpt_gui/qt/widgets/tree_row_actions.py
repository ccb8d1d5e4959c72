"""What a checkpoint tab's rows offer on a right click (``TreeRowActions``, part of
``CheckpointView``): the row's context menu, comparing its tensor with another file, exporting
its subtree."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QMenu

from ckpt_gui.qt.models.items import Item
from ckpt_gui.qt.widgets.row_menu import tree_row_menu

if TYPE_CHECKING:
    from ckpt_gui.core.checkpoint import Checkpoint
    from ckpt_gui.qt.models.tree_model import CheckpointModel
    from ckpt_gui.qt.page import Page
    from ckpt_gui.qt.widgets.tree_panel import TreePanel

    _Base = Page
else:
    _Base = object


class TreeRowActions(_Base):
    """The row menu of a ``CheckpointView`` (which has the attributes declared here)."""

    path: Path
    trust: bool
    checkpoint: Checkpoint | None
    model: CheckpointModel | None
    tree: TreePanel

    def row_menu(self, item: Item) -> QMenu | None:
        """The context menu of ``item``'s row."""
        if self.model is None:
            return None
        kind = self.checkpoint.kind if self.checkpoint is not None else ""
        return tree_row_menu(
            self,
            self.model,
            item,
            variable="sd" if kind == "state_dict" else "ckpt",
            compare=self._ask_compare_tensor,
            export=lambda it: self.export_subtree(it.key),
        )

    def _show_row_menu(self, pos: QPoint) -> None:
        index = self.tree.view.indexAt(pos)
        if not index.isValid():
            return
        menu = self.row_menu(self.tree.proxy.mapToSource(index).internalPointer())
        if menu is not None:
            menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            menu.popup(self.tree.view.viewport().mapToGlobal(pos))

    def _ask_compare_tensor(self, item: Item) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Compare {item.key} with the same key in", str(self.path.parent)
        )
        if path:
            self.compare_tensor_with(item.key, Path(path))

    def compare_tensor_with(self, key: str, other: Path) -> None:
        """Compare this file with ``other`` in a new tab, showing ``key``."""
        self.compare_requested.emit(self.path, other, key)

    def export_subtree(self, key: str) -> QDialog:
        """The export dialog for ``key`` and what is below it."""
        from ckpt_gui.qt.export import ExportDialog

        dialog = ExportDialog(self.path, parent=self.window(), trust=self.trust, subtree=key)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog
