"""What F5 keeps of a checkpoint tree (``ViewState``): the selected rows, the current one, the
open rows and the scroll position, taken before a reload and put back, for the rows that still
exist, after it (``TreePanel.view_state`` and ``restore_view_state``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QItemSelectionModel, QTimer
from PySide6.QtWidgets import QTreeView

from ckpt_gui.qt.models.filter_proxy import TreeFilterProxy
from ckpt_gui.qt.models.items import Item
from ckpt_gui.qt.models.tree_model import CheckpointModel

MAX_KEPT_OPEN = 20_000  # open rows a reload reopens at most


@dataclass
class ViewState:
    """What F5 keeps: the selected rows, the current one, the open rows (each by ``row_id``),
    the scroll position."""

    selected: list[str] = field(default_factory=list)
    current: str | None = None
    expanded: list[str] = field(default_factory=list)
    scroll: tuple[int, int] = (0, 0)


def view_state(
    view: QTreeView, proxy: TreeFilterProxy, model: CheckpointModel | None, selected: list[Item]
) -> ViewState:
    """Selection (``selected``), open rows (by key) and scroll position of ``view``."""
    expanded: list[str] = []
    if model is not None:
        for item in model.root_item().walk():
            if item.children and len(expanded) < MAX_KEPT_OPEN:
                index = proxy.mapFromSource(model.index_of(item))
                if index.isValid() and view.isExpanded(index):
                    expanded.append(row_id(item))
    current = view.currentIndex()
    return ViewState(
        selected=[row_id(item) for item in selected],
        current=row_id(proxy.mapToSource(current).internalPointer()) if current.isValid() else None,
        expanded=expanded,
        scroll=(view.verticalScrollBar().value(), view.horizontalScrollBar().value()),
    )


def restore_view_state(
    view: QTreeView, proxy: TreeFilterProxy, model: CheckpointModel | None, state: ViewState
) -> None:
    """Open, select and scroll ``view`` as ``state`` says, for the rows that still exist."""
    if model is None:
        return
    by_key = {row_id(item): item for item in model.root_item().walk()}
    view.collapseAll()  # the rows the user had closed stay closed
    for key in state.expanded:
        item = by_key.get(key)
        if item is not None:
            view.expand(proxy.mapFromSource(model.index_of(item)))
    selection = view.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for key in state.selected:
        item = by_key.get(key)
        if item is not None:
            index = proxy.mapFromSource(model.index_of(item))
            if key == state.current:
                selection.setCurrentIndex(index, flags)
            else:
                selection.select(index, flags)
    vertical, horizontal = state.scroll

    def scroll() -> None:
        view.verticalScrollBar().setValue(vertical)
        view.horizontalScrollBar().setValue(horizontal)

    # After the view has laid out the rows it now shows.
    QTimer.singleShot(0, view, scroll)


def row_id(item: Item) -> str:
    """A row's key, told apart from its logical weight's where a quantized weight's raw part
    has the same key (fp8's ``weight``, a GGUF tensor): one row per id."""
    node = item.node
    if node is not None and node.role == "quantization":
        return f"{item.key}\x00part"
    return item.key
