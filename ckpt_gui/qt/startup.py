"""The first paint before torch is loaded: the window shows at once (it imports nothing that
needs torch), torch (then pyqtgraph) is imported on a thread of its own meanwhile, and the files
named on the command line open once torch has.

``import torch`` takes seconds; the window's pages need it (they open checkpoints), so a window
that waited for it would appear seconds after launch.
With ``CKPT_GUI_STARTUP_PROBE`` set, the moments that matter go to stderr as
``ckpt-gui-probe NAME UNIX_TIME`` lines (``benchmarks/startup.py`` reads them); ``=exit`` also
quits once the full window has painted.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWidget

PROBE = "CKPT_GUI_STARTUP_PROBE"
_loaded = threading.Event()  # preload_libraries' import of torch is done


def probe(name: str) -> None:
    """Say when ``name`` happened (only with ``CKPT_GUI_STARTUP_PROBE`` set), and whether the
    window's heavy modules (they import torch) had been imported by then."""
    if os.environ.get(PROBE):
        line = f"ckpt-gui-probe {name} {time.time():.6f} torch_loaded={int(_loaded.is_set())}"
        print(line, file=sys.stderr, flush=True)


def preload_libraries() -> threading.Thread:
    """Import torch on a thread of its own while the window paints, then pyqtgraph (only
    third-party libraries: nothing of ckpt-gui, whose modules the GUI thread imports, so the
    two never wait on each other for long), then freeze what exists (``gc.freeze``). pyqtgraph
    is the plotting library of the panels a tab opens with: imported there, on the GUI thread,
    it stalled the window a quarter of a second (PySide's import hook reads the source of every
    module imported after it)."""

    def work() -> None:
        try:
            import torch  # noqa: F401
        finally:
            _loaded.set()  # a failed import is the pages' to report, when they need torch
        probe("torch-imported")
        try:
            import pyqtgraph  # noqa: F401
        except ImportError:  # the panels will say so when they need it
            pass
        # The libraries' objects live as long as the process: out of the collector's way.
        # A full collection otherwise walks all of torch's (about 100 ms here, holding the GIL,
        # so the window stalls whichever thread's allocation set it off: mostly a worker
        # loading a checkpoint).
        gc.freeze()

    thread = threading.Thread(target=work, name="ckpt-import-libraries", daemon=True)
    thread.start()
    return thread


class FirstPaint(QObject):
    """Calls ``probe(name)`` when ``widget`` first paints (and quits if asked to)."""

    def __init__(self, widget: QWidget, name: str, quit_after: bool = False) -> None:
        super().__init__(widget)
        self.name, self.quit_after, self.done = name, quit_after, False
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if not self.done and event.type() == QEvent.Type.Paint:
            self.done = True
            probe(self.name)
            if self.quit_after and os.environ.get(PROBE) == "exit":
                QApplication.exit(0)
        return False


def when_loaded(thread: threading.Thread, owner: QObject, then: Callable[[], None]) -> None:
    """Call ``then()`` on the GUI thread once ``thread`` (``preload_libraries``) has imported
    torch (or ended); polled every 20 ms while ``owner`` lives."""
    timer = QTimer(owner)
    timer.setInterval(20)

    def check() -> None:
        if _loaded.is_set() or not thread.is_alive():
            timer.stop()
            timer.deleteLater()
            then()

    timer.timeout.connect(check)
    timer.start()
