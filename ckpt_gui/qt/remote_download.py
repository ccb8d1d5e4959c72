"""What a tab says about bytes crossing the network: a download's progress in bytes with the
time it should still take, and the question asked before all statistics of a remote checkpoint
are computed (they fetch every tensor)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from PySide6.QtWidgets import QMessageBox, QWidget

from ckpt_gui.core.tree import Node
from ckpt_gui.core.units import human_bytes


class Rate:
    """Bytes over time since the first report, for an estimate of the time left."""

    def __init__(self, clock: float | None = None) -> None:
        self.started = time.monotonic() if clock is None else clock
        self.first: int | None = None

    def text(self, done: int, total: int, now: float | None = None) -> str:
        """``Downloading 120 MB of 1.2 GB (25 MB/s, about 40 s left)`` (or its first part,
        until half a second of bytes says how fast they come)."""
        now = time.monotonic() if now is None else now
        if self.first is None:
            self.first, self.started = done, now
        line = f"Downloading {human_bytes(done)} of {human_bytes(total)}"
        elapsed, fetched = now - self.started, done - self.first
        if elapsed < 0.5 or fetched <= 0:
            return line + "…"
        speed = fetched / elapsed
        left = (total - done) / speed
        return line + f" ({human_bytes(int(speed))}/s, {_duration(left)} left)"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def to_download(nodes: Sequence[Node]) -> int:
    """Bytes reading ``nodes`` would fetch: their remote tensors' bytes the cache lacks."""
    total = 0
    for node in nodes:
        fetch = node.tensor.fetch if node.tensor is not None else None
        missing = getattr(fetch, "missing", None)
        if missing is not None:
            total += missing()
    return total


def confirm_all_statistics(parent: QWidget, nodes: Sequence[Node]) -> bool:
    """Ask before statistics fetch every tensor of a remote checkpoint."""
    total = to_download(nodes)
    if not total:
        return True
    answer = QMessageBox.question(
        parent,
        "Compute All Statistics",
        f"This checkpoint is remote: computing every tensor's statistics downloads up to "
        f"{human_bytes(total)}. Compute them?",
    )
    return answer == QMessageBox.StandardButton.Yes
