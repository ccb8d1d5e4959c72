"""Fixtures for the GUI tests: isolated settings, and a guard that fails any test leaving a
worker thread running (as napari's ``_dangling_qthread_pool`` does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from ckpt_gui.qt import workers  # noqa: E402
from ckpt_gui.qt.main_window import MainWindow  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Recent files and other QSettings go to a temporary folder, not the user's."""
    folder = str(tmp_path_factory.mktemp("settings"))
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, folder)


@pytest.fixture(autouse=True)
def _fresh_layout() -> Iterator[None]:
    """Column and splitter state saved by one test does not reach the next."""
    yield
    store = QSettings("ckpt-gui", "ckpt-gui")
    for group in ("tree", "compare", "browser", "view"):
        store.remove(group)


@pytest.fixture(autouse=True)
def _no_dangling_workers(qapp: object) -> Iterator[None]:
    yield
    alive = workers.active_workers()
    if alive:
        workers.abort_all(10_000)
        pytest.fail(f"{alive} worker thread(s) still running when the test ended")


@pytest.fixture()
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user cache folder (where ``--demo`` writes) moved into ``tmp_path``."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


@pytest.fixture()
def window(qtbot) -> MainWindow:
    """The main window, shown offscreen at a typical size."""
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    return win
