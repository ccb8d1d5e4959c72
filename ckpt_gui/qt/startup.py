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
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWidget

PROBE = "CKPT_GUI_STARTUP_PROBE"
# The GIL's switch interval in the app (Python's default is 5 ms): see ``share_the_gil``.
SWITCH_INTERVAL_S = 20e-6
# The modules of the window's pages, leaf first: imported on idle turns of their own
# (``warm_pages``): each costs 1-26 ms here, where the first tab imported them in one turn
# (106 ms), and the first comparison the rest of them.
PAGE_MODULES = (
    "ckpt_gui.core.reader",
    "ckpt_gui.core.stats",
    "ckpt_gui.core.diff",
    "ckpt_gui.core.export",
    "ckpt_gui.core.adapters",
    "ckpt_gui.core.run",
    "ckpt_gui.qt.jobs",
    "ckpt_gui.qt.models.tree_model",
    "ckpt_gui.qt.widgets.histogram",
    "ckpt_gui.qt.widgets.values",
    "ckpt_gui.qt.widgets.details",
    "ckpt_gui.qt.export.dialog",
    "ckpt_gui.qt.adapter.panel",
    "ckpt_gui.qt.widgets.tree_panel",
    "ckpt_gui.qt.widgets.checkpoint_view",
    "ckpt_gui.qt.compare",
    "ckpt_gui.qt.run.view",
)
WARM_STEP_MS = 50  # between two of those imports: the event loop goes round in between
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


def share_the_gil() -> None:
    """Let the GUI thread have the GIL within microseconds of asking for it, while a worker runs.

    A thread waiting for the GIL asks its holder to let go only once a whole switch interval
    passes without a release; a worker that calls torch (which lets go of the GIL and takes it
    back around each operation, every few microseconds) restarts that wait at every release,
    and the thread wins the GIL only when it happens to wake first. Measured with a worker
    opening an 8,000-tensor checkpoint: a ticking thread waited up to 30-140 ms at 5 ms (168 ms
    at 1 ms), at most 11 ms at 20 us. The worker took as long (a comparison of two such files
    too); only threads that both run Python hand the GIL to each other more often.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def warm_pages(loading: threading.Thread, owner: QObject, step_ms: int = WARM_STEP_MS) -> None:
    """Import the pages' modules (``PAGE_MODULES``) on the GUI thread, one per turn of the
    event loop, once ``loading`` (``preload_libraries``) has ended: the first tab, comparison
    or run then imports nothing in the turn that shows it. Not on ``loading``'s thread: two
    threads importing the same packages can each wait on a module the other holds."""
    from ckpt_gui.qt.gui_turns import after_paint

    names = list(PAGE_MODULES)

    def next_module() -> None:
        if names:
            try:
                importlib.import_module(names.pop(0))
            except ImportError:  # (a library missing): the page that needs it will say so
                return
            after_paint(owner, next_module, step_ms)

    def once_loaded() -> None:
        after_paint(owner, next_module, step_ms)

    _when(lambda: not loading.is_alive(), owner, once_loaded)


def when_loaded(thread: threading.Thread, owner: QObject, then: Callable[[], None]) -> None:
    """Call ``then()`` on the GUI thread once ``thread`` (``preload_libraries``) has imported
    torch (or ended); polled every 20 ms while ``owner`` lives."""
    _when(lambda: _loaded.is_set() or not thread.is_alive(), owner, then)


def _when(ready: Callable[[], bool], owner: QObject, then: Callable[[], None]) -> None:
    """Call ``then()`` on the GUI thread once ``ready()``; polled every 20 ms while ``owner``
    lives."""
    timer = QTimer(owner)
    timer.setInterval(20)

    def check() -> None:
        if ready():
            timer.stop()
            timer.deleteLater()
            then()

    timer.timeout.connect(check)
    timer.start()
