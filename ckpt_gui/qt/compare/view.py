"""``CompareView``: checkpoint A against checkpoint B in one tab.

Both files open on a worker, then ``iter_diff`` runs on another and fills the table as tensors
finish: A's and B's dtype and shape side by side with the change metrics, sorted by how much each
tensor changed, with category toggles (showing counts) and the browser's key filter. Selecting a
row shows A's and B's histograms overlaid and the histogram of A − B; the chart below shows the
relative change per layer in model order. Dropping a file on the view compares A with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.diff import (
    DiffEntry,
    DiffFailed,
    DiffReport,
    DiffResult,
    KeyMatch,
    MatchFound,
    Progress,
    iter_diff,
)
from ckpt_gui.qt import workers
from ckpt_gui.qt.compare.bars import PathsBar, match_text
from ckpt_gui.qt.compare.results import DiffResults
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.formatting import format_bytes
from ckpt_gui.qt.widgets.error_view import ErrorView
from ckpt_gui.qt.workers import PROGRESS_STEPS

LOADING, COMPARING, READY = "loading", "comparing", "ready"
FAILED, CANCELLED = "failed", "cancelled"


def open_pair(a: Path, b: Path, trust: bool = False) -> tuple[Checkpoint, Checkpoint]:
    """Open both files (on a worker); A is closed again when B fails. ``trust``: ``--trust``."""
    from ckpt_gui.core.reader import open_checkpoint

    ckpt_a = open_checkpoint(a, trust=trust)
    try:
        return ckpt_a, open_checkpoint(b, trust=trust)
    except BaseException:
        ckpt_a.close()
        raise


def _close_pair(result: object) -> None:
    if isinstance(result, tuple):
        for ckpt in result:
            if isinstance(ckpt, Checkpoint):
                ckpt.close()


class CompareView(QWidget):
    """A against B. ``start()`` begins; ``compare_finished`` says all work is done (the report is
    in ``report``, or ``state`` says why not)."""

    state_changed = Signal(str)
    progress = Signal(str, int, int)  # message, done, total (total 0: nothing to count)
    compare_finished = Signal()

    def __init__(
        self,
        path_a: str | Path,
        path_b: str | Path,
        parent: QWidget | None = None,
        *,
        trust: bool = False,
    ) -> None:
        super().__init__(parent)
        self.path_a, self.path_b = Path(path_a), Path(path_b)
        self.trust = trust
        self.checkpoints: tuple[Checkpoint, Checkpoint] | None = None
        self.report: DiffReport | None = None
        self.match: str | KeyMatch = "auto"
        self.state = LOADING
        self.error_message = ""
        self._open_worker: workers.Worker | None = None
        self._diff_worker: workers.Worker | None = None
        self._generation = 0
        self._failures: list[DiffFailed] = []
        self._progress_state: tuple[str, int, int] = ("", 0, 0)
        self.progress.connect(self._remember_progress)
        self.setAcceptDrops(True)
        self._build()

    # --- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.paths_bar = PathsBar()
        self.paths_bar.swap_clicked.connect(self.swap)
        self.paths_bar.match_changed.connect(self._on_match_changed)
        self.results = results = DiffResults()
        # The results page's parts, under the names the view has always offered them by.
        self.summary, self.filter_bar = results.summary, results.filter_bar
        self.model, self.proxy, self.table = results.model, results.proxy, results.table
        self.histograms, self.chart = results.histograms, results.chart
        self.splitter = results.splitter
        self.paths_bar.match_error.connect(self.filter_bar.show_error)

        self.loading_label = QLabel()
        self.loading_label.setTextFormat(Qt.TextFormat.PlainText)  # it names the files
        self.loading_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.loading_label.setStyleSheet("color: gray; font-size: 14pt;")
        self.error_view = ErrorView()
        self.error_view.retry_button.clicked.connect(self.start)
        self.stack = QStackedWidget()
        for page in (self.loading_label, self.error_view, self.results):
            self.stack.addWidget(page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 4, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self.paths_bar)
        outer.addWidget(self.stack, 1)
        self.paths_bar.set_paths(self.path_a, self.path_b)

    # --- public -----------------------------------------------------------------------------
    def title(self) -> str:
        return f"{self.path_a.name} ↔ {self.path_b.name}"

    def is_idle(self) -> bool:
        """Nothing left to open or compare (the screenshot waits for this)."""
        return self.state in (READY, FAILED, CANCELLED)

    def panels_busy(self) -> bool:
        return self.histograms.is_busy()

    def is_busy(self) -> bool:
        return not self.is_idle()

    def progress_state(self) -> tuple[str, int, int]:
        """The last progress message with its counts, for the window's status bar."""
        return self._progress_state

    def _remember_progress(self, message: str, done: int, total: int) -> None:
        self._progress_state = (message, done, total)

    def reload(self) -> None:
        self.start()

    def select_largest_tensor(self) -> DiffEntry | None:
        """What the screenshot selects: here, the tensor that changed most."""
        return self.select_largest_change()

    def start(self) -> None:
        """Open A and B on a worker, then compare them; earlier work is abandoned."""
        self._stop_workers(wait=True)
        self._release()
        self.paths_bar.set_paths(self.path_a, self.path_b)
        self.loading_label.setText(f"Opening {self.path_a.name} and {self.path_b.name}…")
        self.stack.setCurrentWidget(self.loading_label)
        self._set_state(LOADING)
        self.progress.emit(f"Opening {self.title()}…", 0, 0)
        a, b, trust = self.path_a, self.path_b, self.trust
        worker = workers.Worker(
            lambda: workers.run_call(lambda: open_pair(a, b, trust)), _close_pair
        )
        worker.finished.connect(self._on_opened)
        worker.failed.connect(self._on_open_failed)
        self._open_worker = worker
        worker.start()

    def set_paths(self, path_a: str | Path, path_b: str | Path) -> None:
        """Compare other files (a drop, Swap, or File > Compare With…)."""
        new = {Path(path_a).resolve(), Path(path_b).resolve()}
        if new != {self.path_a.resolve(), self.path_b.resolve()}:
            self.trust = False  # --trust named the files on the command line, not these
        self.path_a, self.path_b = Path(path_a), Path(path_b)
        self.start()

    def swap(self) -> None:
        """B becomes A and A becomes B: files already open are compared again the other way
        round, without being read again."""
        if self.checkpoints is None:
            self.set_paths(self.path_b, self.path_a)
            return
        self._stop_workers(wait=True)
        self.path_a, self.path_b = self.path_b, self.path_a
        self.checkpoints = (self.checkpoints[1], self.checkpoints[0])
        self.paths_bar.set_paths(self.path_a, self.path_b)
        self._start_diff()

    def set_match(self, match: str | KeyMatch) -> None:
        """Compare again with another key matching: ``"auto"``, ``"exact"`` or a ``KeyMatch``."""
        self.match = match
        if self.checkpoints is not None:
            self._start_diff()

    def cancel(self) -> None:
        if not self.is_idle():
            self._stop_workers(wait=False)
            self.progress.emit("Comparison cancelled", 0, 0)
            self.paths_bar.set_progress(None)
            self.summary.set_headline(self.summary.headline() + " (cancelled)")
            self._set_state(CANCELLED)
            self.compare_finished.emit()

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Abort every worker of this view and wait for their threads (tab or window closing)."""
        self._stop_workers(wait=True, wait_s=wait_s)
        self.histograms.shutdown(wait_s)
        self._release()

    def visible_keys(self) -> list[str]:
        """Keys of the rows as the table shows them (filtered and sorted)."""
        return self.results.visible_keys()

    def select_key(self, key: str) -> bool:
        """Select the row of ``key``; False when it is not shown."""
        return self.results.select_key(key)

    def select_largest_change(self) -> DiffEntry | None:
        """Select the top row (the largest change, as sorted by default)."""
        return self.results.select_largest_change()

    def selected_entry(self) -> DiffEntry | None:
        return self.results.selected_entry()

    # --- drops ------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if _dropped_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = _dropped_paths(event)
        if not paths:
            return
        event.acceptProposedAction()
        if len(paths) >= 2:
            self.set_paths(paths[0], paths[1])
        else:
            self.set_paths(self.path_a, paths[0])

    # --- opening ----------------------------------------------------------------------------
    def _on_opened(self, pair: tuple[Checkpoint, Checkpoint]) -> None:
        self._open_worker = None
        self.checkpoints = pair
        self.stack.setCurrentWidget(self.results)
        self._start_diff()

    def _on_open_failed(self, exc: BaseException) -> None:
        self._open_worker = None
        line, details = error_text(exc)
        self.error_message = line
        self.error_view.set_error("Could not compare these files", line, details)
        self.stack.setCurrentWidget(self.error_view)
        self.progress.emit("", 0, 0)
        self._set_state(FAILED)
        self.compare_finished.emit()

    # --- comparing --------------------------------------------------------------------------
    def _start_diff(self) -> None:
        assert self.checkpoints is not None
        self._stop_workers(wait=True)
        self._generation += 1
        generation = self._generation
        self.report, self._failures = None, []
        self.results.clear()
        self.summary.set_headline("Comparing…")
        self.summary.set_details("")
        self.paths_bar.set_progress(0)
        self._set_state(COMPARING)
        ckpt_a, ckpt_b = self.checkpoints
        match = self.match
        worker = workers.Worker(
            lambda cancel: iter_diff(ckpt_a, ckpt_b, match=match, cancel=cancel), with_abort=True
        )
        worker.yielded.connect(lambda batch: self._on_events(generation, batch))
        worker.finished.connect(lambda report: self._on_diff_done(generation, report))
        worker.failed.connect(lambda exc: self._on_diff_failed(generation, exc))
        self._diff_worker = worker
        worker.start()

    def _on_events(self, generation: int, batch: list[Any]) -> None:
        if generation != self._generation:
            return
        entries: list[DiffEntry] = []
        progress: Progress | None = None
        for event in batch:
            if isinstance(event, DiffResult):
                entries.append(event.entry)
            elif isinstance(event, Progress):
                progress = event
            elif isinstance(event, MatchFound):
                self.summary.set_details(match_text(event.match))
            elif isinstance(event, DiffFailed):
                self._failures.append(event)
        self.results.add_entries(entries)
        if progress is not None and progress.total_bytes:
            done = int(PROGRESS_STEPS * progress.done_bytes / progress.total_bytes)
            self.paths_bar.set_progress(done)
            text = f"Comparing… {format_bytes(progress.done_bytes)} of "
            text += format_bytes(progress.total_bytes)
            self.summary.set_headline(text)
            self.progress.emit(text, done, PROGRESS_STEPS)

    def _on_diff_done(self, generation: int, report: DiffReport) -> None:
        if generation != self._generation:
            return
        self._diff_worker = None
        self.report = report
        self.paths_bar.set_progress(None)
        self.results.show_report(report)
        self.progress.emit("", 0, 0)
        self._set_state(READY)
        if self.selected_entry() is None:
            self.select_largest_change()
        self.compare_finished.emit()

    def _on_diff_failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return
        self._diff_worker = None
        line, _ = error_text(exc)
        self.paths_bar.set_progress(None)
        self.summary.set_headline(f"The comparison stopped: {line}")
        self.error_message = line
        self.progress.emit("", 0, 0)
        self._set_state(FAILED)
        self.compare_finished.emit()

    # --- key matching -----------------------------------------------------------------------
    def _on_match_changed(self, match: str | KeyMatch) -> None:
        self.filter_bar.show_error("")
        if match != self.match:
            self.set_match(match)

    # --- helpers ----------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    def _stop_workers(self, wait: bool = False, wait_s: float = 5.0) -> None:
        running = [w for w in (self._open_worker, self._diff_worker) if w is not None]
        for worker in running:
            worker.abort()
        if wait:  # a worker may be reading the files that are about to be closed
            for worker in running:
                worker.wait(wait_s)
        self._open_worker = self._diff_worker = None

    def _release(self) -> None:
        self.histograms.shutdown()
        if self.checkpoints is not None:
            _close_pair(self.checkpoints)
            self.checkpoints = None


def _dropped_paths(event: QDragEnterEvent | QDropEvent) -> list[str]:
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
