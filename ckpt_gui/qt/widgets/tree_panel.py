"""``TreePanel``: the filter box, expand/collapse buttons, the tree view and the marks legend."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
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
from ckpt_gui.qt import theme
from ckpt_gui.qt.filter_keys import clear_on_escape
from ckpt_gui.qt.header import CELL_PADDING, ColumnHeader, room, set_elide_modes, text_width
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.filter_proxy import MODES, TreeFilterProxy
from ckpt_gui.qt.models.items import Item, rows_with_depth
from ckpt_gui.qt.models.marks import MARKS
from ckpt_gui.qt.models.tree_model import CheckpointModel
from ckpt_gui.qt.widgets import tree_state
from ckpt_gui.qt.widgets.marks_legend import marks_legend
from ckpt_gui.qt.widgets.tree_expand import expand_within, hold_repaint
from ckpt_gui.qt.widgets.tree_state import ViewState

# Keys and free text may elide (the tooltip has them in full); every other column is fitted
# to its content and never elides.
ELIDE = {col.NAME: Qt.TextElideMode.ElideRight, col.VALUE: Qt.TextElideMode.ElideRight}
# The Name column fits its names, within these bounds and the room the other columns leave.
NAME_WIDTH = (110, 300)
VALUE_WIDTH = (60, 100)  # the mostly empty Value column takes no more than this
# The widest text of the columns whose texts are bounded: floats of 4 significant digits,
# sizes and counts of 4 digits; statistics columns keep it while rows fill in (no shifting).
BOUNDED = {c: "-8.888e+88" for c in col.STAT_COLUMNS if c not in (col.ZEROS, col.NONFINITE)}
BOUNDED |= {col.ZEROS: "<0.01 %", col.NONFINITE: "888.8 K"}
BOUNDED |= {col.SIZE: "888.8 MB", col.ELEMENTS: "888.8 M"}
FIT_ALL = 3_000  # trees with fewer rows are measured cell by cell; others, see BOUNDED
FIT_SAMPLE = 400  # the rows of a bigger tree measured in full (the first ones)
# Hidden until the header's menu shows them: Shape and Size say the count, and the details
# panel the role; without them every statistic fits beside the panels at 1280 px.
HIDDEN_BY_DEFAULT = (col.ROLE, col.ELEMENTS)


MAX_STANDIN_WIDTH = 300
RESORT_COLUMNS = (col.VALUE, *col.STAT_COLUMNS)
RESORT_LIMIT = 5000  # past this many rows, a stats-sorted tree re-sorts only when stats finish
FILTER_AT_ONCE_ROWS = 2_000  # trees with more rows filter once typing pauses for:
FILTER_PAUSE_MS = 150
AUTO_EXPAND_ROWS = 10_000  # a row with more rows than this below it does not open by itself


class TreePanel(QWidget):
    """Shows a ``CheckpointModel`` through a ``TreeFilterProxy``."""

    selection_changed = Signal(list)  # list[Item], tensors and containers alike

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._standins = False  # the tree shows stand-ins: its Value column may be wider
        self._fitted_hidden = False
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
        theme.style_text(self.filter_error, "red")
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
        set_elide_modes(self.view, ELIDE)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSortIndicatorShown(True)
        self.columns = ColumnHeader(
            self.view,
            "tree",
            [c.title for c in col.COLUMNS],
            hidden_by_default=HIDDEN_BY_DEFAULT,
            refit=self.fit_columns,
        )

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
        self.standin_legend = marks_legend(("standin",))
        self.standin_legend.setToolTip(
            "A row the structural view made up for a class or function the file names: "
            "a real load would import and call it"
        )
        self.standin_legend.setVisible(False)
        legends = QHBoxLayout()
        legends.setContentsMargins(0, 0, 0, 0)
        legends.setSpacing(14)
        legends.addWidget(marks_legend(tuple(m for m in MARKS if m != "standin")))
        legends.addWidget(self.standin_legend)
        legends.addStretch(1)
        layout.addLayout(legends)

        # On a big tree each key typed would re-filter every row: the filter waits until the
        # typing pauses. A small tree filters at once.
        self.filter_timer = QTimer(self)
        self.filter_timer.setSingleShot(True)
        self.filter_timer.setInterval(FILTER_PAUSE_MS)
        self.filter_timer.timeout.connect(self._apply_filter)
        self.filter_edit.textChanged.connect(self._filter_soon)
        clear_on_escape(self, self.filter_edit)
        self.mode_box.currentIndexChanged.connect(self._apply_filter)
        # The view's selection model belongs to the proxy, which stays for the panel's life:
        # connected once here, not once per model (a reload would add a connection each time).
        self.view.selectionModel().selectionChanged.connect(self._emit_selection)

    # --- model ------------------------------------------------------------------------------
    def set_model(self, model: CheckpointModel) -> None:
        self.proxy.setSourceModel(model)
        self.columns.restore()
        if self.view.isVisible():
            self.fit_columns()
        else:  # a tab given its model before it shows: fitted once it has its width
            self._fitted_hidden = True
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

    def apply_stats(
        self, pairs: list[tuple[Node, Any]], final: bool = False, repaint: bool = True
    ) -> None:
        """Hand a batch of statistics to the model and repaint once (``repaint``: now; else
        with the batch that follows).

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
        if repaint or final:
            self.view.viewport().update()
        column = self.proxy.sortColumn()
        if column in RESORT_COLUMNS and (final or model.stats_count() <= RESORT_LIMIT):
            self.proxy.sort(column, self.proxy.sortOrder())
        if final:
            self.fit_columns()

    def fit_columns(self) -> None:
        """Size every column to its content: numbers, shapes and dtypes in full; names and
        values within bounds (they elide, with the full text in the tooltip)."""
        model = self.model()
        if model is None:
            return
        self._fitted_hidden = not self.view.isVisible()  # see showEvent
        # A tree of a few thousand rows is measured cell by cell. Measuring every cell of a
        # big tree would stall the window (float formatting alone takes seconds for 100,000
        # rows): columns whose texts have a bounded width (floats of 4 digits, sizes, counts)
        # get that bound, the first rows are measured for the rest, and dtypes, shapes and
        # integer statistics, which have no bound, on every tensor.
        rows = rows_with_depth(model.root_item(), FIT_ALL)
        small = len(rows) < FIT_ALL
        sample = rows if small else rows[:FIT_SAMPLE]
        every = (
            [it for it, _ in rows if it.is_tensor]
            if small
            else [it for it in model.root_item().walk() if it.is_tensor]
        )
        integers = [it for it in every if it.dtype.startswith(("int", "uint", "bool"))]
        has_stats = model.stats_count() > 0
        widths: dict[int, int] = {}
        for column in range(len(col.COLUMNS)):
            if column == col.NAME:
                continue
            texts: list[str] = []
            if column in BOUNDED and not (small and has_stats):
                texts.append(BOUNDED[column])
            if column == col.DTYPE:
                texts += {col.dtype_text(it) for it in every}
            elif column == col.SHAPE:  # each distinct shape once
                shapes = {it.node.tensor.shape: it for it in every if it.node and it.node.tensor}
                texts += [col.display(it, column, None) for it in shapes.values()]
            if column in col.STAT_COLUMNS and not small:  # floats are bounded, integers not
                measured = integers if has_stats else []
            else:
                measured = [it for it, _ in sample]
            texts += [col.display(it, column, model.stats_of(it)) for it in measured]
            widths[column] = max(text_width(self.view, texts), self.columns.title_width(column))
        value = widths[col.VALUE]  # what the values need in full
        low, high = VALUE_WIDTH
        if self._standins:  # the names of what a real load would call read in full
            high = MAX_STANDIN_WIDTH
        widths[col.VALUE] = min(max(value, low), high)
        header = self.view.header()
        others = sum(w for c, w in widths.items() if not header.isSectionHidden(c))
        space = room(self.view) - others
        low, high = NAME_WIDTH
        widths[col.NAME] = max(low, min(self._name_width(rows), space, high))
        # Room left over (a wide window) goes to the values, up to what they need.
        spare = space - widths[col.NAME]
        if spare > 0 and value > widths[col.VALUE]:
            widths[col.VALUE] = min(value, widths[col.VALUE] + spare)
        self.columns.fit(widths)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._fitted_hidden:  # now with its width, not when the statistics come (a repaint)
            self.fit_columns()

    def _name_width(self, rows: list[tuple[Item, int]]) -> int:
        """Names are indented by depth and may carry marks: the width of the widest row."""
        indent = self.view.indentation()
        metrics = self.view.fontMetrics()
        # The longest names (counting the indentation as characters) are the ones measured.
        longest = sorted(rows, key=lambda r: len(r[0].name) + 2 * r[1], reverse=True)[:24]
        widest = max(
            (metrics.horizontalAdvance(it.name) + indent * (depth + 1) for it, depth in longest),
            default=0,
        )
        return widest + self.view.iconSize().width() + 4 + CELL_PADDING

    def show_standins(self, texts: list[str]) -> None:
        """Show the stand-in legend when ``texts`` (their Value cells) is not empty, and widen
        the Value column so the names they stand for read in full."""
        self.standin_legend.setVisible(bool(texts))
        self._standins = bool(texts)
        if texts:
            self.fit_columns()

    def model(self) -> CheckpointModel | None:
        source = self.proxy.sourceModel()
        return source if isinstance(source, CheckpointModel) else None

    # --- filter -----------------------------------------------------------------------------
    def set_filter(self, text: str, mode: str = "substring") -> None:
        self.mode_box.setCurrentIndex(MODES.index(mode))
        self.filter_edit.setText(text)
        self._apply_filter()

    def _filter_waits(self) -> bool:
        """A big tree: its filter waits for typing to pause."""
        model = self.model()
        return model is not None and model.row_count_total() > FILTER_AT_ONCE_ROWS

    def _filter_soon(self) -> None:
        if self._filter_waits():
            self.filter_timer.start()
        else:
            self._apply_filter()

    def _apply_filter(self) -> None:
        self.filter_timer.stop()
        mode = MODES[self.mode_box.currentIndex()]
        text = self.filter_edit.text()
        model = self.model()
        if model is not None and self._filter_waits():  # painted on turns of their own
            hold_repaint(self.view, model)
        if text.strip():
            # Closed first, the rows it hides go fast (not from under all the last one opened).
            self.view.collapseAll()
        error = self.proxy.set_filter(text, mode)
        self.filter_error.setText(error)
        self.filter_error.setVisible(bool(error))
        if text.strip() and not error:
            expand_within(self.view)

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

    # --- state kept over a reload ----------------------------------------------------------
    def view_state(self) -> ViewState:
        """Selection, open rows (by key) and scroll position, to put back after a reload."""
        return tree_state.view_state(self.view, self.proxy, self.model(), self.selected_items())

    def restore_view_state(self, state: ViewState) -> None:
        """Open, select and scroll as ``state`` says, for the rows that still exist."""
        tree_state.restore_view_state(self.view, self.proxy, self.model(), state)

    def _emit_selection(self) -> None:
        self.selection_changed.emit(self.selected_items())


def _tool_button(text: str, slot: object) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setAutoRaise(True)
    button.clicked.connect(slot)
    return button
