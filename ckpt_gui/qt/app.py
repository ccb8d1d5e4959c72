"""``run_app``: the window's entry point, called by ``ckpt_gui.cli.main`` with the GUI arguments.

With ``--screenshot`` the window opens, waits until loading, statistics and the panels are done,
selects the largest tensor, saves a picture of itself and exits 0, whatever the file held.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from ckpt_gui.core.errors import first_line
from ckpt_gui.qt import startup, theme

if TYPE_CHECKING:  # imported in run_app: the window paints before torch is loaded
    from ckpt_gui.qt.main_window import MainWindow

SCREENSHOT_SIZE = (1600, 1000)
WINDOW_SIZE = (1280, 800)
SCREENSHOT_TIMEOUT_S = 600.0  # a picture of an unfinished window beats no picture at all
ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "ckpt-gui.svg"


_QUIET = ("This plugin does not support propagateSizeHints()",)


def _message_handler(mode: QtMsgType, context: object, message: str) -> None:
    """Qt's own warnings go to stderr as usual, minus the offscreen plugin's harmless chatter."""
    if message in _QUIET:
        return
    print(message, file=sys.stderr)


def make_application() -> QApplication:
    qInstallMessageHandler(_message_handler)
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("ckpt-gui")
    app.setOrganizationName("ckpt-gui")
    app.setDesktopFileName("ckpt-gui")
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    theme.follow_system()
    return app


def build_window(args: argparse.Namespace) -> MainWindow:
    """A window with every path of ``args`` opening in its own tab."""
    from ckpt_gui.qt.main_window import MainWindow

    window = MainWindow()
    open_arguments(window, args)
    return window


def open_arguments(window: MainWindow, args: argparse.Namespace) -> None:
    """Open every path ``args`` names, each in its own tab."""
    # --trust applies to the paths on this command line only, never to files opened later.
    trust = bool(getattr(args, "trust", False))
    for path in args.paths or []:
        window.open_path(path, trust=trust)
    if args.demo:  # written by us on the tab's worker, never trusted
        window.open_demo()
    if args.compare:
        a, b = args.compare
        window.open_compare(a, b, trust=trust)
    if getattr(args, "run", None):
        window.open_run(args.run, trust=trust)


class Screenshotter(QObject):
    """Polls the window until all its work is done, then saves ``window.grab()`` and quits."""

    def __init__(
        self, window: MainWindow, out: Path, timeout_s: float = SCREENSHOT_TIMEOUT_S
    ) -> None:
        super().__init__(window)
        self.window = window
        self.out = out
        self.deadline = time.monotonic() + timeout_s
        self.selected = False
        self.exit_code: int | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._poll)

    def start(self) -> None:
        self.timer.start()

    def _poll(self) -> None:
        timed_out = time.monotonic() > self.deadline
        if not self.window.is_idle() and not timed_out:
            return
        view = self.window.current_page()
        if view is not None and not self.selected:
            self.selected = True
            if view.select_largest_tensor() is not None:
                return  # give the panels a turn to start their workers
        if view is not None and view.panels_busy() and not timed_out:
            return
        self.timer.stop()
        # Let the last paints and layout passes land before the picture is taken.
        QTimer.singleShot(150, self._save)

    def _save(self) -> None:
        QApplication.processEvents()
        ok = self.window.grab().save(str(self.out), "PNG")
        if not ok:
            print(f"ckpt-gui: error: could not write the screenshot to {self.out}", file=sys.stderr)
        self.exit_code = 0 if ok else 2
        QApplication.exit(self.exit_code)  # static: ends the running event loop


def install_excepthook(window: MainWindow) -> None:
    """A bug in a slot must not kill the window or flash a traceback at the user: the
    traceback goes to stderr, one line to the status bar."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        traceback.print_exception(kind, exc, tb)
        line = first_line(f"Internal error: {kind.__name__}: {exc}", limit=1000)
        try:
            window.statusBar().showMessage(line, 10_000)
        except RuntimeError:  # the window is already gone
            pass

    sys.excepthook = hook


def run_app(args: argparse.Namespace) -> int:
    app = make_application()
    if args.screenshot:
        try:
            window = build_window(args)
        except OSError as exc:  # a folder the window cannot read or write
            print(first_line(f"ckpt-gui: error: {exc}", limit=1000), file=sys.stderr)
            return 2
    else:
        startup.share_the_gil()  # a worker calling torch no longer keeps the GIL from it
        # The window paints at once (it needs no torch); torch loads on a thread meanwhile,
        # and the files named on the command line open once it has.
        loading = startup.preload_libraries()
        from ckpt_gui.qt.main_window import MainWindow

        window = MainWindow()
        window.resize(*WINDOW_SIZE)
        startup.FirstPaint(window, "first-paint")
        window.show()
        startup.when_loaded(loading, window, lambda: _open_when_ready(window, args))
        startup.warm_pages(loading, window)
    previous_hook = sys.excepthook
    install_excepthook(window)
    try:
        return _run_window(app, window, args)
    finally:
        sys.excepthook = previous_hook


def _open_when_ready(window: MainWindow, args: argparse.Namespace) -> None:
    """torch has loaded: open what the command line named; the next paint shows the tabs."""
    startup.FirstPaint(window, "window-painted", quit_after=True)
    open_arguments(window, args)
    window.update()


def _run_window(app: QApplication, window: MainWindow, args: argparse.Namespace) -> int:
    if args.screenshot:
        # Closing the window must not post a quit that outlives this call (tests run it twice).
        quit_on_close = app.quitOnLastWindowClosed()
        app.setQuitOnLastWindowClosed(False)
        window.resize(*SCREENSHOT_SIZE)
        window.show()
        shooter = Screenshotter(window, Path(args.screenshot))
        shooter.start()
        code = app.exec()
        window.close()  # aborts and waits for every worker
        window.deleteLater()
        app.setQuitOnLastWindowClosed(quit_on_close)
        return code
    code = app.exec()
    window.shutdown()
    return code
