"""The compare view's results page: the summary lines and row filters above the diff table, A's
and B's histograms beside it and the per-layer chart below. It filters, counts and selects rows;
``CompareView`` feeds it the entries and the report as the diff runs."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QItemSelectionModel, QPoint, Qt, QTimer
from PySide6.QtWidgets import QAbstractItemView, QMenu, QSplitter, QVBoxLayout, QWidget

from ckpt_gui.core.diff import DiffEntry, DiffReport
from ckpt_gui.qt import jobs
from ckpt_gui.qt.compare.bars import FilterBar, SummaryLines
from ckpt_gui.qt.compare.cells import HEADERS, KEY
from ckpt_gui.qt.compare.plots import MAX_BARS, LayerChart, PairHistogramPanel
from ckpt_gui.qt.compare.table import DiffFilterProxy, fit_widths, make_table
from ckpt_gui.qt.compare.table_model import ENTRY_ROLE, DiffTableModel
from ckpt_gui.qt.header import ColumnHeader, restore_splitter
from ckpt_gui.qt.widgets.row_menu import diff_row_menu
from ckpt_gui.qt.widgets.tree_panel import FILTER_AT_ONCE_ROWS, FILTER_PAUSE_MS


class DiffResults(QWidget):
    """Summary, filters, table, histograms and chart of one comparison. Selecting a row shows
    its histograms; clicking a layer in the chart selects that layer's first tensor."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = SummaryLines()
        self.filter_bar = FilterBar()

        self.model = DiffTableModel(self)
        self.proxy = DiffFilterProxy(self)
        self.proxy.set_show_values(False)
        self.proxy.setSourceModel(self.model)
        self.filter_bar.categories_changed.connect(self.proxy.set_categories)
        self.filter_bar.values_toggled.connect(self._on_values_toggled)
        # Many rows: filter once typing pauses, not on every key (as the tree does).
        self.filter_timer = QTimer(self)
        self.filter_timer.setSingleShot(True)
        self.filter_timer.setInterval(FILTER_PAUSE_MS)
        self.filter_timer.timeout.connect(self._apply_pending_filter)
        self._pending_filter = ("", "substring")
        self.filter_bar.filter_changed.connect(self._filter_soon)
        self.table = make_table(self.proxy)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_row_menu)
        self.columns = ColumnHeader(self.table, "compare", list(HEADERS), refit=self.fit_columns)
        self.columns.restore()

        self.histograms = PairHistogramPanel()
        self.chart = LayerChart()
        self.chart.layer_clicked.connect(self._on_layer_clicked)
        # Fixed minimums, so that the splitters never jump when what the panels show changes.
        self.histograms.setMinimumSize(240, 160)
        self.chart.setMinimumHeight(120)
        self.table.setMinimumSize(300, 120)
        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.table)
        upper.addWidget(self.histograms)
        upper.setSizes([960, 380])
        upper.setChildrenCollapsible(False)
        self.upper = upper
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(self.chart)
        self.splitter.setSizes([560, 220])
        self.splitter.setChildrenCollapsible(False)
        restore_splitter(upper, "compare/upper")
        restore_splitter(self.splitter, "compare/main")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(4)
        for widget in (self.summary, self.filter_bar):
            layout.addWidget(widget)
        layout.addWidget(self.splitter, 1)

    # --- feeding ----------------------------------------------------------------------------
    def clear(self) -> None:
        """Empty the table, the chart and the histograms for a new comparison."""
        self.model.clear()
        self.chart.set_layers([])
        self.histograms.show_entry(None)
        self.update_counts()

    def add_entries(self, entries: list[DiffEntry]) -> None:
        first = self.model.rowCount() == 0
        self.model.add_entries(entries)
        if entries:
            self.update_counts()
            if first:
                self.fit_columns()

    def fit_columns(self) -> None:
        """Size the table's columns to their content (numbers and shapes never elide)."""
        self.columns.fit(fit_widths(self.table, self.model))

    def show_report(self, report: DiffReport) -> None:
        """The comparison is complete: its summary, the per-layer chart and the final order."""
        for step in self.report_steps(jobs.diff_outcome(report, MAX_BARS)):
            step()

    def report_steps(self, outcome: jobs.DiffOutcome) -> list[Callable[[], object]]:
        """``show_report`` in steps that each take a small part of a big comparison's time, for
        the view to run one per turn of the event loop."""

        def summary() -> None:
            self.summary.set_report(outcome.report, outcome.summary)
            self.update_counts()

        order: list[list[int] | None] = []

        def plan_order() -> None:
            # The final order, and the cells of the rows it brings to the top, are made on a
            # turn before the one that moves the rows and repaints them.
            order.append(self.model.sorted_order())
            if order[0] is not None:
                rows = (
                    self.table.viewport().height()
                    // self.table.verticalHeader().defaultSectionSize()
                )
                self.model.make_cells(order[0][: 2 * (rows + 1)])

        return [
            summary,
            self.chart.prepare,  # the plots are made now, not while the tab opened
            lambda: self.chart.set_layers(outcome.layers, outcome.grouped),
            *self.histograms.preparations(),
            plan_order,
            # Rows that arrived while the diff ran, in their places.
            lambda: self.model.ensure_sorted(order[0] if order else None),
            self.fit_columns,
        ]

    def update_counts(self) -> None:
        """Counts on the toggles: rows of each category, values included when they are shown."""
        values = self.filter_bar.values_button.isChecked()
        counts = self.model.counts(None if values else "tensor")
        self.filter_bar.set_counts(counts, sum(self.model.counts("value").values()))

    # --- rows -------------------------------------------------------------------------------
    def visible_keys(self) -> list[str]:
        """Keys of the rows as the table shows them (filtered and sorted)."""
        return [self.proxy.index(r, KEY).data() for r in range(self.proxy.rowCount())]

    def select_key(self, key: str) -> bool:
        """Select the row of ``key``; False when it is not shown."""
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, KEY)
            if index.data() == key:
                flags = (
                    QItemSelectionModel.SelectionFlag.ClearAndSelect
                    | QItemSelectionModel.SelectionFlag.Rows
                )
                self.table.selectionModel().setCurrentIndex(index, flags)
                self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
                return True
        return False

    def select_largest_change(self) -> DiffEntry | None:
        """Select the top row (the largest change, as sorted by default)."""
        if self.proxy.rowCount() == 0:
            return None
        index = self.proxy.index(0, KEY)
        self.select_key(index.data())
        return index.data(ENTRY_ROLE)

    def row_menu(self, entry: DiffEntry) -> QMenu:
        """The context menu of ``entry``'s row."""
        return diff_row_menu(self, entry)

    def _show_row_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid():
            menu = self.row_menu(index.data(ENTRY_ROLE))
            menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            menu.popup(self.table.viewport().mapToGlobal(pos))

    def selected_keys(self) -> list[str]:
        """Keys of the selected rows, in table order."""
        return [index.data() for index in self.table.selectionModel().selectedRows(KEY)]

    def selected_entry(self) -> DiffEntry | None:
        rows = self.table.selectionModel().selectedRows(KEY)
        return rows[0].data(ENTRY_ROLE) if rows else None

    # --- slots ------------------------------------------------------------------------------
    def _filter_soon(self, pattern: str, mode: str) -> None:
        self._pending_filter = (pattern, mode)
        if self.model.rowCount() > FILTER_AT_ONCE_ROWS:
            self.filter_timer.start()
        else:
            self._apply_pending_filter()

    def _apply_pending_filter(self) -> None:
        self.filter_timer.stop()
        self._apply_filter(*self._pending_filter)

    def _apply_filter(self, pattern: str, mode: str) -> None:
        self.filter_bar.show_error(self.proxy.set_filter(pattern, mode))

    def _on_values_toggled(self, shown: bool) -> None:
        self.proxy.set_show_values(shown)
        self.update_counts()

    def _on_selection(self, *_: object) -> None:
        entry = self.selected_entry()
        # Rows sorted or filtered move the selection without changing it: nothing to redraw.
        if entry is None or entry is not self.histograms.entry():
            self.histograms.show_entry(entry)

    def _on_layer_clicked(self, name: str) -> None:
        layer = next((x for x in self.chart.layers() if x.name == name), None)
        if layer is not None and layer.keys:
            self.select_key(layer.keys[0])
