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
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from ckpt_gui.core.diff import CATEGORIES
from ckpt_gui.qt.compare.cells import (
    BOUNDED,
    ELIDE,
    HEADERS,
    KEY,
    KEY_WIDTH,
    REL,
    STATUS,
    cell_text,
)
from ckpt_gui.qt.compare.table_model import SORT_ROLE, DiffTableModel
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
        # Whether every row is kept (no pattern, and every kind of row there is shown), worked
        # out once for all the rows Qt asks about; None: to be worked out again.
        self._keeps_all: bool | None = None
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def setSourceModel(self, model: QAbstractItemModel | None) -> None:  # noqa: N802
        # Kept in Python: every row filtered asks for it, and each call into Qt costs.
        old = self._diff_model
        if old is not None:
            old.rowsAboutToBeInserted.disconnect(self._forget_keeps_all)
            old.modelAboutToBeReset.disconnect(self._forget_keeps_all)
        self._diff_model = model if isinstance(model, DiffTableModel) else None
        self._keeps_all = None
        if self._diff_model is not None:
            # Before the proxy hears of new rows: they may be of a kind not seen yet.
            self._diff_model.rowsAboutToBeInserted.connect(self._forget_keeps_all)
            self._diff_model.modelAboutToBeReset.connect(self._forget_keeps_all)
        super().setSourceModel(model)  # type: ignore[arg-type]

    def _forget_keeps_all(self, *_: object) -> None:
        self._keeps_all = None

    def _filter_changing(self) -> None:
        self._keeps_all = None

    def set_categories(self, categories: set[str]) -> None:
        self._refilter(lambda: self._set(_categories=set(categories)))

    def categories(self) -> set[str]:
        return set(self._categories)

    def set_show_values(self, shown: bool) -> None:
        self._refilter(lambda: self._set(_values=shown))

    def _set(self, **state: object) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._keeps_all = None

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        # Asked for every row at each re-sort and filter change: as little as can be. (The
        # rows of a table have no children, so the parent is always the root.)
        model = self._diff_model
        if model is None:
            return False
        keeps_all = self._keeps_all
        if keeps_all is None:
            keeps_all = self._keeps_all = not self._pattern and all(
                category in self._categories and (self._values or kind != "value")
                for kind, category in model.row_kinds()
            )
        if keeps_all:
            return True
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


class DiffTableView(QTableView):
    """A table view that does not repaint for rows added below the ones it shows. A big
    comparison's rows arrive in batches, appended at the end (they are sorted in once the
    comparison is done): Qt lays the table out after each batch and repaints every visible
    cell (10-25 ms here), though the rows shown have not changed; here only the scroll bar
    follows them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Since the last layout: nothing (None), only rows below the viewport (True), or
        # something else (False: the layout repaints as usual).
        self._unseen_rows: bool | None = None

    def setModel(self, model: QAbstractItemModel | None) -> None:  # noqa: N802 - Qt override
        old = self.model()
        if old is not None:
            for signal in _CHANGES:
                getattr(old, signal).disconnect(self._on_changed)
            old.rowsInserted.disconnect(self._on_rows_inserted)
        super().setModel(model)
        self._unseen_rows = False
        if model is not None:
            # Connected after the view's own handlers: the new rows have their places.
            for signal in _CHANGES:
                getattr(model, signal).connect(self._on_changed)
            model.rowsInserted.connect(self._on_rows_inserted)

    def _on_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        unseen = (
            not parent.isValid()
            and last == self.model().rowCount() - 1
            and self.rowViewportPosition(first) >= self.viewport().height()
        )
        self._unseen_rows = unseen and self._unseen_rows is not False

    def _on_changed(self, *_: object) -> None:
        self._unseen_rows = False

    def doItemsLayout(self) -> None:  # noqa: N802 - Qt override
        unseen, self._unseen_rows = self._unseen_rows, None
        if unseen:
            self.updateGeometries()  # what Qt's layout does, less repainting the viewport
        else:
            super().doItemsLayout()


# Model changes after which the table lays out and repaints as usual.
_CHANGES = (
    "modelReset",
    "layoutChanged",
    "rowsRemoved",
    "rowsMoved",
    "columnsInserted",
    "columnsRemoved",
    "dataChanged",
    "headerDataChanged",
)


def make_table(proxy: DiffFilterProxy) -> QTableView:
    """The table view over ``proxy``: sorted by relative change, largest first."""
    table = DiffTableView()
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
