"""``DiffTableModel``: one row per compared key, A and B side by side with the change metrics;
``DiffFilterProxy``: category toggles and the browser's key filter, numeric sorting."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QModelRoleData,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from ckpt_gui.core.diff import CATEGORIES, CATEGORY_TITLES, CHANGED, DTYPE, DiffEntry
from ckpt_gui.qt import theme
from ckpt_gui.qt.formatting import format_count, format_float, format_shape, format_value
from ckpt_gui.qt.header import header_width, room, set_elide_modes, text_width
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
# Keys may elide (the tooltip has them in full); the other columns are fitted, never elided.
ELIDE = {KEY: Qt.TextElideMode.ElideLeft}
KEY_WIDTH = (120, 420)
# The widest text of each figure column: 4 significant digits (6 for the cosine).
BOUNDED = {
    MAX_ABS: "-8.888e+88",
    MEAN_ABS: "-8.888e+88",
    REL: "-8.888e+88",
    COSINE: "-8.88888e+88",
}  # the Key column fits its keys within these bounds and the room left
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 2
PAINTED = frozenset(
    (
        Qt.ItemDataRole.DisplayRole,
        Qt.ItemDataRole.TextAlignmentRole,
        Qt.ItemDataRole.ForegroundRole,
        Qt.ItemDataRole.BackgroundRole,
        Qt.ItemDataRole.FontRole,
        Qt.ItemDataRole.DecorationRole,
        Qt.ItemDataRole.CheckStateRole,
    )
)
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
# Each category's theme colour (``theme.colour``: light and dark values).
COLOURS = {
    "only_a": "red",
    "only_b": "green",
    "shape_mismatch": "orange",
    "dtype_mismatch": "amber",
    "changed": "blue",
    "identical": "grey",
    "nonfinite_b": "red",  # NaN/Inf that appear only in B
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
    if m is not None and m.nonfinite_b_only:
        text += f" · NaN/Inf in B ({format_count(m.nonfinite_b_only)})"
    return text


def side_text(entry: DiffEntry, side: str) -> str:
    if entry.kind == "value":
        present = entry.node_a if side == "a" else entry.node_b
        value = entry.value_a if side == "a" else entry.value_b
        return "" if present is None else format_value(value, limit=60)
    dtype = entry.dtype_a if side == "a" else entry.dtype_b
    shape = entry.shape_a if side == "a" else entry.shape_b
    return "" if dtype is None else f"{dtype} {format_shape(shape)}"


def cell_text(entry: DiffEntry, column: int) -> str:
    """What the cell of ``entry`` in ``column`` shows."""
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
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)
        self._cells: dict[int, list[dict[int, Any] | None]] = {}  # by id(entry)
        self._counts: dict[tuple[str, str], int] = {}  # (kind, category) -> rows
        self._colours: dict[str, QColor] = {}
        self._bold = QFont()
        self._bold.setBold(True)
        theme.follow_theme(self, self.restyle)

    # --- content ----------------------------------------------------------------------------
    def add_entries(self, entries: list[DiffEntry]) -> None:
        if not entries:
            return
        first = len(self._entries)
        self.beginInsertRows(QModelIndex(), first, first + len(entries) - 1)
        self._entries.extend(entries)
        for e in entries:  # counted as they come: the toggles ask after every batch
            key = (e.kind, e.category)
            self._counts[key] = self._counts.get(key, 0) + 1
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._entries = []
        self._cells.clear()
        self._counts.clear()
        self.endResetModel()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort the rows by ``column``'s raw values, rows without a value last (either order);
        rows added later stay at the end until ``resort``."""
        self._sort = (column, order)
        self.resort()

    def resort(self) -> None:
        """Sort again as last asked (the comparison is complete: the rows added since)."""
        column, order = self._sort
        if column < 0 or not self._entries:
            return
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        held = [(self._entries[i.row()], i.column()) for i in persistent]
        values = [(self._sort_value(e, column), n, e) for n, e in enumerate(self._entries)]
        present = [v for v in values if v[0] is not None]
        missing = [v for v in values if v[0] is None]
        descending = order == Qt.SortOrder.DescendingOrder
        try:
            present.sort(key=lambda v: v[0], reverse=descending)
        except TypeError:  # mixed kinds of value: as text
            present.sort(key=lambda v: str(v[0]), reverse=descending)
        self._entries = [v[2] for v in present + missing]
        rows = {id(e): row for row, e in enumerate(self._entries)}
        self.changePersistentIndexList(persistent, [self.index(rows[id(e)], c) for e, c in held])
        self.layoutChanged.emit()

    def entries(self) -> list[DiffEntry]:
        return list(self._entries)

    def entry(self, row: int) -> DiffEntry:
        return self._entries[row]

    def counts(self, kind: str | None = None) -> dict[str, int]:
        """Rows per category (of one ``kind``, "tensor" or "value", when given)."""
        out = dict.fromkeys(CATEGORIES, 0)
        for (entry_kind, category), count in self._counts.items():
            if kind is None or entry_kind == kind:
                out[category] = out.get(category, 0) + count
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
        if role in PAINTED:
            return self.cell(entry, column).get(role)
        if role == SORT_ROLE:
            return self._sort_value(entry, column)
        if role == ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = self._tooltip(entry, column)
            return None if tip is None else plain_tooltip(tip)
        return None

    def cell(self, entry: DiffEntry, column: int) -> dict[int, Any]:
        """The painted roles of a cell, made once: a repaint asks for seven roles of every
        visible cell, and a big comparison repaints as its rows arrive."""
        cells = self._cells.get(id(entry))
        if cells is None:
            cells = self._cells[id(entry)] = [None] * len(HEADERS)
        cell = cells[column]
        if cell is None:
            cell = {Qt.ItemDataRole.DisplayRole: cell_text(entry, column)}
            if column == STATUS:
                bad = entry.metrics is not None and entry.metrics.nonfinite_b_only > 0
                cell[Qt.ItemDataRole.ForegroundRole] = self._status_colour(
                    "nonfinite_b" if bad else entry.category
                )
                if bad:
                    cell[Qt.ItemDataRole.FontRole] = self._bold
            if column >= MAX_ABS:
                cell[Qt.ItemDataRole.TextAlignmentRole] = RIGHT
            cells[column] = cell
        return cell

    def _status_colour(self, category: str) -> QColor:
        name = COLOURS.get(category, "secondary")
        colour = self._colours.get(name)
        if colour is None:
            colour = self._colours[name] = QColor(theme.colour(name))
        return colour

    def restyle(self) -> None:
        """The theme changed: the status colours are made again."""
        self._colours.clear()
        self._cells.clear()

    def multiData(  # noqa: N802 - Qt override
        self, index: _Index, span: QModelRoleDataSpan | QModelRoleData
    ) -> None:
        """Every role the delegate asks for, in one Python call."""
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return
        if isinstance(span, QModelRoleData):
            span = QModelRoleDataSpan(span)
        cell = self.cell(self._entries[index.row()], index.column())
        for role_data in span:  # type: ignore[attr-defined]
            role = role_data.role()
            value = cell.get(role) if role in PAINTED else self.data(index, role)
            if value is None:
                role_data.clearData()
            else:
                role_data.setData(value)

    def display(self, entry: DiffEntry, column: int) -> str:
        """What the cell of ``entry`` in ``column`` shows."""
        return cell_text(entry, column)

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
            if m.nonfinite_b_only:
                parts.append(f"{m.nonfinite_b_only:,} positions are NaN/Inf in B but finite in A")
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

    def multiData(  # noqa: N802 - Qt override
        self, index: _Index, span: QModelRoleDataSpan | QModelRoleData
    ) -> None:
        """Forward the delegate's many-roles query to the source in one call."""
        model = self.sourceModel()
        if index.isValid() and isinstance(model, DiffTableModel):
            model.multiData(self.mapToSource(index), span)
        else:
            super().multiData(index, span)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """The rows are sorted by the model itself, in one Python sort (a proxy sorting would
        call ``lessThan`` back into Python tens of thousands of times for a big comparison)."""
        model = self.sourceModel()
        if isinstance(model, DiffTableModel):
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


