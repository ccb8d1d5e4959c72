"""``DiffTableModel``: one row per compared key, A and B side by side with the change metrics,
sorted in one Python sort. What each cell shows, and the texts that decide the columns'
widths, are in ``cells.py``; the proxy and the view over the model in ``table.py``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QModelRoleData,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor, QFont

from ckpt_gui.core.diff import CATEGORIES, DiffEntry
from ckpt_gui.qt import theme
from ckpt_gui.qt.compare.categories import COLOURS
from ckpt_gui.qt.compare.cells import (
    COSINE,
    HEADERS,
    KEY,
    MAX_ABS,
    MEAN_ABS,
    REL,
    SIDE_A,
    SIDE_B,
    STATUS,
    TOOLTIPS,
    WidthSample,
    cell_text,
    change_of,
    side_text,
)
from ckpt_gui.qt.compare.sort_keys import sort_key
from ckpt_gui.qt.gui_turns import release_later
from ckpt_gui.qt.plain_text import plain_tooltip

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
_Index = QModelIndex | QPersistentModelIndex


class DiffTableModel(QAbstractTableModel):
    """Rows are ``DiffEntry`` objects, appended as the diff produces them."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._entries: list[DiffEntry] = []
        # The sort keys of the rows, in row order (``_key``); None when the rows are in no
        # order that new rows could be sorted into.
        self._keys: list[tuple[Any, ...]] | None = []
        self._sorted_rows = 0  # the rows before this one are in order; those after, not yet
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)
        self._cells: dict[int, list[dict[int, Any] | None]] = {}  # by id(entry)
        self._counts: dict[tuple[str, str], int] = {}  # (kind, category) -> rows
        self.widths = WidthSample()
        self._colours: dict[str, QColor] = {}
        self._bold = QFont()
        self._bold.setBold(True)
        theme.follow_theme(self, self.restyle)

    # --- content ----------------------------------------------------------------------------
    def add_entries(self, entries: list[DiffEntry]) -> None:
        """Add rows at the end (the first batch sorted), each with its sort key: a big
        comparison's rows arrive in batches while it runs, and ``ensure_sorted`` puts them in
        their places at the end, in one sort of the keys gathered here. (Sorting each batch in
        would cost an insertion, and a proxy and view update, per place.)"""
        if not entries:
            return
        for e in entries:  # counted as they come: the toggles ask after every batch
            key = (e.kind, e.category)
            self._counts[key] = self._counts.get(key, 0) + 1
        self.widths.add(entries)
        column, order = self._sort
        keys: list[tuple[Any, ...]] | None = None
        if column >= 0 and self._keys is not None:
            try:
                keys = [self._key(e, column, order) for e in entries]
                if not self._entries:  # nothing shown yet: the first rows in order
                    ranked = sorted(zip(keys, range(len(keys))), key=lambda pair: pair[0])
                    entries = [entries[i] for _, i in ranked]
                    keys = [k for k, _ in ranked]
            except TypeError:  # values that compare only as text: ``resort`` at the end
                keys = None
        first = len(self._entries)
        self.beginInsertRows(QModelIndex(), first, first + len(entries) - 1)
        self._entries.extend(entries)
        if keys is None or self._keys is None:
            self._keys = None
        else:
            self._keys.extend(keys)
        if first == 0 and keys is not None:
            self._sorted_rows = len(entries)
        self.endInsertRows()

    def clear(self) -> None:
        """No rows; the old ones are freed on a later turn (``release_later``)."""
        self.beginResetModel()
        old = (self._entries, self._keys, self._cells)
        self._entries = []
        self._keys = []
        self._sorted_rows = 0
        self._cells = {}
        self._counts.clear()
        self.widths = WidthSample()
        self.endResetModel()
        release_later(old)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort the rows by ``column``'s raw values, rows without a value last (either order);
        rows added later are sorted in as they come."""
        self._sort = (column, order)
        self.resort()

    def resort(self) -> None:
        """Sort every row again as last asked."""
        column, order = self._sort
        if column < 0 or not self._entries:
            return
        try:
            self._reorder([self._key(e, column, order) for e in self._entries])
        except TypeError:  # mixed kinds of value: as text, and rows added later at the end
            self._reorder([self._key(e, column, order, str) for e in self._entries])
            self._keys = None

    def sorted_order(self) -> list[int] | None:
        """The rows (numbers) in the order ``ensure_sorted`` gives them, worked out without
        moving them (the proxy and the view go over every row moved: a turn of its own); None
        when they are in order or their keys do not compare."""
        if self._sort[0] < 0 or self._sorted_rows == len(self._entries) or self._keys is None:
            return None
        try:
            return sorted(range(len(self._keys)), key=self._keys.__getitem__)
        except TypeError:
            return None

    def ensure_sorted(self, order: list[int] | None = None) -> None:
        """Put the rows added since the last sort in their places (the comparison is done);
        ``order``: what ``sorted_order`` said, when no row has come or gone since."""
        if self._sort[0] < 0 or self._sorted_rows == len(self._entries):
            return
        try:
            if self._keys is not None:
                self._reorder(self._keys, order)
                return
        except TypeError:
            pass
        self.resort()

    def make_cells(self, rows: list[int]) -> None:
        """Make the painted cells of ``rows`` ahead of their first paint."""
        for row in rows:
            entry = self._entries[row]
            for column in range(len(HEADERS)):
                self.cell(entry, column)

    def _reorder(self, keys: list[tuple[Any, ...]], order: list[int] | None = None) -> None:
        """Order the rows by ``keys`` (one per row, ascending; the sort is stable) or as
        ``order`` says, keeping what Qt holds on to (selection, current row) on the same rows."""
        if order is None or len(order) != len(keys):
            order = sorted(range(len(keys)), key=keys.__getitem__)
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        entries = self._entries
        self._entries = [entries[i] for i in order]
        self._keys = [keys[i] for i in order]
        self._sorted_rows = len(order)
        if persistent:
            moved_to = [0] * len(order)
            for row, old in enumerate(order):
                moved_to[old] = row
            self.changePersistentIndexList(
                persistent, [self.index(moved_to[i.row()], i.column()) for i in persistent]
            )
        self.layoutChanged.emit()

    def _key(
        self, entry: DiffEntry, column: int, order: Qt.SortOrder, convert: Any = None
    ) -> tuple[Any, ...]:
        """The ascending key that puts ``entry`` in its place: rows without a value last."""
        value = self._sort_value(entry, column)
        if value is not None and convert is not None:
            value = convert(value)
        return sort_key(value, descending=order == Qt.SortOrder.DescendingOrder)

    def entries(self) -> list[DiffEntry]:
        return list(self._entries)

    def entry(self, row: int) -> DiffEntry:
        return self._entries[row]

    def row_kinds(self) -> Iterable[tuple[str, str]]:
        """Each (kind, category) that some row has."""
        return self._counts.keys()

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

    def index(
        self,
        row: int,
        column: int,
        parent: _Index = QModelIndex(),  # noqa: B008
    ) -> QModelIndex:
        """Qt's own asks ``rowCount`` and ``columnCount`` first, two calls into Python where
        this is one: the proxy maps every painted cell through here."""
        if parent.isValid() or not (0 <= row < len(self._entries) and 0 <= column < len(HEADERS)):
            return QModelIndex()
        return self.createIndex(row, column)

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
