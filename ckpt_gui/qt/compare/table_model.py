"""``DiffTableModel``: one row per compared key, A and B side by side with the change metrics;
``DiffFilterProxy``: category toggles and the browser's key filter, numeric sorting."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from ckpt_gui.core.diff import CATEGORIES, CATEGORY_TITLES, CHANGED, DTYPE, DiffEntry
from ckpt_gui.qt.formatting import format_float, format_shape, format_value
from ckpt_gui.qt.models.filter_proxy import TreeFilterProxy
from ckpt_gui.qt.plain_text import plain_tooltip

KEY, STATUS, SIDE_A, SIDE_B, MAX_ABS, MEAN_ABS, REL, COSINE = range(8)
HEADERS = ("Key", "Status", "A", "B", "max |A−B|", "mean |A−B|", "‖A−B‖/‖A‖", "cosine")
TOOLTIPS = {
    SIDE_A: "A's dtype and shape (or value)",
    SIDE_B: "B's dtype and shape (or value)",
    MAX_ABS: "Largest absolute difference over the positions where both are finite",
    MEAN_ABS: "Mean absolute difference over the positions where both are finite",
    REL: "Relative change: L2 norm of A−B over the L2 norm of A",
    COSINE: "Cosine similarity of A and B as vectors",
}
COLUMN_WIDTHS = (262, 84, 110, 110, 78, 80, 82, 70)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 2
COLOURS = {
    "only_a": "#c62828",
    "only_b": "#2e7d32",
    "shape_mismatch": "#d84315",
    "dtype_mismatch": "#ad6800",
    "changed": "#1565c0",
    "identical": "#757575",
}
SHORT_TITLES = {
    "only_a": "Only A",
    "only_b": "Only B",
    "shape_mismatch": "Shape",
    "dtype_mismatch": "Dtype",
    "changed": "Changed",
    "identical": "Identical",
}
_Index = QModelIndex | QPersistentModelIndex


def status_text(entry: DiffEntry) -> str:
    text = CATEGORY_TITLES.get(entry.category, entry.category)
    m = entry.metrics
    if entry.category == CHANGED and m is not None and m.within_tolerance:
        text += " (within tolerance)"
    if entry.category == DTYPE and m is not None and m.diff_l2 == 0 and m.within_tolerance:
        text += ", equal values"
    return text


def side_text(entry: DiffEntry, side: str) -> str:
    if entry.kind == "value":
        present = entry.node_a if side == "a" else entry.node_b
        value = entry.value_a if side == "a" else entry.value_b
        return "" if present is None else format_value(value, limit=60)
    dtype = entry.dtype_a if side == "a" else entry.dtype_b
    shape = entry.shape_a if side == "a" else entry.shape_b
    return "" if dtype is None else f"{dtype} {format_shape(shape)}"


def change_of(entry: DiffEntry) -> float | None:
    """How much an entry changed, for sorting: ‖A−B‖/‖A‖ (A all zeros: infinite), None when
    there is no measure (one side only, a shape mismatch, a value)."""
    m = entry.metrics
    if m is None:
        return None
    rel = m.rel_l2
    return math.inf if rel is None else rel


class DiffTableModel(QAbstractTableModel):
    """Rows are ``DiffEntry`` objects, appended as the diff produces them."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._entries: list[DiffEntry] = []

    # --- content ----------------------------------------------------------------------------
    def add_entries(self, entries: list[DiffEntry]) -> None:
        if not entries:
            return
        first = len(self._entries)
        self.beginInsertRows(QModelIndex(), first, first + len(entries) - 1)
        self._entries.extend(entries)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._entries = []
        self.endResetModel()

    def entries(self) -> list[DiffEntry]:
        return list(self._entries)

    def entry(self, row: int) -> DiffEntry:
        return self._entries[row]

    def counts(self, kind: str | None = None) -> dict[str, int]:
        """Rows per category (of one ``kind``, "tensor" or "value", when given)."""
        out = dict.fromkeys(CATEGORIES, 0)
        for e in self._entries:
            if kind is None or e.kind == kind:
                out[e.category] = out.get(e.category, 0) + 1
        return out

    # --- Qt ---------------------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(  # noqa: N802 - Qt override
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(HEADERS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return TOOLTIPS.get(section)
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(entry, column)
        if role == SORT_ROLE:
            return self._sort_value(entry, column)
        if role == ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.ForegroundRole and column == STATUS:
            return QColor(COLOURS.get(entry.category, "#000000"))
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = self._tooltip(entry, column)
            return None if tip is None else plain_tooltip(tip)
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= MAX_ABS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, entry: DiffEntry, column: int) -> str:
        m = entry.metrics
        if column == KEY:
            return entry.key
        if column == STATUS:
            return status_text(entry)
        if column in (SIDE_A, SIDE_B):
            return side_text(entry, "a" if column == SIDE_A else "b")
        if m is None:
            return ""
        if column == MAX_ABS:
            return format_float(m.max_abs_diff)
        if column == MEAN_ABS:
            return format_float(m.mean_abs_diff)
        if column == REL:
            return "A is zero" if m.rel_l2 is None else format_float(m.rel_l2)
        if column == COSINE:
            return format_float(m.cosine, digits=6)
        return ""

    def _sort_value(self, entry: DiffEntry, column: int) -> Any:
        m = entry.metrics
        if column == KEY:
            return entry.key
        if column == STATUS:
            return CATEGORIES.index(entry.category) if entry.category in CATEGORIES else 99
        if column in (SIDE_A, SIDE_B):
            return side_text(entry, "a" if column == SIDE_A else "b")
        if column == REL:
            return change_of(entry)
        if m is None:
            return None
        return {MAX_ABS: m.max_abs_diff, MEAN_ABS: m.mean_abs_diff, COSINE: m.cosine}.get(column)

    def _tooltip(self, entry: DiffEntry, column: int) -> str | None:
        if column == KEY:
            lines = [f"A: {entry.key}" if entry.node_a is not None else "not in A"]
            lines.append(f"B: {entry.key_b}" if entry.node_b is not None else "not in B")
            return "\n".join(lines)
        m = entry.metrics
        if column == STATUS and m is not None:
            parts = [f"compared in {m.work_dtype}"]
            if m.nonfinite:
                parts.append(f"{m.nonfinite:,} positions with NaN/Inf left out of the metrics")
            if m.complex_magnitude:
                parts.append("complex: |A−B| is the magnitude of the difference")
            return "\n".join(parts)
        return None