def fit_widths(table: QTableView, model: DiffTableModel, limit: int = 50_000) -> dict[int, int]:
    """Each column's width for its content: every text in full, the Key column within its
    bounds and what the other columns leave of the table's width."""
    entries = model.entries()[:limit]
    # Formatting every figure of a big comparison would stall the window: the figures have a
    # bounded width (BOUNDED), the sides are measured once per distinct dtype and shape.
    sides: dict[object, DiffEntry] = {}
    for e in entries:
        sides.setdefault(
            (e.kind, e.dtype_a, e.shape_a, e.dtype_b, e.shape_b, id(e) * (e.kind == "value")), e
        )
    distinct = list(sides.values())
    statuses = {status_text(e) for e in entries}
    widths = {}
    for column in range(1, len(HEADERS)):
        if column in BOUNDED:
            texts = [BOUNDED[column]]
        elif column == STATUS:
            texts = list(statuses)
        else:
            texts = [cell_text(e, column) for e in distinct]
        widths[column] = text_width(table, texts)
    header = table.horizontalHeader()
    others = sum(
        max(w, header_width(table, c)) for c, w in widths.items() if not header.isSectionHidden(c)
    )
    low, high = KEY_WIDTH
    space = room(table) - others
    widths[KEY] = max(low, min(text_width(table, (e.key for e in entries)), space, high))
    return widths
