"""``CheckpointModel``: a ``QAbstractItemModel`` over the rows built from the core tree.

Each index's ``internalPointer`` is an ``Item``. ``SORT_ROLE`` holds raw numbers so the proxy sorts
numerically, ``ITEM_ROLE`` hands views the ``Item`` itself. Statistics arrive later, row by row,
through ``add_stats``; module rows show roll-ups of the rows below them.
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
from PySide6.QtGui import QBrush, QColor, QFont

from ckpt_gui.core.rollup import Rollup
from ckpt_gui.core.stats import TensorStats
from ckpt_gui.core.tree import Node
from ckpt_gui.qt import theme
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.items import Item
from ckpt_gui.qt.models.marks import mark_icon, marks_of, marks_tooltip
from ckpt_gui.qt.models.rollups import RowRollups
from ckpt_gui.qt.plain_text import plain_tooltip

DISPLAY = Qt.ItemDataRole.DisplayRole
ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole
FOREGROUND = Qt.ItemDataRole.ForegroundRole
BACKGROUND = Qt.ItemDataRole.BackgroundRole
FONT = Qt.ItemDataRole.FontRole
DECORATION = Qt.ItemDataRole.DecorationRole
PAINTED_ROLES = frozenset(
    (DISPLAY, ALIGNMENT, FOREGROUND, BACKGROUND, FONT, DECORATION, Qt.ItemDataRole.CheckStateRole)
)
CHANGED_ROLES = [DISPLAY, FOREGROUND, BACKGROUND, DECORATION]
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ITEM_ROLE = Qt.ItemDataRole.UserRole + 2
KEY_ROLE = Qt.ItemDataRole.UserRole + 3

RED_BACKGROUND = QColor(198, 40, 40, 38)
BRUSH_COLOURS = ("red", "grey", "purple", "blue", "amber")  # theme colours the cells use

_Index = QModelIndex | QPersistentModelIndex
_COLUMN_COUNT = len(col.COLUMNS)
ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
LEAF_FLAGS = ROW_FLAGS | Qt.ItemFlag.ItemNeverHasChildren
NO_PARENT = QModelIndex()  # an immutable value: safe as a default argument


class CheckpointModel(QAbstractItemModel):
    """The checkpoint's rows and columns; read-only."""

    def __init__(self, root: Item, parent: Any = None) -> None:
        super().__init__(parent)
        self._root = root
        self._by_node: dict[Node, Item] = {it.node: it for it in root.walk() if it.node is not None}
        self._rows = sum(1 for _ in root.walk()) - 1
        self._stats: dict[Item, TensorStats] = {}  # tensor rows
        self.rollups = RowRollups(root, self._stats)  # container rows
        self._cells: dict[Item, list[dict[int, Any] | None]] = {}
        self._italic = QFont()
        self._italic.setItalic(True)
        self._brushes: dict[str, QBrush] = {}
        self._red_background = QBrush(RED_BACKGROUND)
        self.restyle()
        theme.follow_theme(self, self.restyle)

    def restyle(self) -> None:
        """Take the theme's colours (light or dark). The palette change that comes with a new
        theme repaints every view, which then asks for the cells again."""
        self._brushes = {name: QBrush(QColor(theme.colour(name))) for name in BRUSH_COLOURS}
        self._cells.clear()

    # --- structure --------------------------------------------------------------------------
    def root_item(self) -> Item:
        return self._root

    def item(self, index: _Index) -> Item:
        return index.internalPointer() if index.isValid() else self._root

    def index_of(self, item: Item, column: int = 0) -> QModelIndex:
        if item is self._root:
            return QModelIndex()
        return self.createIndex(item.row, column, item)

    # index, rowCount, hasChildren and flags are asked about every row a view lays out (half a
    # million calls for a module of tiny tensors): each makes as few calls into Qt as it can.
    def index(self, row: int, column: int, parent: _Index = NO_PARENT) -> QModelIndex:
        holder = parent.internalPointer()  # None for the invisible root
        if holder is None:
            holder = self._root
        elif parent.column() != 0:
            return QModelIndex()
        children = holder.children
        if 0 <= row < len(children) and 0 <= column < _COLUMN_COUNT:
            return self.createIndex(row, column, children[row])
        return QModelIndex()

    def parent(self, index: _Index = NO_PARENT) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        up = self.item(index).parent
        if up is None or up is self._root:
            return QModelIndex()
        return self.createIndex(up.row, 0, up)

    def rowCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        holder = parent.internalPointer()
        if holder is None:
            return len(self._root.children)
        return len(holder.children) if parent.column() == 0 else 0

    def columnCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        return len(col.COLUMNS)

    def hasChildren(self, parent: _Index = NO_PARENT) -> bool:  # noqa: N802 - Qt override
        return self.rowCount(parent) > 0

    def flags(self, index: _Index) -> Qt.ItemFlag:
        item = index.internalPointer()
        if item is None:
            return Qt.ItemFlag.NoItemFlags
        # A leaf says so, and the view need not ask hasChildren about it.
        return ROW_FLAGS if item.children else LEAF_FLAGS

    def headerData(  # noqa: N802 - Qt override
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(col.COLUMNS):
            return None
        column = col.COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tip
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _alignment(column.numeric)
        return None

    # --- cells ------------------------------------------------------------------------------
    def tensor_stats(self, item: Item) -> TensorStats | None:
        """A tensor row's own statistics; None until they arrive, and for other rows."""
        return self._stats.get(item)

    def stats_of(self, item: Item) -> TensorStats | Rollup | None:
        """The item's statistics: its own ``TensorStats`` for a tensor, the core's ``Rollup``
        of the rows below it for a container (built from theirs, and kept up to date)."""
        if item.is_tensor:
            return self._stats.get(item)
        return self.rollups.of(item)

    def details_stats(self, item: Item) -> TensorStats | Rollup | dict[str, Rollup] | None:
        """What the details panel shows: ``stats_of``, except for optimizer state, where one
        roll-up of Adam's first and second moments together would mean nothing: there, one
        roll-up per state name (``exp_avg``, ``exp_avg_sq``, ...)."""
        if item.is_tensor or not self.rollups.mixes_state_names(item):
            return self.stats_of(item)
        by_name: dict[str, Rollup] = {}
        for below in item.walk():
            node = below.node
            stats = self._stats.get(below) if below.is_tensor else None
            if node is None or stats is None or not self.rollups.counts(below):
                continue
            by_name.setdefault(node.name, Rollup(node.name)).add(stats)
        return by_name

    def cell(self, item: Item, column: int) -> dict[int, Any]:
        """The painted roles of one cell, cached until the row's statistics change.

        Painting asks for seven roles per cell; answering them from a dict keeps the number of
        Python calls per repaint low, which is what keeps the window responsive while workers
        hold the GIL (see ``TreeFilterProxy.multiData``).
        """
        row = self._cells.get(item)
        if row is None:
            row = self._cells[item] = [None] * len(col.COLUMNS)
        cell = row[column]
        if cell is None:
            cell = row[column] = self._make_cell(item, column)
        return cell

    def _make_cell(self, item: Item, column: int) -> dict[int, Any]:
        stats = self.stats_of(item)
        cell: dict[int, Any] = {
            DISPLAY: col.display(item, column, stats),
            ALIGNMENT: _alignment(col.COLUMNS[column].numeric),
        }
        foreground = self._foreground(item, column, stats)
        if foreground is not None:
            cell[FOREGROUND] = foreground
        if col.nonfinite(stats):
            cell[BACKGROUND] = self._red_background
        if column == col.NAME:
            if item.node is None:
                cell[FONT] = self._italic
            icon = mark_icon(marks_of(item, stats))
            if icon is not None:
                cell[DECORATION] = icon
        return cell

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item: Item = index.internalPointer()
        column = index.column()
        if role in PAINTED_ROLES:
            return self.cell(item, column).get(role)
        if role == SORT_ROLE:
            return col.sort_value(item, column, self.stats_of(item))
        if role == ITEM_ROLE:
            return item
        if role == KEY_ROLE:
            return item.key
        if role == Qt.ItemDataRole.ToolTipRole:  # keys and values: text, never markup
            tip = self._tooltip(item, column)
            return None if tip is None else plain_tooltip(tip)
        return None

    def multiData(  # noqa: N802
        self, index: _Index, span: QModelRoleDataSpan | QModelRoleData
    ) -> None:
        fill_span(self, index, span)

    def _foreground(self, item: Item, column: int, stats: Any) -> QBrush | None:
        if column == col.NONFINITE and col.nonfinite(stats):
            return self._brushes["red"]
        if item.is_tensor and col.is_all_zero(stats):
            return self._brushes["grey"]
        node = item.node
        if column == col.VALUE and node is not None and node.standin:
            return self._brushes["amber"]
        if column == col.DTYPE and node is not None and node.tensor is not None:
            if node.tensor.device != "cpu":
                return self._brushes["purple"]
        if column == col.VALUE and node is not None and node.shares_storage_with:
            return self._brushes["blue"]
        if column in (col.ROLE, col.VALUE) and node is not None and node.param:
            return self._brushes["grey"]
        return None

    def _tooltip(self, item: Item, column: int) -> str | None:
        if column == col.NAME:
            lines = [item.key or item.name]
            lines += marks_tooltip(marks_of(item, self.stats_of(item)), item)
            return "\n".join(lines)
        node = item.node
        if column == col.VALUE and node is not None and node.standin:
            return col.standin_tooltip(node)
        if column == col.VALUE and node is not None and node.shares_storage_with:
            return f"shares storage with {node.shares_storage_with}"
        text = col.display(item, column, self.stats_of(item))
        return text if column == col.VALUE and len(text) > 12 else None

    # --- statistics arrive ------------------------------------------------------------------
    def add_stats(self, pairs: list[tuple[Node, Any]]) -> None:
        """Store statistics for tensors and repaint their rows and the roll-ups above them.

        The roll-ups above take each batch in at once (``RowRollups``): a module row over half
        a million tensors is never summed again from scratch.
        """
        touched: dict[Item, None] = {}
        known, rollups = self._stats, self.rollups
        arrived: dict[Item, list[TensorStats]] = {}  # parent row -> first figures below it
        for node, stats in pairs:
            item = self._by_node.get(node)
            if item is None:
                continue
            replaced = item in known
            known[item] = stats
            touched[item] = None
            if replaced:
                touched.update(dict.fromkeys(rollups.replaced(item)))
            elif rollups.counts(item):
                assert item.parent is not None
                arrived.setdefault(item.parent, []).append(stats)
        touched.update(dict.fromkeys(rollups.arrived(arrived)))
        touched.pop(self._root, None)  # the invisible root has no cells
        # One signal per parent covering its changed rows: each signal costs the view a pass.
        rows_by_parent: dict[Item, list[int]] = {}
        for item in touched:
            self._cells.pop(item, None)
            assert item.parent is not None
            rows_by_parent.setdefault(item.parent, []).append(item.row)
        last = len(col.COLUMNS) - 1
        for parent, rows in rows_by_parent.items():
            first_row, last_row = min(rows), max(rows)
            self.dataChanged.emit(
                self.createIndex(first_row, col.VALUE, parent.children[first_row]),
                self.createIndex(last_row, last, parent.children[last_row]),
                CHANGED_ROLES,
            )

    def row_count_total(self) -> int:
        """Rows in the whole tree, at every depth."""
        return self._rows

    def stats_count(self) -> int:
        return len(self._stats)

    def release(self) -> None:
        """Empty the model and drop every row: rows hold the core nodes, and nodes hold their
        tensors (and through them the file's memory map). For a tab reloading or closing."""
        self.beginResetModel()
        self._root = Item("", "", None, None)
        self._rows = 0
        self._by_node.clear()
        self._stats.clear()
        self.rollups.clear()
        self._cells.clear()
        self.endResetModel()


def fill_span(
    model: CheckpointModel, index: _Index, span: QModelRoleDataSpan | QModelRoleData
) -> None:
    """Answer every role the delegate asks for in one Python call (Qt 6 ``multiData``)."""
    if not index.isValid():
        return
    if isinstance(span, QModelRoleData):  # Qt passes spans; Python may pass one role's data
        span = QModelRoleDataSpan(span)
    item: Item = index.internalPointer()
    column = index.column()
    cell = model.cell(item, column)
    # PySide's stub leaves out the span's __len__/__getitem__; it iterates at runtime.
    for role_data in span:  # type: ignore[attr-defined]
        role = role_data.role()
        value = cell.get(role)
        if value is None and role not in PAINTED_ROLES:
            value = model.data(index, role)
        # The delegate reuses its span from cell to cell: clear what this cell does not set.
        # (setData(None) would also clear it, but corrupts None's refcount in PySide 6.12.)
        if value is None:
            role_data.clearData()
        else:
            role_data.setData(value)


def _alignment(numeric: bool) -> Qt.AlignmentFlag:
    if numeric:
        return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    return Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
