"""``ModuleTable``: the Adapter tab's table of target modules, over an ``AdapterModel``. Columns
sort by their raw numbers; the A and B factors stay under their module and the headings below
the modules; tensor rows span the columns, and a double-click on one asks to show it in the
tree (``reveal_key``). Edit > Copy gives the selected rows tab-separated."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QTreeView, QWidget

from ckpt_gui.qt.adapter import model as cols
from ckpt_gui.qt.adapter.model import SORT_ROLE, AdapterModel
from ckpt_gui.qt.header import set_elide_modes, text_width

_Index = QModelIndex | QPersistentModelIndex
MODULE_MINIMUM = 160  # px of the module column, and what it leaves the others at least


class ModuleTable(QTreeView):
    """The rows of one adapter (``set_adapter_model``), sortable, spanning and copyable."""

    reveal_key = Signal(str)  # a tensor row was double-clicked: show it in the Tensors tab

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.adapter_model: AdapterModel | None = None
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.doubleClicked.connect(self._on_double_click)
        set_elide_modes(self, {cols.MODULE: Qt.TextElideMode.ElideLeft})
        self.proxy = _ModuleSortProxy(self)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setDynamicSortFilter(True)
        self.setModel(self.proxy)
        self.header().setStretchLastSection(True)

    def set_adapter_model(self, model: AdapterModel | None) -> None:
        """Show ``model``'s rows in model order (None: none)."""
        self.adapter_model = model
        self.proxy.setSourceModel(model)  # type: ignore[arg-type]
        if model is not None:
            self._span_rows(model)
            self.sortByColumn(cols.MODULE, Qt.SortOrder.AscendingOrder)

    def show_base_columns(self, shown: bool) -> None:
        """‖W‖ and ‖ΔW‖/‖W‖ mean something only with a base model."""
        for column in cols.BASE_COLUMNS:
            self.setColumnHidden(column, not shown)

    def select_module(self, module: str) -> bool:
        """Select and reveal the row of ``module`` (the adapter's module path)."""
        model = self.adapter_model
        row = model.row_of(module) if model is not None else None
        if model is None or row is None:
            return False
        index = self.proxy.mapFromSource(model.index_of(row))
        self.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self.setCurrentIndex(index)
        return True

    def copy_text(self) -> str:
        """The selected rows as spreadsheets paste them (tab-separated, the visible columns'
        titles first); a tensor's row is its key."""
        model = self.adapter_model
        if model is None:
            return ""
        columns = [c for c in range(len(cols.TITLES)) if not self.isColumnHidden(c)]
        lines = []
        for index in self.selectionModel().selectedRows(0):
            row = self.proxy.mapToSource(index).internalPointer()
            if row.module is not None:
                lines.append("\t".join(model.text(row, c) for c in columns))
            elif row.node is not None:
                lines.append(row.node.key)
        if not lines:
            return ""
        return "\n".join(["\t".join(cols.TITLES[c] for c in columns), *lines])

    def fit_columns(self) -> None:
        """Each number column as wide as its widest text; the module column gets what is left,
        up to its longest name."""
        model = self.adapter_model
        if model is None:
            return
        rows = list(model.by_module.values())
        for column in range(1, len(cols.TITLES)):
            if not self.isColumnHidden(column):
                texts = [model.text(r, column) for r in rows] + [cols.TITLES[column], "0.0000"]
                self.setColumnWidth(column, text_width(self, texts, 8))
        others = sum(
            self.columnWidth(c)
            for c in range(1, len(cols.TITLES) - 1)
            if not self.isColumnHidden(c)
        )
        room = self.viewport().width() - others - MODULE_MINIMUM
        width = text_width(self, [cols.UNTRAINED_MARK + r.text for r in rows], 24)
        self.setColumnWidth(cols.MODULE, max(MODULE_MINIMUM, min(width, room)))

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.fit_columns()

    def _span_rows(self, model: AdapterModel) -> None:
        """Tensor and heading rows show one line across the columns; headings start open."""
        for top in model.root.children:
            top_index = self.proxy.mapFromSource(model.index_of(top))
            if top.module is None:
                self.setFirstColumnSpanned(top_index.row(), QModelIndex(), True)
                self.expand(top_index)
            for child in top.children:
                child_index = self.proxy.mapFromSource(model.index_of(child))
                self.setFirstColumnSpanned(child_index.row(), top_index, True)

    def _on_double_click(self, index: QModelIndex) -> None:
        key = index.siblingAtColumn(0).data(cols.KEY_ROLE)
        if key:
            self.reveal_key.emit(key)


class _ModuleSortProxy(QSortFilterProxyModel):
    """Sorts module rows by the column's raw numbers; headings stay below the modules, and the
    rows under a module (A, B, magnitude) and under a heading keep their order."""

    def lessThan(self, left: _Index, right: _Index) -> bool:  # noqa: N802 - Qt override
        ascending = self.sortOrder() == Qt.SortOrder.AscendingOrder
        lrow, rrow = left.internalPointer(), right.internalPointer()
        if left.parent().isValid() or lrow.module is None or rrow.module is None:
            # Fixed order whichever way the column sorts.
            lkey = (lrow.module is None, lrow.row())
            rkey = (rrow.module is None, rrow.row())
            return (lkey < rkey) == ascending
        lvalue, rvalue = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if lvalue is None or rvalue is None:
            return rvalue is not None
        try:
            return bool(lvalue < rvalue)
        except TypeError:
            return str(lvalue) < str(rvalue)
