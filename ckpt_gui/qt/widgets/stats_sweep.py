"""A checkpoint tab's statistics sweep (``StatsSweep``, part of ``CheckpointView``): every
tensor's statistics computed on a worker once the tree has painted, the rows filled in a batch
at a time (at most ``STATS_PER_TURN`` rows a turn of the event loop), and the plots made ahead
of their first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckpt_gui.core.memory import freeze_heap
from ckpt_gui.qt import jobs
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.formatting import format_bytes
from ckpt_gui.qt.gui_turns import after_paint
from ckpt_gui.qt.remote_download import Rate
from ckpt_gui.qt.widgets.remote_actions import REMOTE_STATS
from ckpt_gui.qt.widgets.tab_states import READY, STATS
from ckpt_gui.qt.workers import PROGRESS_STEPS

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance

    from ckpt_gui.core.checkpoint import Checkpoint
    from ckpt_gui.core.tree import Node
    from ckpt_gui.qt import workers
    from ckpt_gui.qt.models.items import Item
    from ckpt_gui.qt.models.tree_model import CheckpointModel
    from ckpt_gui.qt.page import Page
    from ckpt_gui.qt.widgets.details import DetailsPanel
    from ckpt_gui.qt.widgets.histogram import HistogramPanel
    from ckpt_gui.qt.widgets.tree_panel import TreePanel
    from ckpt_gui.qt.widgets.values import ValuesPanel

    _Base = Page
else:
    _Base = object

# Rows fill in a few times a second: each update repaints the tree, and a repaint competes with
# the statistics worker for the GIL, so fewer, larger updates keep the window responsive.
STATS_BATCH_SECONDS = 0.25
# Statistics handed to the tree in one turn: a quarter second's batch of small tensors holds
# thousands (5,000 took one 64-72 ms turn for a tree of 8,000 tensors); the rest follow on
# turns of their own, after the repaint.
STATS_PER_TURN = 1500
# How long (ms) the tree gets to paint after loading before the statistics workers start (and
# before the panels' plots are made, one after the other).
FIRST_PAINT_MS = 60


class StatsSweep(_Base):
    """The statistics part of a ``CheckpointView`` (which has the attributes declared here)."""

    state: str
    checkpoint: Checkpoint | None
    model: CheckpointModel | None
    tree: TreePanel
    details: DetailsPanel
    histogram: HistogramPanel
    values: ValuesPanel
    fetch_rate: Rate
    stats_finished: SignalInstance
    _work: workers.WorkerSlot
    _stats_failures: int
    _frozen_heap: bool
    _stats_queue: list[tuple[Node, Any]]  # arrived, not yet handed to the tree
    _finishing: str | None  # the sweep's end, waiting for the queue to empty (its message)

    if TYPE_CHECKING:  # the view's

        def _set_state(self, state: str) -> None: ...
        def _report(self, text: str, done: int, total: int) -> None: ...
        def _on_selection(self, items: list[Item]) -> None: ...
        def remote(self) -> bool: ...

    def _start_stats_if_current(self) -> None:
        if self.state == STATS and not self._work.busy() and self.checkpoint is not None:
            if self.remote():  # every tensor would be downloaded: only the ones looked at
                self._finish_stats(REMOTE_STATS)
                return
            self._start_stats()

    def _start_stats(self, only: list[Node] | None = None) -> None:
        assert self.checkpoint is not None
        nodes = self.checkpoint.tensors() if only is None else only
        if not nodes:
            self._finish_stats("")
            return
        self._stats_failures = 0
        self._stats_queue, self._finishing = [], None
        self._prepare_panels()  # a tensor may be selected before the statistics are all in
        self._set_state(STATS)
        self._report("Computing statistics…", 0, PROGRESS_STEPS)
        self.fetch_rate = Rate()
        self._work.start(
            lambda cancel: jobs.stats_events(nodes, cancel),
            on_yield=self._on_stats,
            on_finish=lambda _: self._on_stats_done(),
            on_error=self._on_stats_failed,
            with_abort=True,
            batch_seconds=STATS_BATCH_SECONDS,
        )

    def _prepare_panels(self) -> None:
        """The panels' plots, made ahead on turns of their own after the repaint (~10 ms each,
        each made once)."""
        after_paint(self.histogram, self.histogram.prepare, FIRST_PAINT_MS)
        after_paint(self.values, self.values.prepare, 2 * FIRST_PAINT_MS)

    def _on_stats(self, batch: list[Any]) -> None:
        if self.model is None:
            return
        pairs, progress, failures = jobs.split_stats_events(batch)
        self._stats_failures += len(failures)
        if pairs:
            waiting = bool(self._stats_queue)
            self._stats_queue += pairs
            if not waiting:  # else the turns already handing them over take these too
                self._apply_queued()
        if progress is not None and progress.total_bytes:
            done = int(PROGRESS_STEPS * progress.done_bytes / progress.total_bytes)
            text = f"Computing statistics… {format_bytes(progress.done_bytes)} of " + format_bytes(
                progress.total_bytes
            )
            if self.remote():  # the bytes are fetched: say at what speed, and how long still
                text = self.fetch_rate.text(progress.done_bytes, progress.total_bytes)
            self._report(text, done, PROGRESS_STEPS)

    def _apply_queued(self) -> None:
        """Hand the tree up to ``STATS_PER_TURN`` of the statistics that arrived; the rest on
        the turns after (then the sweep's end, if it came meanwhile)."""
        queue = self._stats_queue
        if self.model is None or not queue:
            return
        pairs = queue[:STATS_PER_TURN]
        del queue[:STATS_PER_TURN]
        self.tree.apply_stats(pairs, repaint=not queue)  # (a repaint is a turn of 35-60 ms)
        if self._frozen_heap:
            # The statistics live as long as the rows: frozen like them, so that the
            # collector's full passes stay the size of a batch, not of every result so far.
            freeze_heap()
        selected = self.tree.selected_items()
        if len(selected) == 1:
            item = selected[0]
            if not item.is_tensor or any(n is item.node for n, _ in pairs):
                self.details.show_item(item, self.model.details_stats(item))
        if queue:
            after_paint(self.tree, self._apply_queued)
        elif self._finishing is not None:
            message, self._finishing = self._finishing, None
            self._finish_stats(message)

    def _on_stats_done(self) -> None:
        failed = self._stats_failures
        self._finish_stats(f"Statistics: {failed} tensors could not be read" if failed else "")

    def _on_stats_failed(self, exc: BaseException) -> None:
        line, _ = error_text(exc)
        self._finish_stats(f"Statistics stopped: {line}")

    def _finish_stats(self, message: str) -> None:
        if self._stats_queue:  # ends once the rows have them all
            self._finishing = message
            return
        self.tree.apply_stats([], final=True)
        self._prepare_panels()
        self._set_state(READY)
        self._report(message, 0, 0)
        if self.model is not None:
            self._on_selection(self.tree.selected_items())
        self.stats_finished.emit()
