"""A checkpoint tab's remote side (``RemoteActions``, part of ``CheckpointView``): a tab that
shows a checkpoint where it lives computes statistics only for the tensors looked at (each
fetches its bytes), all of them only when asked and after saying how much that downloads, and
offers to download a file that can only be read whole."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from ckpt_gui.core.remote.download import iter_download
from ckpt_gui.core.remote.location import RemotePath
from ckpt_gui.qt.remote_download import Rate, confirm_all_statistics
from ckpt_gui.qt.widgets.tab_states import LOADING, READY
from ckpt_gui.qt.workers import PROGRESS_STEPS

if TYPE_CHECKING:
    from PySide6.QtWidgets import QLabel, QStackedWidget

    from ckpt_gui.core.checkpoint import Checkpoint
    from ckpt_gui.core.tree import Node
    from ckpt_gui.qt import workers
    from ckpt_gui.qt.models.items import Item
    from ckpt_gui.qt.models.tree_model import CheckpointModel
    from ckpt_gui.qt.page import Page

    _Base = Page
else:
    _Base = object

# What a remote tab says instead of computing every tensor's statistics (downloading them).
REMOTE_STATS = (
    "Remote checkpoint: statistics are computed for the tensors you select "
    "(View ▸ Compute All Statistics fetches them all)"
)


class RemoteActions(_Base):
    """The remote part of a ``CheckpointView`` (which has the attributes declared here)."""

    path: Path
    state: str
    checkpoint: Checkpoint | None
    model: CheckpointModel | None
    stack: QStackedWidget
    loading_label: QLabel
    _work: workers.WorkerSlot
    _asked: set[int]  # remote tensors whose statistics were asked for once

    if TYPE_CHECKING:  # the view's

        def _set_state(self, state: str) -> None: ...
        def _report(self, text: str, done: int, total: int) -> None: ...
        def _on_load_failed(self, exc: BaseException) -> None: ...
        def _start_stats(self, only: list[Node] | None = None) -> None: ...

    def remote(self) -> bool:
        """Whether this tab shows a checkpoint where it lives (a URL), read a range at a time."""
        return isinstance(self.path, RemotePath)

    def download_and_open(self) -> None:
        """The error's Download and Open: fetch the whole remote file (progress, Cancel),
        then open the local copy in this tab."""
        if not self.remote():
            return
        url = cast(RemotePath, self.path).url
        rate = Rate()
        self.stack.setCurrentWidget(self.loading_label)
        self.loading_label.setText(f"Downloading {self.title()}…")
        self._set_state(LOADING)

        def progress(batch: list[tuple[int, int]]) -> None:
            done, total = batch[-1]
            self._report(
                rate.text(done, total), int(PROGRESS_STEPS * done / max(total, 1)), PROGRESS_STEPS
            )

        def downloaded(copy: Path) -> None:
            self.path = copy
            self.title_changed.emit()
            self.start()

        self._work.start(
            lambda: iter_download(url),
            on_yield=progress,
            on_finish=downloaded,
            on_error=self._on_load_failed,
        )

    def compute_all_statistics(self) -> None:
        """View > Compute All Statistics (for a remote checkpoint, after saying how much that
        downloads)."""
        if self.checkpoint is None or self._work.busy() or self.state != READY:
            return
        if self.remote() and not confirm_all_statistics(self, self.checkpoint.tensors()):
            return
        self._start_stats()

    def stats_when_looked_at(self, items: list[Item]) -> None:
        """A remote tensor's statistics are computed (its bytes fetched) once it is selected;
        each is asked for once, so one that cannot be read is not asked for again."""
        if not self.remote() or self.state != READY or self._work.busy() or self.model is None:
            return
        model = self.model
        wanted = [
            it.node
            for it in items
            if it.is_tensor and it.node is not None and model.tensor_stats(it) is None
        ]
        wanted = [n for n in wanted if id(n) not in self._asked]
        if wanted:
            self._asked.update(id(n) for n in wanted)
            self._start_stats(wanted)
