"""``CompareView``: checkpoint A against checkpoint B in one tab.

Both files open on a worker, then ``iter_diff`` runs on another and fills the table as tensors
finish: A's and B's dtype and shape side by side with the change metrics, sorted by how much each
tensor changed, with category toggles (showing counts) and the browser's key filter. Selecting a
row shows A's and B's histograms overlaid and the histogram of A − B; the chart below shows the
relative change per layer in model order. Dropping a file on the view compares A with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
)
from ckpt_gui.core.remote.location import as_location
from ckpt_gui.qt import jobs, theme, workers
from ckpt_gui.qt.compare.bars import PathsBar, match_text
from ckpt_gui.qt.compare.plots import MAX_BARS
from ckpt_gui.qt.compare.results import DiffResults
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.formatting import format_bytes
from ckpt_gui.qt.gui_turns import after_paint
from ckpt_gui.qt.page import Page
from ckpt_gui.qt.widgets.error_view import ErrorView
from ckpt_gui.qt.workers import PROGRESS_STEPS

LOADING, COMPARING, READY = "loading", "comparing", "ready"
FAILED, CANCELLED = "failed", "cancelled"
# The diff's results reach the table at most this often: each batch lays the table out and
# repaints it, and four times a second still reads as rows streaming in.
DIFF_BATCH_SECONDS = 0.25


class CompareView(Page):
    """A against B. ``start()`` begins; ``compare_finished`` says all work is done (the report is
    in ``report``, or ``state`` says why not)."""

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
        self.path_a, self.path_b = as_location(path_a), as_location(path_b)
        self.trust = trust
        self.checkpoints: tuple[Checkpoint, Checkpoint] | None = None
        self.report: DiffReport | None = None
        self.match: str | KeyMatch = "auto"
        self.state = LOADING
        self.error_message = ""
        # Opening both files, then comparing them. Before the files close or another comparison
        # starts, the slot's threads are waited for: they may be reading the files.
        self._work = workers.WorkerSlot()
        self._failures: list[DiffFailed] = []
        # Showing a finished comparison, one step per turn of the event loop (``_next_step``).
        self._steps: list[Callable[[], object]] = []
        self.setAcceptDrops(True)
        self._build()

    # --- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.paths_bar = PathsBar()
        self.paths_bar.swap_clicked.connect(self.swap)
        self.paths_bar.match_changed.connect(self._on_match_changed)
        self.results = DiffResults()
        self.paths_bar.match_error.connect(self.results.filter_bar.show_error)

        self.loading_label = QLabel()
        self.loading_label.setTextFormat(Qt.TextFormat.PlainText)  # it names the files
        self.loading_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        theme.style_secondary(self.loading_label, "font-size: 14pt;")
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
        self._show_names()

    # --- public -----------------------------------------------------------------------------
    def title(self) -> str:
        return f"{self.name_of(self.path_a)} ↔ {self.name_of(self.path_b)}"

    def tooltip(self) -> str:
        return f"A: {self.path_a}\nB: {self.path_b}"

    def paths(self) -> list[Path]:
        return [self.path_a, self.path_b]

    def set_names(self, names: Mapping[Path, str]) -> None:
        super().set_names(names)
        self._show_names()

    def _show_names(self) -> None:
        """A and B by the names that tell them apart: the paths bar and the legend."""
        name_a, name_b = self.name_of(self.path_a), self.name_of(self.path_b)
        self.paths_bar.set_paths(self.path_a, self.path_b, name_a, name_b)
        self.results.histograms.set_names(name_a, name_b)

    def is_idle(self) -> bool:
        """Nothing left to open or compare (the screenshot waits for this)."""
        return self.state in (READY, FAILED, CANCELLED)

    def panels_busy(self) -> bool:
        return self.results.histograms.is_busy()

    def select_largest_tensor(self) -> DiffEntry | None:
        """What the screenshot selects: here, the tensor that changed most."""
        return self.select_largest_change()

    def start(self) -> None:
        """Open A and B on a worker, then compare them; earlier work is abandoned."""
        self._release()
        self._show_names()
        self.title_changed.emit()
        name_a, name_b = self.name_of(self.path_a), self.name_of(self.path_b)
        self.loading_label.setText(f"Opening {name_a} and {name_b}…")
        self.stack.setCurrentWidget(self.loading_label)
        self._set_state(LOADING)
        self._report(f"Opening {self.title()}…", 0, 0)
        a, b, trust = self.path_a, self.path_b, self.trust
        self._work.call(
            lambda: jobs.open_pair(a, b, trust),
            on_finish=self._on_opened,
            on_error=self._on_open_failed,
            discard=jobs.close_pair,
        )

    def set_paths(self, path_a: str | Path, path_b: str | Path) -> None:
        """Compare other files (a drop, Swap, or File > Compare With…)."""
        new = {as_location(path_a).resolve(), as_location(path_b).resolve()}
        if new != {self.path_a.resolve(), self.path_b.resolve()}:
            self.trust = False  # --trust named the files on the command line, not these
        self.path_a, self.path_b = as_location(path_a), as_location(path_b)
        self.start()

    def swap(self) -> None:
        """B becomes A and A becomes B: files already open are compared again the other way
        round, without being read again."""
        if self.checkpoints is None:
            self.set_paths(self.path_b, self.path_a)
            return
        self.path_a, self.path_b = self.path_b, self.path_a
        self.checkpoints = (self.checkpoints[1], self.checkpoints[0])
        self._show_names()
        self.title_changed.emit()
        self._start_diff()

    def set_match(self, match: str | KeyMatch) -> None:
        """Compare again with another key matching: ``"auto"``, ``"exact"`` or a ``KeyMatch``."""
        self.match = match
        if self.checkpoints is not None:
            self._start_diff()

    def cancel(self) -> None:
        if not self.is_idle():
            self._work.abort()
            self._steps = []
            self._report("Comparison cancelled", 0, 0)
            self.paths_bar.set_progress(None)
            summary = self.results.summary
            summary.set_headline(summary.headline() + " (cancelled)")
            self._set_state(CANCELLED)
            self.compare_finished.emit()

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Abort every worker of this view and wait for their threads (tab or window closing)."""
        self._work.shutdown(wait_s)
        self.results.histograms.shutdown(wait_s)
        self._release()

    def focus_filter(self) -> None:
        edit = self.results.filter_bar.filter_edit
        edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        edit.selectAll()

    def copy_keys(self) -> list[str]:
        return self.results.selected_keys()

    def export_sources(self) -> list[Path]:
        return [self.path_a, self.path_b]

    def compare_with(self, path: Path) -> bool:
        """Compare With… in a compare tab: the chosen file replaces B."""
        self.set_paths(self.path_a, path)
        return True

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
        self.checkpoints = pair
        self.stack.setCurrentWidget(self.results)
        self.loaded.emit()
        self._start_diff()

    def _on_open_failed(self, exc: BaseException) -> None:
        line, details = error_text(exc)
        self.error_message = line
        self.error_view.set_error("Could not compare these files", line, details)
        self.stack.setCurrentWidget(self.error_view)
        self._report("", 0, 0)
        self._set_state(FAILED)
        self.compare_finished.emit()

    # --- comparing --------------------------------------------------------------------------
    def _start_diff(self) -> None:
        assert self.checkpoints is not None
        self._work.shutdown()
        self._steps = []
        self.report, self._failures = None, []
        self.results.clear()
        self.results.summary.set_headline("Comparing…")
        self.results.summary.set_details("")
        self.paths_bar.set_progress(0)
        self._set_state(COMPARING)
        ckpt_a, ckpt_b = self.checkpoints
        match = self.match
        self._work.start(
            lambda cancel: jobs.diff_pair(ckpt_a, ckpt_b, match, cancel, MAX_BARS),
            on_yield=self._on_events,
            on_finish=self._on_diff_done,
            on_error=self._on_diff_failed,
            with_abort=True,
            batch_seconds=DIFF_BATCH_SECONDS,
        )

    def _on_events(self, batch: list[Any]) -> None:
        entries: list[DiffEntry] = []
        progress: Progress | None = None
        for event in batch:
            if isinstance(event, DiffResult):
                entries.append(event.entry)
            elif isinstance(event, Progress):
                progress = event
            elif isinstance(event, MatchFound):
                self.results.summary.set_details(match_text(event.match))
            elif isinstance(event, DiffFailed):
                self._failures.append(event)
        self.results.add_entries(entries)
        if progress is not None and progress.total_bytes:
            done = int(PROGRESS_STEPS * progress.done_bytes / progress.total_bytes)
            self.paths_bar.set_progress(done)
            text = f"Comparing… {format_bytes(progress.done_bytes)} of "
            text += format_bytes(progress.total_bytes)
            self.results.summary.set_headline(text)
            self._report(text, done, PROGRESS_STEPS)

    def _on_diff_done(self, outcome: jobs.DiffOutcome) -> None:
        self.report = outcome.report
        self.paths_bar.set_progress(None)
        self._report("", 0, 0)
        # The summary, the chart, the final sort and the widths each take a part of a big
        # comparison's time: one per turn of the event loop, which paints in between.
        steps = self._steps = [*self.results.report_steps(outcome), self._on_report_shown]
        after_paint(self, lambda: self._next_step(steps))

    def _next_step(self, steps: list[Callable[[], object]]) -> None:
        """Take the next of ``steps``, unless they are no longer the view's (a comparison
        started again, or cancelled); the one after once its repaint is done, on a turn of
        its own: a step and the repaint of the one before never add up to one stall."""
        if steps is not self._steps or not steps:
            return
        steps.pop(0)()
        if steps:
            after_paint(self, lambda: self._next_step(steps))

    def _on_report_shown(self) -> None:
        self._set_state(READY)
        if self.selected_entry() is None:
            self.select_largest_change()
        self.compare_finished.emit()

    def _on_diff_failed(self, exc: BaseException) -> None:
        line, _ = error_text(exc)
        self.paths_bar.set_progress(None)
        self.results.summary.set_headline(f"The comparison stopped: {line}")
        self.error_message = line
        self._report("", 0, 0)
        self._set_state(FAILED)
        self.compare_finished.emit()

    # --- key matching -----------------------------------------------------------------------
    def _on_match_changed(self, match: str | KeyMatch) -> None:
        self.results.filter_bar.show_error("")
        if match != self.match:
            self.set_match(match)

    # --- helpers ----------------------------------------------------------------------------
    def _release(self) -> None:
        """Wait for every thread that may read the files, then close them."""
        self._steps = []
        self._work.shutdown()
        self.results.histograms.shutdown()
        if self.checkpoints is not None:
            jobs.close_pair(self.checkpoints)
            self.checkpoints = None


def _dropped_paths(event: QDragEnterEvent | QDropEvent) -> list[str]:
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
