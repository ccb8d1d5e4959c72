"""``RunView``: a training run in one tab. The checkpoints are ordered and followed tensor by
tensor on a worker (``core.run.iter_trajectory``, cached, cancellable); the table fills as tensors
finish, with sparklines across the run and flags (frozen, NaN/Inf, exploding, vanishing); below, a
heat map of the chosen figure (click a cell: compare those two checkpoints on that tensor) and the
values the checkpoints hold (loss, lr, ...) and the optimizer state's norms."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.run import (
    Progress,
    RunCheckpoint,
    RunOpened,
    TensorTrajectory,
    Trajectory,
    TrajectoryFailed,
    TrajectoryResult,
    iter_trajectory,
)
from ckpt_gui.qt import theme, workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.filter_keys import clear_on_escape
from ckpt_gui.qt.formatting import format_bytes
from ckpt_gui.qt.page import Page
from ckpt_gui.qt.run.heatmap import HeatMap
from ckpt_gui.qt.run.metrics import METRICS, pair_for_cell
from ckpt_gui.qt.run.scalars import ScalarsPanel
from ckpt_gui.qt.run.sparkline import SparklineDelegate
from ckpt_gui.qt.run.table_model import (
    COLUMNS,
    FINAL,
    FLAGS,
    KEY,
    LARGEST,
    SHAPE,
    SORT_ROLE,
    SPARKS,
    RunTableModel,
)
from ckpt_gui.qt.widgets.error_view import ErrorView
from ckpt_gui.qt.workers import PROGRESS_STEPS

METRIC_SPARKS = ("norm", "rel_change_from_first", "rel_update", "update_cosine")
LOADING, MEASURING, READY, FAILED, CANCELLED = (
    "loading",
    "measuring",
    "ready",
    "failed",
    "cancelled",
)
ORDER_WORDS = {
    "step": "by the step stored in each file",
    "epoch": "by the epoch stored in each file",
    "name": "by the numbers in the file names",
    "mtime": "by modification time (no step, epoch or number in the names)",
}


class RunView(Page):
    """The run of ``paths`` (a folder, or several checkpoints). ``run_finished`` says all work
    is done (the result is in ``run``, or ``state`` says why not)."""

    run_finished = Signal()

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        parent: QWidget | None = None,
        *,
        trust: bool = False,
    ) -> None:
        super().__init__(parent)
        self.run_paths = [Path(p) for p in paths]
        self.trust = trust
        self.run: Trajectory | None = None
        self.checkpoints: list[RunCheckpoint] = []
        self.order_by = ""
        self.failures: list[TrajectoryFailed] = []
        self.error_message = ""
        self.state = LOADING
        self._work = workers.WorkerSlot()
        self._build()

    # --- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)  # it names files
        self.summary.setWordWrap(True)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter keys (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.metric_box = QComboBox()
        for name, (title, _) in METRICS.items():
            self.metric_box.addItem(f"Heat map: {title}", name)
        self.metric_box.setCurrentIndex(list(METRICS).index("rel_update"))
        bar = QHBoxLayout()
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(self.metric_box)

        self.model = RunTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(COLUMNS.index(KEY))
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)  # keys: the end says most
        self._sparks = SparklineDelegate(self.table)
        header = self.table.horizontalHeader()
        for name in SPARKS:
            self.table.setItemDelegateForColumn(COLUMNS.index(name), self._sparks)
            header.setSectionResizeMode(COLUMNS.index(name), QHeaderView.ResizeMode.Fixed)
            title = str(self.model.headerData(COLUMNS.index(name), Qt.Orientation.Horizontal))
            fits = header.fontMetrics().horizontalAdvance(title) + 24  # titles are never cut
            header.resizeSection(
                COLUMNS.index(name), max(110 if name in METRIC_SPARKS else 80, fits)
            )
        header.setSectionResizeMode(COLUMNS.index(KEY), QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COLUMNS.index(KEY), 300)
        for name in (SHAPE, FLAGS, FINAL, LARGEST):  # numbers and titles are never cut
            header.setSectionResizeMode(
                COLUMNS.index(name), QHeaderView.ResizeMode.ResizeToContents
            )
        header.setStretchLastSection(True)

        self.heatmap = HeatMap()
        self.scalars = ScalarsPanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.heatmap, "Heat map")
        self.tabs.addTab(self.scalars, "Values and optimizer")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        body = QWidget()
        inner = QVBoxLayout(body)
        inner.setContentsMargins(6, 6, 6, 0)
        inner.addWidget(self.summary)
        inner.addLayout(bar)
        inner.addWidget(splitter, 1)

        self.loading_label = QLabel()
        self.loading_label.setTextFormat(Qt.TextFormat.PlainText)
        self.loading_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        theme.style_secondary(self.loading_label, "font-size: 14pt;")
        self.error_view = ErrorView()
        self.error_view.retry_button.clicked.connect(self.start)
        self.stack = QStackedWidget()
        for widget in (self.loading_label, self.error_view, body):
            self.stack.addWidget(widget)
        self.body = body
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

        self.filter_edit.textChanged.connect(self._filter)
        clear_on_escape(self, self.filter_edit)
        self.metric_box.currentIndexChanged.connect(lambda _: self._draw_heatmap())
        self.heatmap.cell_clicked.connect(self._compare_cell)
        self.proxy.layoutChanged.connect(self._redraw)  # sorted: the heat map follows the rows

    # --- the page contract ------------------------------------------------------------------
    def title(self) -> str:
        return f"Run: {self._run_name()}"

    def tooltip(self) -> str:
        return "Training run:\n" + "\n".join(str(p) for p in self.run_paths)

    def paths(self) -> list[Path]:
        return list(self.run_paths)

    def is_idle(self) -> bool:
        return self.state in (READY, FAILED, CANCELLED)

    def start(self) -> None:
        """Follow the run on a worker; earlier work is abandoned."""
        self._work.abort()
        self.run, self.failures, self.checkpoints = None, [], []
        self.model.set_checkpoints([])
        self.loading_label.setText(f"Opening the run {self._run_name()}…")
        self.stack.setCurrentWidget(self.loading_label)
        self._set_state(LOADING)
        self._report(f"Opening {self.title()}…", 0, 0)
        paths, trust = list(self.run_paths), self.trust
        self._work.start(
            lambda cancel: iter_trajectory(paths, trust=trust, cancel=cancel),
            on_yield=self._on_events,
            on_finish=self._on_done,
            on_error=self._on_failed,
            with_abort=True,
        )

    def cancel(self) -> None:
        if not self.is_idle():
            self._work.abort()
            self._report("Run cancelled", 0, 0)
            self.summary.setText(self.summary.text() + " (cancelled)")
            self._set_state(CANCELLED)
            self.run_finished.emit()

    def shutdown(self, wait_s: float = 5.0) -> None:
        self._work.shutdown(wait_s)

    def copy_keys(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        keys = []
        for row in rows:
            t = self.model.tensor_at(self.proxy.mapToSource(self.proxy.index(row, 0)).row())
            if t is not None:
                keys.append(t.key)
        return keys

    def focus_filter(self) -> None:
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

    def select_largest_tensor(self) -> TensorTrajectory | None:
        """The tensor that moved most from the first checkpoint, selected and scrolled to."""
        if not self.model.tensors:
            return None
        self.table.sortByColumn(COLUMNS.index(FINAL), Qt.SortOrder.DescendingOrder)
        self.table.selectRow(0)
        return self.model.tensor_at(self.proxy.mapToSource(self.proxy.index(0, 0)).row())

    # --- what the run found -----------------------------------------------------------------
    def visible_tensors(self) -> list[TensorTrajectory]:
        """The tensors as the table shows them (filtered and sorted)."""
        out = []
        for row in range(self.proxy.rowCount()):
            t = self.model.tensor_at(self.proxy.mapToSource(self.proxy.index(row, 0)).row())
            if t is not None:
                out.append(t)
        return out

    def checkpoint_names(self) -> list[str]:
        return [self.name_of(c.path) for c in self.checkpoints]

    # --- worker events ----------------------------------------------------------------------
    def _on_events(self, batch: list[Any]) -> None:
        found: list[TensorTrajectory] = []
        progress: Progress | None = None
        for event in batch:
            if isinstance(event, RunOpened):
                self._on_opened(event)
            elif isinstance(event, TrajectoryResult):
                found.append(event.tensor)
            elif isinstance(event, TrajectoryFailed):
                self.failures.append(event)
            elif isinstance(event, Progress):
                progress = event
        self.model.add(found)
        if progress is not None and progress.total_bytes:
            done = int(PROGRESS_STEPS * progress.done_bytes / progress.total_bytes)
            text = f"Measuring the run… {format_bytes(progress.done_bytes)} of "
            text += format_bytes(progress.total_bytes)
            self._report(text, done, PROGRESS_STEPS)

    def _on_opened(self, event: RunOpened) -> None:
        self.checkpoints, self.order_by = list(event.checkpoints), event.order_by
        self.model.set_checkpoints(self.checkpoints)
        self.stack.setCurrentWidget(self.body)
        self._set_state(MEASURING)
        self.summary.setText(self._summary_text())
        self.loaded.emit()

    def _on_done(self, run: Trajectory) -> None:
        self.run = run
        self.failures = list(run.failed)
        self.summary.setText(self._summary_text())
        self._draw_heatmap()
        self.scalars.show_run(run, self.checkpoint_names())
        self._report("", 0, 0)
        self._set_state(READY)
        self.run_finished.emit()

    def _on_failed(self, exc: BaseException) -> None:
        line, details = error_text(exc)
        self.error_message = line
        self.error_view.set_error("Could not open this run", line, details)
        self.stack.setCurrentWidget(self.error_view)
        self._report("", 0, 0)
        self._set_state(FAILED)
        self.run_finished.emit()

    # --- views of it ------------------------------------------------------------------------
    def _summary_text(self) -> str:
        n = len(self.checkpoints)
        parts = [f"{n} checkpoints, ordered {ORDER_WORDS.get(self.order_by, self.order_by)}"]
        if self.checkpoints:
            parts.append(f"{self.checkpoints[0].name} … {self.checkpoints[-1].name}")
        tensors = self.model.tensors
        for flag, words in (
            ("frozen", "frozen"),
            ("nonfinite", "with NaN/Inf"),
            ("exploding", "exploding"),
            ("vanishing", "vanishing"),
        ):
            count = sum(flag in t.flags for t in tensors)
            if count:
                parts.append(f"{count} {words}")
        if self.failures:
            parts.append(f"{len(self.failures)} could not be read")
        return " · ".join(parts)

    def _filter(self, text: str) -> None:
        text = text.strip()
        if any(c in text for c in "*?["):
            self.proxy.setFilterWildcard(text)
        else:
            self.proxy.setFilterFixedString(text)
        self._redraw()

    def _redraw(self) -> None:
        if self.run is not None:
            self._draw_heatmap()

    def _draw_heatmap(self) -> None:
        metric = self.metric_box.currentData()
        self.heatmap.show_run(self.visible_tensors(), self.checkpoint_names(), metric)

    def _compare_cell(self, row: int, col: int) -> None:
        tensors = self.heatmap.tensors
        if not 0 <= row < len(tensors) or len(self.checkpoints) < 2:
            return
        t = tensors[row]
        a, b = pair_for_cell(self.heatmap.figure, col, len(self.checkpoints))
        key = t.keys[a] or t.key
        self.compare_requested.emit(self.checkpoints[a].path, self.checkpoints[b].path, key)

    def _run_name(self) -> str:
        if len(self.run_paths) == 1:
            return self.name_of(self.run_paths[0])
        first = self.run_paths[0]
        parent = first.parent.name
        return f"{parent}/ ({len(self.run_paths)} files)" if parent else f"{first.name} …"
