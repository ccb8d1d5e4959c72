"""``TreePanel``: the filter box, expand/collapse buttons, the tree view and the marks legend."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.tree import Node
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.filter_proxy import MODES, TreeFilterProxy
from ckpt_gui.qt.models.items import Item
from ckpt_gui.qt.models.marks import MARKS
from ckpt_gui.qt.models.tree_model import CheckpointModel

# Widths that fit typical content ("[4096, 4096]", "-1.234e-05", "123.4 MB") without eliding.
COLUMN_WIDTHS = {
    col.NAME: 182,
    col.VALUE: 104,
    col.ROLE: 68,
    col.DTYPE: 60,
    col.SHAPE: 80,
    col.ELEMENTS: 64,
    col.SIZE: 64,
    col.MIN: 74,
    col.MAX: 70,
    col.MEAN: 74,
    col.STD: 64,
    col.NORM: 58,
    col.ZEROS: 58,
    col.NONFINITE: 56,
}


MAX_STANDIN_WIDTH = 300
RESORT_COLUMNS = (col.VALUE, *col.STAT_COLUMNS)
RESORT_LIMIT = 5000  # past this many rows, a stats-sorted tree re-sorts only when stats finish
AUTO_EXPAND_ROWS = 10_000  # a row with more rows than this below it does not open by itself


class TreePanel(QWidget):
    """Shows a ``CheckpointModel`` through a ``TreeFilterProxy``."""

    selection_changed = Signal(list)  # list[Item], tensors and containers alike

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter keys (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.mode_box = QComboBox()
        self.mode_box.addItems([m.capitalize() for m in MODES])
        self.mode_box.setToolTip("Substring, glob (layers.*.weight) or regular expression")
        self.expand_button = _tool_button("Expand all", self.expand_all)
        self.collapse_button = _tool_button("Collapse all", self.collapse_all)
        self.filter_error = QLabel()
        self.filter_error.setTextFormat(Qt.TextFormat.PlainText)
        self.filter_error.setStyleSheet("color: #c62828;")
        self.filter_error.setVisible(False)

        self.proxy = TreeFilterProxy(self)
        self.view = QTreeView()
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # saved order until asked
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setIconSize(QSize(4 * 11, 16))
        self.view.setIndentation(14)  # deep module paths keep room for their names
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSortIndicatorShown(True)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.mode_box)
        top.addWidget(self.expand_button)
        top.addWidget(self.collapse_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 4)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.filter_error)
        layout.addWidget(self.view, 1)
        # The stand-in entry shows only for trees that have stand-ins (the structural view).
        self.standin_legend = _legend(("standin",))
        self.standin_legend.setToolTip(
            "A row the structural view made up for a class or function the file names: "
            "a real load would import and call it"
        )
        self.standin_legend.setVisible(False)
        legends = QHBoxLayout()
        legends.setContentsMargins(0, 0, 0, 0)
        legends.setSpacing(14)
        legends.addWidget(_legend(tuple(m for m in MARKS if m != "standin")))
        legends.addWidget(self.standin_legend)
        legends.addStretch(1)
        layout.addLayout(legends)

        self.filter_edit.textChanged.connect(self._apply_filter)
        self.mode_box.currentIndexChanged.connect(self._apply_filter)
        # The view's selection model belongs to the proxy, which stays for the panel's life:
        # connected once here, not once per model (a reload would add a connection each time).
        self.view.selectionModel().selectionChanged.connect(self._emit_selection)

    # --- model ------------------------------------------------------------------------------
    def set_model(self, model: CheckpointModel) -> None:
        self.proxy.setSourceModel(model)
        for column, width in COLUMN_WIDTHS.items():
            self.view.setColumnWidth(column, width)
        # As expandToDepth(0), or (1) when there is one top-level row, but a row with more
        # rows below it than anyone reads stays closed: a view lays out every row it shows,
        # with several calls into the model each (seconds for a module of 100,000 tensors).
        root = model.root_item()
        for item in root.children:
            self._expand(model, item)
        if self.proxy.rowCount() == 1 and self.view.isExpanded(self.proxy.index(0, 0)):
            top = model.item(self.proxy.mapToSource(self.proxy.index(0, 0)))
            for item in top.children:
                self._expand(model, item)

    def _expand(self, model: CheckpointModel, item: Item) -> None:
        if 0 < len(item.children) <= AUTO_EXPAND_ROWS:
            index = self.proxy.mapFromSource(model.index_of(item))
            if index.isValid():
                self.view.expand(index)

    def take_model(self) -> CheckpointModel | None:
        """Detach the model and return it (the tree shows nothing until the next one)."""
        model = self.model()
        if model is not None:
            self.proxy.setSourceModel(None)
        return model

    def apply_stats(self, pairs: list[tuple[Node, Any]], final: bool = False) -> None:
        """Hand a batch of statistics to the model and repaint once.

        The model announces each changed row (one ``dataChanged`` per parent); a tree view
        handles every such signal with dozens of calls back into Python, so the view is spared
        them and repainted once instead. ``final``: the last batch, re-sort now.
        """
        model = self.model()
        if model is None:
            return
        self.proxy.blockSignals(True)
        try:
            model.add_stats(pairs)
        finally:
            self.proxy.blockSignals(False)
        self.view.viewport().update()
        column = self.proxy.sortColumn()
        if column in RESORT_COLUMNS and (final or model.stats_count() <= RESORT_LIMIT):
            self.proxy.sort(column, self.proxy.sortOrder())

    def show_standins(self, texts: list[str]) -> None:
        """Show the stand-in legend when ``texts`` (their Value cells) is not empty, and widen
        the Value column so the names they stand for read in full."""
        self.standin_legend.setVisible(bool(texts))
        if texts:
            metrics = self.view.fontMetrics()
            widest = max(metrics.horizontalAdvance(t) for t in texts) + 16
            width = min(max(widest, COLUMN_WIDTHS[col.VALUE]), MAX_STANDIN_WIDTH)
            self.view.setColumnWidth(col.VALUE, width)

    def model(self) -> CheckpointModel | None:
        source = self.proxy.sourceModel()
        return source if isinstance(source, CheckpointModel) else None

    # --- filter -----------------------------------------------------------------------------
    def set_filter(self, text: str, mode: str = "substring") -> None:
        self.mode_box.setCurrentIndex(MODES.index(mode))
        self.filter_edit.setText(text)
        self._apply_filter()

    def _apply_filter(self) -> None:
        mode = MODES[self.mode_box.currentIndex()]
        text = self.filter_edit.text()
        error = self.proxy.set_filter(text, mode)
        self.filter_error.setText(error)
        self.filter_error.setVisible(bool(error))
        if text.strip() and not error:
            self.view.expandAll()

    def focus_filter(self) -> None:
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

    # --- expand, select ---------------------------------------------------------------------
    def expand_all(self) -> None:
        self.view.expandAll()

    def collapse_all(self) -> None:
        self.view.collapseAll()

    def selected_items(self) -> list[Item]:
        rows = self.view.selectionModel().selectedRows(0) if self.view.selectionModel() else []
        return [self.proxy.mapToSource(i).internalPointer() for i in rows]

    def selected_keys(self) -> list[str]:
        return [item.key for item in self.selected_items()]

    def select_item(self, item: Item) -> bool:
        """Select and reveal ``item``; False when the filter hides it."""
        model = self.model()
        if model is None:
            return False
        index = self.proxy.mapFromSource(model.index_of(item))
        if not index.isValid():
            return False
        self.view.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        flags = (
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows
        )
        self.view.selectionModel().setCurrentIndex(index, flags)
        return True

    def visible_rows(self, parent: QModelIndex | None = None) -> list[str]:
        """Names of the rows under ``parent`` as the view orders them (for tests and copy)."""
        parent = parent or QModelIndex()
        return [
            self.proxy.index(r, col.NAME, parent).data() for r in range(self.proxy.rowCount(parent))
        ]

    def _emit_selection(self) -> None:
        self.selection_changed.emit(self.selected_items())


def _tool_button(text: str, slot: object) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setAutoRaise(True)
    button.clicked.connect(slot)
    return button


def _legend(marks: tuple[str, ...]) -> QLabel:
    dots = " &nbsp; ".join(
        f"<span style='color:{MARKS[m][0]}; font-size:large'>●</span> {MARKS[m][1]}" for m in marks
    )
    label = QLabel(f"<span style='color:gray'>{dots}</span>")
    label.setTextFormat(Qt.TextFormat.RichText)
    return label
