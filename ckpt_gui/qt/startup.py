"""The first paint before torch is loaded: a window shows at once, torch is imported on a thread
of its own meanwhile, and the full window takes the first one's place when it is ready.

``import torch`` takes seconds; the window's pages need it (they open checkpoints), so a window
that waited for it would appear seconds after launch. ``StartupWindow`` needs nothing but Qt.
With ``CKPT_GUI_STARTUP_PROBE`` set, the moments that matter go to stderr as
``ckpt-gui-probe NAME UNIX_TIME`` lines (``benchmarks/startup.py`` reads them); ``=exit`` also
quits once the full window has painted.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QWidget

PROBE = "CKPT_GUI_STARTUP_PROBE"


def probe(name: str) -> None:
    """Say when ``name`` happened (only with ``CKPT_GUI_STARTUP_PROBE`` set), and whether the
    window's heavy modules (they import torch) had been imported by then."""
    if os.environ.get(PROBE):
        heavy = int("ckpt_gui.qt.main_window" in sys.modules)
        line = f"ckpt-gui-probe {name} {time.time():.6f} main_window_imported={heavy}"
        print(line, file=sys.stderr, flush=True)


def preload_torch() -> threading.Thread:
    """Import torch on a thread of its own while the window paints (only torch: nothing of
    ckpt-gui, whose modules the GUI thread imports, so the two never wait on each other)."""

    def work() -> None:
        import torch  # noqa: F401

        probe("torch-imported")

    thread = threading.Thread(target=work, name="ckpt-import-torch", daemon=True)
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


class StartupWindow(QMainWindow):
    """What shows while torch loads: the window's title, size and a line saying so."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("ckpt-gui")
        label = QLabel("<p style='font-size:15pt'>Starting ckpt-gui…</p>")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCentralWidget(label)


def show_startup_window(size: tuple[int, int]) -> StartupWindow:
    """Show the startup window and let it paint now."""
    window = StartupWindow()
    window.resize(*size)
    FirstPaint(window, "first-paint")
    window.show()
    app = QApplication.instance()
    if app is not None:
        for _ in range(3):  # show, expose, paint
            app.processEvents()
    return window
