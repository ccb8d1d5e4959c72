"""The main window driven offscreen: opening files, errors, cancel, tabs, shortcuts, drops."""

from __future__ import annotations

from pathlib import Path

import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication

from ckpt_gui.qt import recent, workers
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.widgets.checkpoint_view import CANCELLED, FAILED, READY
from tests.qt import files
from tests.qt.files import wait_idle


def test_open_shows_tree_summary_and_statistics(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = files.training_checkpoint(tmp_path / "train.pt")
    view = window.open_path(path)
    assert window.tabs.tabText(0) == "train.pt"
    wait_idle(qtbot, view)
    assert view.state == READY
    assert view.tree.visible_rows() == ["epoch", "model_state_dict", "optimizer_state_dict", "loss"]
    summary = view.summary.file_text() + view.summary.totals_text()
    for expected in (
        "train.pt",
        "torch-zip",
        "training checkpoint",
        "Model 77 params (308 B)",
        "Optimizer state 77",
        "Buffers 11",
    ):
        assert expected in summary
    # Every tensor got its statistics, matching torch.
    model = view.model
    assert model is not None and model.stats_count() == len(view.checkpoint.tensors())
    weight = torch.load(path)["model_state_dict"]["linear1.weight"]
    item = next(
        it for it in model.root_item().walk() if it.key == "model_state_dict.linear1.weight"
    )
    assert model.index_of(item, col.MAX).data() == f"{weight.max().item():.4g}"
    assert window.status_label.text() == ""
    assert not window.cancel_button.isVisible()
    assert str(path.resolve()) in recent.recent_files()


def test_corrupt_file_shows_its_error_in_the_window(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    view = window.open_path(files.corrupt_file(tmp_path / "broken.pt"))
    with qtbot.waitSignal(view.load_failed, timeout=20_000) as signal:
        pass
    message = signal.args[0]
    assert view.state == FAILED
    assert view.stack.currentWidget() is view.error_view
    assert view.error_view.message() == message
    assert "broken.pt" in message and "\n" not in message
    assert "Traceback" not in message
    assert view.error_view.title() == "Could not open broken.pt"
    assert not view.error_view._details.isVisible()
    view.error_view._toggle.click()  # details on request
    assert view.error_view._details.isVisible()
    assert "Error" in view.error_view.details()


def test_missing_and_non_checkpoint_files_fail_cleanly(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hello, not a checkpoint\n")
    for name in ("missing.pt", "notes.txt"):
        view = window.open_path(tmp_path / name)
        wait_idle(qtbot, view)
        assert view.state == FAILED
        assert view.error_view.message()


def test_cancel_while_opening_leaves_no_threads(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = window.open_path(files.training_checkpoint(tmp_path / "train.pt"))
    assert window.cancel_button.isVisible()
    window.cancel_button.click()
    assert view.state == CANCELLED
    assert view.error_view.message() == "Opening was cancelled."
    qtbot.waitUntil(lambda: workers.active_workers() == 0, timeout=20_000)
    qtbot.wait(50)  # late results of the abandoned work must not show up
    assert view.state == CANCELLED and view.model is None
    view.error_view.retry_button.click()
    wait_idle(qtbot, view)
    assert view.state == READY


def test_cancel_statistics_keeps_the_tree(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = window.open_path(files.training_checkpoint(tmp_path / "train.pt"))
    view.loaded.connect(view.cancel)  # statistics have just started when the tree appears
    wait_idle(qtbot, view)
    qtbot.waitUntil(lambda: workers.active_workers() == 0, timeout=20_000)
    assert view.state == READY
    assert view.model is not None and view.model.stats_count() == 0
    assert view.tree.visible_rows()[0] == "epoch"


def test_closing_a_tab_mid_load_is_clean(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = files.training_checkpoint(tmp_path / "train.pt")
    window.open_path(path)
    window.close_current()
    assert window.tabs.count() == 0
    assert window.stack.currentWidget() is window.welcome
    assert workers.active_workers() == 0  # close waits for the tab's workers
    view = window.open_path(path)
    view.loaded.connect(window.close_current)  # and mid-statistics
    qtbot.waitUntil(lambda: window.tabs.count() == 0, timeout=20_000)
    assert workers.active_workers() == 0


def test_closing_the_window_mid_statistics_is_clean(qtbot, tmp_path: Path) -> None:
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    view = win.open_path(files.training_checkpoint(tmp_path / "train.pt"))
    with qtbot.waitSignal(view.loaded, timeout=20_000):
        pass
    win.close()
    assert workers.active_workers() == 0


def test_several_files_open_in_tabs_and_reopening_selects_the_tab(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    a = window.open_path(files.training_checkpoint(tmp_path / "a.pt"))
    b = window.open_path(files.sized_state_dict(tmp_path / "b.pt"))
    assert [window.tabs.tabText(i) for i in range(2)] == ["a.pt", "b.pt"]
    assert window.open_path(tmp_path / "a.pt") is a
    assert window.tabs.currentWidget() is a
    wait_idle(qtbot, a)
    wait_idle(qtbot, b)


def test_shortcuts_close_reload_and_filter(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = window.open_path(files.training_checkpoint(tmp_path / "train.pt"))
    wait_idle(qtbot, view)
    window.activateWindow()
    assert window.close_action.shortcut().toString() == "Ctrl+W"
    assert window.reload_action.shortcut().toString() == "F5"
    assert window.open_action.shortcut().toString() == "Ctrl+O"
    assert window.find_action.shortcut().toString() == "Ctrl+F"
    window.find_action.trigger()
    qtbot.keyClicks(view.tree.filter_edit, "running_mean")
    assert view.tree.visible_rows() == ["model_state_dict"]
    window.reload_action.trigger()
    assert not view.is_idle()
    wait_idle(qtbot, view)
    window.close_action.trigger()
    assert window.tabs.count() == 0


def test_copy_selected_keys(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = window.open_path(files.training_checkpoint(tmp_path / "train.pt"))
    wait_idle(qtbot, view)
    view.tree.set_filter("linear2")
    view.tree.view.selectAll()
    window.copy_action.trigger()
    copied = QGuiApplication.clipboard().text().splitlines()
    assert "model_state_dict.linear2.weight" in copied
    assert "model_state_dict.linear2.bias" in copied
    wait_idle(qtbot, view)


def test_drop_files_onto_the_window_opens_them(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = files.sized_state_dict(tmp_path / "dropped.pt")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert window.tabs.tabText(0) == "dropped.pt"
    wait_idle(qtbot, window.current_page())


def test_selecting_a_tensor_fills_details(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = window.open_path(files.training_checkpoint(tmp_path / "train.pt"))
    wait_idle(qtbot, view)
    largest = view.select_largest_tensor()
    assert largest is not None and largest.key == "model_state_dict.linear1.weight"
    text = view.details.text()
    for line in (
        "key: model_state_dict.linear1.weight",
        "dtype: float32",
        "shape: [5, 10]",
        "stride: [10, 1]",
        "saved on: cpu",
        "role: parameter",
        "storage: own",
    ):
        assert line in text
    assert "min: " in text and "std: " in text
    view.details.copy()
    assert QApplication.clipboard().text() == text
    wait_idle(qtbot, view)


def test_recent_files_menu_reopens_a_file(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = files.sized_state_dict(tmp_path / "recent.pt")
    view = window.open_path(path)
    wait_idle(qtbot, view)
    window.close_current()
    assert window.stack.currentWidget() is window.welcome
    window._fill_recent_menu()
    actions = [a for a in window.recent_menu.actions() if a.text() == str(path.resolve())]
    assert len(actions) == 1
    actions[0].trigger()
    assert window.tabs.tabText(0) == "recent.pt"
    wait_idle(qtbot, window.current_page())
