"""The compare view's table: ``DiffFilterProxy`` (category toggles and the browser's key filter
over a ``DiffTableModel``), the view over it and its columns' widths.

A big comparison's table is painted, filtered and re-sorted many times while its rows arrive:
every call Qt makes into Python for a cell or a row costs, the more so while a worker holds the
GIL, so the proxy answers what it can without a further call (flags) and decides a row from the
entry alone.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QModelRoleData,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from ckpt_gui.core.diff import CATEGORIES
from ckpt_gui.qt.compare.table_model import (
    BOUNDED,
    ELIDE,
    HEADERS,
    KEY,
    KEY_WIDTH,
    REL,
    SORT_ROLE,
    STATUS,
    DiffTableModel,
    cell_text,
)
from ckpt_gui.qt.header import header_width, room, set_elide_modes, text_width
from ckpt_gui.qt.models.filter_proxy import KeyFilterProxy

# What Qt's table model answers for every cell, without asking the model (two calls into Python).
CELL_FLAGS = (
    Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemNeverHasChildren
)
_Index = QModelIndex | QPersistentModelIndex


class DiffFilterProxy(KeyFilterProxy):
    """Rows whose category is switched on and whose key matches the filter (substring, glob or
    regex, as in the browser); sorting uses raw numbers, rows without a value last."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._categories: set[str] = set(CATEGORIES)
        self._values = True
        self._diff_model: DiffTableModel | None = None
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def setSourceModel(self, model: QAbstractItemModel | None) -> None:  # noqa: N802
        # Kept in Python: every row filtered asks for it, and each call into Qt costs.
        self._diff_model = model if isinstance(model, DiffTableModel) else None
        super().setSourceModel(model)  # type: ignore[arg-type]

    def set_categories(self, categories: set[str]) -> None:
        self._refilter(lambda: setattr(self, "_categories", set(categories)))

    def categories(self) -> set[str]:
        return set(self._categories)

    def set_show_values(self, shown: bool) -> None:
        self._refilter(lambda: setattr(self, "_values", shown))

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        # Asked for every row at each re-sort and filter change: as little as can be. (The
        # rows of a table have no children, so the parent is always the root.)
        model = self._diff_model
        if model is None:
            return False
        entry = model.entry(source_row)
        return (
            entry.category in self._categories
            and (self._values or entry.kind != "value")
            and (not self._pattern or self.matches(entry))
        )

    def flags(self, index: _Index) -> Qt.ItemFlag:
        # Qt's own answer would map the index to the source and ask the model (into Python).
        return CELL_FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    def multiData(  # noqa: N802 - Qt override
        self, index: _Index, span: QModelRoleDataSpan | QModelRoleData
    ) -> None:
        """Forward the delegate's many-roles query to the source in one call."""
        model = self._diff_model
        if index.isValid() and model is not None:
            model.multiData(self.mapToSource(index), span)
        else:
            super().multiData(index, span)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """The rows are sorted by the model itself, in one Python sort (a proxy sorting would
        call ``lessThan`` back into Python tens of thousands of times for a big comparison)."""
        model = self._diff_model
        if model is not None:
            model.sort(column, order)
        else:
            super().sort(column, order)


def make_table(proxy: DiffFilterProxy) -> QTableView:
    """The table view over ``proxy``: sorted by relative change, largest first."""
    table = QTableView()
    table.setModel(proxy)
    table.setSortingEnabled(True)
    table.sortByColumn(REL, Qt.SortOrder.DescendingOrder)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    set_elide_modes(table, ELIDE)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(False)  # every column is fitted to its content
    return table


def fit_widths(table: QTableView, model: DiffTableModel) -> dict[int, int]:
    """Each column's width for its content: every text in full, the Key column within its
    bounds and what the other columns leave of the table's width. Measured on the model's
    ``WidthSample`` (formatting and measuring every row of a big comparison would stall the
    window): the figures have a bounded width, the sides are measured once per distinct dtype
    and shape, the keys by the longest few."""
    sample = model.widths
    widths = {}
    for column in range(1, len(HEADERS)):
        if column in BOUNDED:
            texts = [BOUNDED[column]]
        elif column == STATUS:
            texts = list(sample.statuses)
        else:
            texts = [cell_text(e, column) for e in sample.sides.values()]
        widths[column] = text_width(table, texts)
    header = table.horizontalHeader()
    others = sum(
        max(w, header_width(table, c)) for c, w in widths.items() if not header.isSectionHidden(c)
    )
    low, high = KEY_WIDTH
    space = room(table) - others
    widths[KEY] = max(low, min(text_width(table, sample.keys), space, high))
    return widths
