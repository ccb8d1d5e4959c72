"""The startup thread imports torch, then pyqtgraph, then freezes what exists: the first tab or
compare does not import pyqtgraph on the GUI thread, and full collections no longer walk the
libraries' objects (a 100 ms stall of every thread, holding the GIL)."""

from __future__ import annotations

import gc
import sys

import pytest

from ckpt_gui.qt import startup


def test_the_libraries_load_and_their_objects_are_frozen() -> None:
    before = gc.get_freeze_count()
    try:
        startup.preload_libraries().join(timeout=120)
        assert "torch" in sys.modules and "pyqtgraph" in sys.modules
        assert startup._loaded.is_set()
        assert gc.get_freeze_count() > max(before, 100_000)  # torch alone has more objects
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


WARM_SCRIPT = r"""
import os, sys, threading, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtWidgets import QApplication, QWidget
from ckpt_gui.qt import startup

app = QApplication([])
owner = QWidget()
release = threading.Event()
loading = threading.Thread(target=release.wait)  # stands for preload_libraries' thread
loading.start()
startup.warm_pages(loading, owner, step_ms=1)


def spin(seconds, done=lambda: False):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not done():
        app.processEvents()
        time.sleep(0.002)


spin(0.3)
waited = not any(name in sys.modules for name in startup.PAGE_MODULES)
release.set()
spin(120, lambda: all(name in sys.modules for name in startup.PAGE_MODULES))
warmed = {name for name in sys.modules if name.startswith("ckpt_gui")}
import ckpt_gui.qt.adapter.panel, ckpt_gui.qt.compare, ckpt_gui.qt.export.dialog
import ckpt_gui.qt.run.view, ckpt_gui.qt.widgets.checkpoint_view
new = sorted({name for name in sys.modules if name.startswith("ckpt_gui")} - warmed)
print(waited, all(name in warmed for name in startup.PAGE_MODULES), new)
"""


def test_the_pages_modules_are_imported_ahead_once_the_libraries_are() -> None:
    """``warm_pages`` waits for the libraries' thread, then imports every module the pages
    need (a page shown later imports nothing new on the GUI thread)."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", WARM_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "True True []"


def test_the_app_shares_the_gil_at_a_short_switch_interval() -> None:
    before = sys.getswitchinterval()
    try:
        startup.share_the_gil()
        assert sys.getswitchinterval() == pytest.approx(startup.SWITCH_INTERVAL_S)
        assert startup.SWITCH_INTERVAL_S < 1e-4  # shorter than the gap between torch's releases
    finally:
        sys.setswitchinterval(before)


def test_warming_stops_quietly_at_a_module_that_cannot_be_imported(
    qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library missing: nothing is raised at startup (pytest-qt fails a test on an exception
    in a Qt callback); the page that needs it says so when it opens."""
    import threading

    from PySide6.QtWidgets import QWidget

    owner = QWidget()
    qtbot.addWidget(owner)
    monkeypatch.setattr(startup, "PAGE_MODULES", ("ckpt_gui.no_such_page", "ckpt_gui.not_either"))
    imported: list[str] = []
    real = startup.importlib.import_module

    def counted(name: str):  # noqa: ANN202
        imported.append(name)
        return real(name)

    monkeypatch.setattr(startup.importlib, "import_module", counted)
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    startup.warm_pages(done, owner, step_ms=1)
    qtbot.waitUntil(lambda: imported == ["ckpt_gui.no_such_page"], timeout=5_000)
    qtbot.wait(100)
    assert imported == ["ckpt_gui.no_such_page"]  # stopped there