class DiffFilterProxy(TreeFilterProxy):
    """Rows whose category is switched on and whose key matches the filter (substring, glob or
    regex, as in the browser); sorting uses raw numbers, rows without a value last."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._categories: set[str] = set(CATEGORIES)
        self._values = True
        self.setSortRole(SORT_ROLE)

    def set_categories(self, categories: set[str]) -> None:
        self._refilter(lambda: setattr(self, "_categories", set(categories)))

    def categories(self) -> set[str]:
        return set(self._categories)

    def set_show_values(self, shown: bool) -> None:
        self._refilter(lambda: setattr(self, "_values", shown))

    def _refilter(self, change: Any) -> None:
        begin = getattr(self, "beginFilterChange", None)  # Qt >= 6.9
        if begin is not None:
            begin()
        change()
        if begin is not None:
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        model = self.sourceModel()
        if not isinstance(model, DiffTableModel) or source_parent.isValid():
            return False
        entry = model.entry(source_row)
        if entry.category not in self._categories:
            return False
        if entry.kind == "value" and not self._values:
            return False
        return self.matches(entry)

    def lessThan(self, left: _Index, right: _Index) -> bool:  # noqa: N802 - Qt override
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        descending = self.sortOrder() == Qt.SortOrder.DescendingOrder
        if a is None or b is None:
            if a is None and b is None:
                return left.row() < right.row()
            return (a is None) == descending
        if a == b:
            return left.row() < right.row()
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


def make_table(proxy: DiffFilterProxy) -> QTableView:
    """The table view over ``proxy``: sorted by relative change, largest first."""
    table = QTableView()
    table.setModel(proxy)
    table.setSortingEnabled(True)
    table.sortByColumn(REL, Qt.SortOrder.DescendingOrder)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    for column, width in enumerate(COLUMN_WIDTHS):
        table.setColumnWidth(column, width)
    return table
