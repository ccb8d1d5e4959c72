"""``KeyFilterProxy``: filters rows by key (substring, glob or regex). ``TreeFilterProxy``: a
tree's rows by key, keeping the parents of matching rows, sorted by raw numbers rather than by
the text shown."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QModelRoleData,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.tree_model import KEY_ROLE, SORT_ROLE, CheckpointModel, fill_span

MODES = ("substring", "glob", "regex")
ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_Index = QModelIndex | QPersistentModelIndex


class Keyed(Protocol):
    """What the filter reads from a row: a tree ``Item`` or a compare ``DiffEntry``."""

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...


class KeyFilterProxy(QSortFilterProxyModel):
    """Filters rows by key (substring, glob or regex); what a row is, and which rows a pattern
    shows, is the subclass's (``_filter_changing``, ``filterAcceptsRow``)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._pattern = ""
        self._mode = "substring"
        self._matcher: re.Pattern[str] | None = None
        self._error = ""

    def set_filter(self, pattern: str, mode: str = "substring") -> str:
        """Apply a filter; returns an error message for an invalid regex, or ``""``."""
        if mode not in MODES:
            raise ValueError(f"unknown filter mode {mode!r}")
        self._refilter(lambda: self._set_pattern(pattern.strip(), mode))
        return self._error

    def _set_pattern(self, pattern: str, mode: str) -> None:
        self._pattern, self._mode, self._error = pattern, mode, ""
        self._matcher = None
        if self._pattern:
            try:
                if mode == "regex":
                    self._matcher = re.compile(self._pattern, re.IGNORECASE)
                elif mode == "glob":
                    glob = (
                        self._pattern
                        if any(c in self._pattern for c in "*?[")
                        else f"*{self._pattern}*"
                    )
                    self._matcher = re.compile(fnmatch.translate(glob), re.IGNORECASE)
            except re.error as exc:
                self._error = f"invalid regular expression: {exc}"
                self._matcher = re.compile(r"(?!)")  # matches nothing until fixed
        self._filter_changing()

    def _refilter(self, change: Callable[[], None]) -> None:
        """Make ``change`` to what the filter shows, and have Qt ask again row by row."""
        begin = getattr(self, "beginFilterChange", None)  # Qt >= 6.9
        if begin is not None:
            begin()
        change()
        if begin is not None:
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateRowsFilter()

    def _filter_changing(self) -> None:
        """The pattern changed, and Qt is about to ask again which rows to show."""

    def pattern(self) -> str:
        return self._pattern

    def mode(self) -> str:
        return self._mode

    def matches(self, item: Keyed) -> bool:
        if not self._pattern:
            return True
        key = item.key or item.name
        if self._mode == "substring":
            needle = self._pattern.lower()
            return needle in key.lower()
        assert self._matcher is not None
        if self._mode == "glob":
            return bool(self._matcher.match(key)) or bool(self._matcher.match(item.name))
        return bool(self._matcher.search(key))


class TreeFilterProxy(KeyFilterProxy):
    """Keeps rows whose key (or name) matches, with all their parents."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._checkpoint_model: CheckpointModel | None = None
        # With a tree model and a filter: the rows shown (matches, their parents, and the rows
        # below a match). None: every row.
        self._shown: set[int] | None = None
        # Qt keeps the parents of accepted rows; a matching container keeps its children too.
        self.setRecursiveFilteringEnabled(True)
        self.setAutoAcceptChildRows(True)
        self.setDynamicSortFilter(True)

    def setSourceModel(self, model: QAbstractItemModel | None) -> None:  # noqa: N802
        # Kept in Python: painting asks for it once per cell, and each call into Qt costs.
        self._checkpoint_model = model if isinstance(model, CheckpointModel) else None
        self._shown = None
        if self._checkpoint_model is not None:
            # Rows are filtered by ``_decide`` in one pass over the tree, not by Qt's recursive
            # filtering, which calls into Python several times for every row of the tree.
            self.setRecursiveFilteringEnabled(False)
            self.setAutoAcceptChildRows(False)  # ``_decide`` shows what a match holds
            # Statistics arriving never change which rows match (the filter reads keys), so
            # there is no need to re-filter on every dataChanged; re-sorting is asked for
            # explicitly (``TreePanel.apply_stats``) when the sort column holds statistics.
            self.setDynamicSortFilter(False)
            self.setFilterRole(KEY_ROLE)
            self.setSortRole(SORT_ROLE)
        # Qt takes nullptr (TreePanel detaches the model with None); PySide's stub omits it.
        super().setSourceModel(model)  # type: ignore[arg-type]

    def _filter_changing(self) -> None:
        self._shown = self._decide() if self._checkpoint_model is not None else None

    def _decide(self) -> set[int] | None:
        """Which rows the filter shows, decided in one pass over the tree: every match, the
        rows above it (to reach it) and the rows below it (what it holds)."""
        model = self._checkpoint_model
        if not self._pattern or model is None:
            return None
        shown: set[int] = set()
        matches = self.matches
        stack = [(child, False) for child in model.root_item().children]
        while stack:
            item, below_match = stack.pop()
            if below_match or matches(item):
                for row in item.walk():
                    shown.add(id(row))
                parent = item.parent
                while parent is not None and id(parent) not in shown:
                    shown.add(id(parent))
                    parent = parent.parent
                continue
            stack.extend((child, False) for child in item.children)
        return shown

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        if not self._pattern:
            return True
        shown = self._shown
        if shown is not None:
            holder = source_parent.internalPointer()
            if holder is None:
                holder = self._checkpoint_model.root_item()  # type: ignore[union-attr]
            children = holder.children
            return 0 <= source_row < len(children) and id(children[source_row]) in shown
        model = self.sourceModel()
        index = model.index(source_row, 0, source_parent)
        if not index.isValid():
            return False
        return self.matches(index.internalPointer())

    def flags(self, index: _Index) -> Qt.ItemFlag:
        # Every row is enabled and selectable: answering here spares a source lookup per cell.
        if self._checkpoint_model is None:
            return super().flags(index)
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return ROW_FLAGS

    def multiData(  # noqa: N802
        self, index: _Index, span: QModelRoleDataSpan | QModelRoleData
    ) -> None:
        """Forward the delegate's many-roles query to the source in one call; Qt's proxy would
        ask the source model one role at a time."""
        source = self._checkpoint_model
        if index.isValid() and source is not None:
            fill_span(source, self.mapToSource(index), span)
        else:
            super().multiData(index, span)

    def lessThan(self, left: _Index, right: _Index) -> bool:  # noqa: N802 - Qt override
        model = self._checkpoint_model
        assert model is not None
        column = left.column()
        a_item, b_item = left.internalPointer(), right.internalPointer()
        a = col.sort_value(a_item, column, model.stats_of(a_item))
        b = col.sort_value(b_item, column, model.stats_of(b_item))
        # Rows without a value go last whichever way the column is sorted.
        descending = self.sortOrder() == Qt.SortOrder.DescendingOrder
        if a is None or b is None:
            if a is None and b is None:
                return a_item.row < b_item.row
            return (a is None) == descending
        if a == b:
            return a_item.row < b_item.row
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)
