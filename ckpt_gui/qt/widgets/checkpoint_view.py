"""``CheckpointView``: one tab. Opens a file on a worker, shows the tree as soon as the structure
is read, then fills in statistics row by row. A banner says when the file was read in the
structural view (or trusted); the scan report and the trust dialog open from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.memory import return_freed_memory, thaw_heap
from ckpt_gui.core.remote.location import as_location
from ckpt_gui.qt import jobs, theme, workers
from ckpt_gui.qt.adapter import AdapterPanel
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.header import restore_splitter
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.items import Item
from ckpt_gui.qt.models.tree_model import CheckpointModel
from ckpt_gui.qt.page import Page
from ckpt_gui.qt.remote_download import Rate
from ckpt_gui.qt.widgets.adapter_tabs import AdapterTabs
from ckpt_gui.qt.widgets.changed_bar import ChangedBar, FileWatch
from ckpt_gui.qt.widgets.details import DetailsPanel
from ckpt_gui.qt.widgets.error_view import ErrorView
from ckpt_gui.qt.widgets.histogram import HistogramPanel
from ckpt_gui.qt.widgets.remote_actions import RemoteActions
from ckpt_gui.qt.widgets.safety_actions import SafetyActions
from ckpt_gui.qt.widgets.safety_banner import SafetyBanner
from ckpt_gui.qt.widgets.scan_dialog import ScanReportDialog
from ckpt_gui.qt.widgets.stats_sweep import FIRST_PAINT_MS, StatsSweep
from ckpt_gui.qt.widgets.summary_bar import SummaryBar
from ckpt_gui.qt.widgets.tab_states import CANCELLED, FAILED, LOADING, READY, STATS
from ckpt_gui.qt.widgets.tree_panel import TreePanel
from ckpt_gui.qt.widgets.tree_row_actions import TreeRowActions
from ckpt_gui.qt.widgets.tree_state import ViewState
from ckpt_gui.qt.widgets.trust_dialog import TrustDialog
from ckpt_gui.qt.widgets.values import ValuesPanel

SIDE_MINIMUM = (200, 120)  # the details and plot panels beside the tree (width, height)
TREE_MINIMUM_WIDTH = 300


class CheckpointView(TreeRowActions, SafetyActions, AdapterTabs, StatsSweep, RemoteActions, Page):
    """Summary bar, tree and the panels beside it for one checkpoint (its rows' menu:
    ``TreeRowActions``; the scan report and trust dialog: ``SafetyActions``; a LoRA adapter's
    tabs: ``AdapterTabs``; the statistics sweep: ``StatsSweep``)."""

    load_failed = Signal(str)
    stats_finished = Signal()

    def __init__(
        self,
        path: str | Path,
        parent: QWidget | None = None,
        *,
        trust: bool = False,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        """``trust=True`` (``--trust``, or the trust dialog accepted) allows a real load.
        ``prepare``: run on the worker before the first open (writing the demo)."""
        super().__init__(parent)
        self.path = as_location(path)
        self._prepare = prepare
        self.trust = trust
        self.scan_dialog: ScanReportDialog | None = None
        self.trust_dialog: TrustDialog | None = None
        self.checkpoint: Checkpoint | None = None
        self.model: CheckpointModel | None = None
        self.state = LOADING
        self.error_message = ""
        self.trust_failure = ""  # see SafetyActions
        self._trust_retry = False
        self._work = workers.WorkerSlot()  # opening the file, then its statistics
        self._stats_failures = 0
        self._stats_queue: list[tuple[Any, Any]] = []  # see StatsSweep
        self._finishing: str | None = None
        self._asked: set[int] = set()  # see RemoteActions
        self.fetch_rate = Rate()  # a remote tab's statistics: how fast their bytes arrive
        self._frozen_heap = False  # this tab's big tree is kept out of the collector's passes
        self.adapter_panel: AdapterPanel | None = None  # a LoRA adapter's Adapter tab
        self.content_tabs: QTabWidget | None = None  # Adapter | Tensors, for an adapter

        self.changed_bar = ChangedBar()
        self.changed_bar.reload_requested.connect(self.reload)
        self.file_watch = FileWatch(self)
        self.file_watch.changed.connect(self._on_file_changed)
        self._kept: ViewState | None = None  # what a reload puts back: selection, scroll
        self.banner = SafetyBanner()
        self.banner.scan_requested.connect(self.show_scan_report)
        self.banner.trust_requested.connect(self.ask_trust)
        self.summary = SummaryBar()
        self.tree = TreePanel()
        self.details = DetailsPanel()
        self.histogram = HistogramPanel()
        self.values = ValuesPanel()
        self.plots = QTabWidget()
        self.plots.addTab(self.histogram, "Histogram")
        self.plots.addTab(self.values, "Values")
        # Fixed minimum sizes: the panels' own minimum sizes change with what they show (a heat
        # map's colour bar, a long value), and the splitters would jump each time they did.
        for panel in (self.details, self.plots):
            panel.setMinimumSize(SIDE_MINIMUM[0], SIDE_MINIMUM[1])
        self.tree.setMinimumWidth(TREE_MINIMUM_WIDTH)
        self.side = QSplitter(Qt.Orientation.Vertical)
        self.side.addWidget(self.details)
        self.side.addWidget(self.plots)
        self.side.setStretchFactor(0, 2)
        self.side.setStretchFactor(1, 3)
        self.side.setChildrenCollapsible(False)
        self._sized = False
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.tree)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(0)
        content_layout.addWidget(self.changed_bar)
        content_layout.addWidget(self.banner)
        content_layout.addWidget(self.summary)
        content_layout.addWidget(self.splitter, 1)

        self.loading_label = QLabel()
        self.loading_label.setTextFormat(Qt.TextFormat.PlainText)  # it names the file
        self.loading_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        theme.style_secondary(self.loading_label, "font-size: 14pt;")
        self.error_view = ErrorView()
        self.error_view.retry_button.clicked.connect(self.reload)
        self.error_view.action_button.clicked.connect(self.download_and_open)
        self.stack = QStackedWidget()
        for page in (self.loading_label, self.error_view, content):
            self.stack.addWidget(page)
        self._content = content
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.tree.selection_changed.connect(self._on_selection)
        self.tree.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.view.customContextMenuRequested.connect(self._show_row_menu)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._sized and self.width() > 200:
            self._sized = True
            # The sizes the user left the splitters at last time, or most of the width for the
            # tree and its statistics columns and the rest for the panels.
            if not restore_splitter(self.splitter, "browser/main"):
                width = self.width()
                tree = max(int(width * 0.74), width - 420)
                self.splitter.setSizes([tree, width - tree])
            if not restore_splitter(self.side, "browser/side"):
                height = self.height()
                self.side.setSizes([int(height * 0.42), height - int(height * 0.42)])

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    # --- public -----------------------------------------------------------------------------
    def title(self) -> str:
        return self.name_of(self.path)

    def tooltip(self) -> str:
        return str(self.path)

    def source(self) -> Path:
        return self.path

    def is_idle(self) -> bool:
        """Nothing left to load or compute (the screenshot waits for this)."""
        return self.state in (FAILED, READY, CANCELLED)

    def panels_busy(self) -> bool:
        """The histogram or values panel is still computing for the selection."""
        adapter = self.adapter_panel is not None and self.adapter_panel.is_busy()
        return self.histogram.is_busy() or self.values.is_busy() or adapter

    def start(self) -> None:
        """Open the file on a worker; the window keeps painting meanwhile. A tab that showed
        the file before gets its selection, open rows and scroll position back."""
        self._work.abort()
        if self.model is not None:
            self._kept = self.tree.view_state()
        self.changed_bar.hide()
        self._release()
        self.loading_label.setText(f"Opening {self.title()}…")
        self.stack.setCurrentWidget(self.loading_label)
        self._set_state(LOADING)
        self._report(f"Opening {self.title()}…", 0, 0)
        path, trust, prepare = self.path, self.trust, self._prepare
        if prepare is not None:
            self.loading_label.setText(f"Preparing {self.title()}…")

        def open_file() -> Any:
            if prepare is not None:
                prepare()
            return jobs.open_with_rows(path, trust)

        self._work.call(
            open_file,
            on_finish=self._on_loaded,
            on_error=self._on_load_failed,
            discard=jobs.close_with_rows,
        )

    def reload(self) -> None:
        self.trust_failure = ""
        self.start()

    def cancel(self) -> None:
        """Stop what is running: an abandoned open shows as cancelled, statistics stop filling."""
        if self.state == LOADING:
            self._work.abort()
            self.error_message = "Opening was cancelled."
            self.error_view.set_error(f"{self.title()} was not opened", self.error_message)
            self.stack.setCurrentWidget(self.error_view)
            self._set_state(CANCELLED)
        elif self.state == STATS:
            self._work.abort()
            self._report("Statistics cancelled", 0, 0)
            self._set_state(READY)

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Abort every worker of this tab and wait for their threads (tab or window closing)."""
        self.file_watch.stop()
        self._work.shutdown(wait_s)
        self.histogram.shutdown(wait_s)
        self.values.shutdown(wait_s)
        if self.scan_dialog is not None:
            self.scan_dialog.shutdown(wait_s)
        if self.adapter_panel is not None:
            self.adapter_panel.release(wait_s)  # and its base model
        self._release()

    def copy_keys(self) -> list[str]:
        return self.tree.selected_keys()

    def copy_text(self) -> str:
        """What has focus: selected text in the details panel, the selected cells of the
        values table (tab-separated, as spreadsheets paste them), else the selected keys."""
        focus = QApplication.focusWidget()
        details = self.details.browser
        if focus is not None and (focus is details or details.isAncestorOf(focus)):
            selected = details.textCursor().selectedText().replace("\u2029", "\n")
            return selected or self.details.text()
        table = self.values.table
        if focus is not None and (focus is table or table.isAncestorOf(focus)):
            return self.values.selected_cells_text()
        adapter = self.adapter_panel
        if focus is not None and adapter is not None and adapter.isAncestorOf(focus):
            return adapter.copy_text()  # the adapter table's selected rows
        return super().copy_text()

    def focus_filter(self) -> None:
        self.tree.focus_filter()

    def expand_all(self) -> None:
        self.tree.expand_all()

    def collapse_all(self) -> None:
        self.tree.collapse_all()

    def select_largest_tensor(self) -> Item | None:
        if self.model is None:
            return None
        tensors = [it for it in self.model.root_item().walk() if it.is_tensor]
        if not tensors:
            return None
        largest = max(tensors, key=lambda it: it.nbytes)
        self.tree.select_item(largest)
        return largest

    # --- loading ----------------------------------------------------------------------------
    def _on_loaded(self, result: tuple[Checkpoint, Item, bool]) -> None:
        self._prepare = None  # written: a reload reads it again, no more
        self.checkpoint, root, self._frozen_heap = result
        self.model = CheckpointModel(root, self)
        self.tree.set_model(self.model)
        self._trust_retry = False
        self.summary.set_checkpoint(self.checkpoint)
        self.banner.set_checkpoint(self.checkpoint, self.trust_failure)
        if self.checkpoint.view == "structural":
            self.tree.show_standins([col.standin_text(n) for n in _nodes(root) if n.standin])
        else:
            self.tree.show_standins([])
        self.stack.setCurrentWidget(self._content)
        if self.checkpoint.kind == "lora-adapter":
            self._show_adapter(self.checkpoint)
        self.details.show_item(None, None)
        if not self.remote():  # a remote file has no disk here to watch
            self.file_watch.watch(self.path)
        if self._kept is not None:
            self.tree.restore_view_state(self._kept)
            self._kept = None
        self._set_state(STATS)
        # Let the tree paint before the statistics workers compete with it for the CPU.
        QTimer.singleShot(FIRST_PAINT_MS, self, self._start_stats_if_current)
        self.loaded.emit()

    def _on_load_failed(self, exc: BaseException) -> None:
        line, details = error_text(exc)
        if self._trust_retry:  # the file opened before: go back to that view, and say why
            self._trust_retry, self.trust, self.trust_failure = False, False, line
            self.start()
            return
        self.error_message = line
        whole = self.remote() and ("needs the whole file" in line or "download it" in line)
        action = "Download and Open" if whole else None
        self.error_view.set_error(f"Could not open {self.title()}", line, details, action)
        self.stack.setCurrentWidget(self.error_view)
        self._set_state(FAILED)
        self._report("", 0, 0)
        self.load_failed.emit(line)

    def _on_file_changed(self) -> None:
        if self.state in (READY, STATS):
            self.changed_bar.show()

    # --- selection --------------------------------------------------------------------------
    def _on_selection(self, items: list[Item]) -> None:
        if self.model is None:
            return
        self.stats_when_looked_at(items)
        current = items[0] if items else None
        self.details.show_item(current, self.model.details_stats(current) if current else None)
        tensors = [it.node for it in items if it.is_tensor and it.node is not None]
        stats = {
            it.node: self.model.tensor_stats(it)
            for it in items
            if it.is_tensor and it.node is not None
        }
        self.histogram.show_tensors(tensors, stats)
        self.values.show_tensor(tensors[0] if len(tensors) == 1 else None)

    # --- helpers ----------------------------------------------------------------------------
    def _release(self) -> None:
        """Drop everything that refers to the checkpoint, so that its memory map goes now (a
        reload, a closed tab), not when the window closes: the panels' nodes, the model's rows
        (each holds its core node, each node its tensor), and the checkpoint itself."""
        self.histogram.clear()
        self.values.clear()
        self.details.show_item(None, None)
        self._stats_queue, self._finishing = [], None  # their nodes hold the tensors too
        if self.adapter_panel is not None:
            self.adapter_panel.release(keep_base=True)  # a reload shows it with the same base
        model = self.tree.take_model()
        if model is not None:
            model.release()
            model.deleteLater()  # a child of this view: it would otherwise live as long
        self.model = None
        if self.checkpoint is not None:
            self.checkpoint.close()
            self.checkpoint = None
            if self._frozen_heap:
                self._frozen_heap = False
                thaw_heap()  # its tree's cycles are collected now
            return_freed_memory()


def _nodes(root: Item) -> list[Any]:
    """The core nodes of every visible row (not the invisible root's)."""
    return [it.node for it in root.walk() if it.node is not None and it is not root]
