"""A LoRA adapter's tab (``AdapterTabs``, part of ``CheckpointView``): an Adapter tab
(``qt/adapter``) beside the tensors' tree, and revealing a factor's tensor in the tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QSplitter, QTabWidget, QWidget

from ckpt_gui.qt.adapter import AdapterPanel

if TYPE_CHECKING:
    from ckpt_gui.core.checkpoint import Checkpoint
    from ckpt_gui.qt.models.tree_model import CheckpointModel
    from ckpt_gui.qt.page import Page
    from ckpt_gui.qt.widgets.tree_panel import TreePanel

    _Base = Page
else:
    _Base = object


class AdapterTabs(_Base):
    """The adapter part of a ``CheckpointView`` (which has the attributes declared here)."""

    model: CheckpointModel | None
    tree: TreePanel
    splitter: QSplitter  # the tree and its panels: the Tensors tab
    _content: QWidget  # what holds the splitter, until the tabs take its place
    adapter_panel: AdapterPanel | None  # a LoRA adapter's Adapter tab
    content_tabs: QTabWidget | None  # Adapter | Tensors, for an adapter

    def _show_adapter(self, ckpt: Checkpoint) -> None:
        """A LoRA adapter's tab gets an Adapter tab (``qt/adapter``) beside its tensors."""
        if self.adapter_panel is None:
            self.adapter_panel = AdapterPanel()
            self.adapter_panel.reveal_key.connect(self.reveal_key)
            self.content_tabs = QTabWidget()
            self.content_tabs.setDocumentMode(True)
            layout = self._content.layout()
            assert layout is not None
            layout.replaceWidget(self.splitter, self.content_tabs)
            self.content_tabs.addTab(self.adapter_panel, "Adapter")
            self.content_tabs.addTab(self.splitter, "Tensors")
        self.adapter_panel.set_checkpoint(ckpt)

    def reveal_key(self, key: str) -> bool:
        """Show the tensor ``key`` in the tree (the Tensors tab of an adapter)."""
        rows = self.model.root_item().walk() if self.model is not None else iter(())
        found = next((it for it in rows if it.is_tensor and it.key == key), None)
        if found is None:
            return False
        if self.content_tabs is not None:
            self.content_tabs.setCurrentWidget(self.splitter)
        return self.tree.select_item(found)
