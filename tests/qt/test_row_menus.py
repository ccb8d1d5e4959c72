"""Row context menus (copy key, shape, statistics, Python; compare this tensor; export this
subtree), Esc clearing the filter, and the Help menu."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import torch
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QGuiApplication

from ckpt_gui import __version__
from ckpt_gui.qt.compare import CompareView
from ckpt_gui.qt.export import ExportDialog
from ckpt_gui.qt.main_window import MainWindow
from tests.qt import files
from tests.qt.files import wait_idle


def actions(menu) -> dict:
    return {a.text(): a for a in menu.actions() if a.text()}


def item_of(view, key: str):
    return next(it for it in view.model.root_item().walk() if it.key == key)


def test_tree_row_menu(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = files.training_checkpoint(tmp_path / "t.pt")
    view = files.opened(qtbot, window, path)
    weight = item_of(view, "model_state_dict.linear1.weight")
    menu = actions(view.row_menu(weight))
    clipboard = QGuiApplication.clipboard()
    menu["Copy Key"].trigger()
    assert clipboard.text() == "model_state_dict.linear1.weight"
    menu["Copy Shape"].trigger()
    assert clipboard.text() == str(
        list(torch.load(path)["model_state_dict"]["linear1.weight"].shape)
    )
    menu["Copy Statistics"].trigger()
    stats = clipboard.text().split("\n")
    assert any(line.startswith("Norm: ") for line in stats) and any(
        line.startswith("NaN/Inf: ") for line in stats
    )
    menu["Copy as Python"].trigger()
    assert clipboard.text() == 'ckpt["model_state_dict"]["linear1.weight"]'
    # A module row has no single object to reach in Python.
    module = actions(view.row_menu(item_of(view, "model_state_dict.linear1")))
    assert not module["Copy as Python"].isEnabled()
    assert not module["Compare This Tensor With…"].isEnabled()

    # Compare this tensor with another file: a compare tab filtered to the key.
    other = tmp_path / "u.pt"
    torch.save(torch.load(path), other)
    view.compare_tensor_with(weight.key, other)
    page = window.current_page()
    assert isinstance(page, CompareView) and page.path_b == other
    wait_idle(qtbot, page)
    assert page.visible_keys() == ["model_state_dict.linear1.weight"]

    # Export this subtree: the dialog keeps the subtree and nothing else.
    window.tabs.setCurrentWidget(view)
    dialog = view.export_subtree("model_state_dict.linear1")
    assert isinstance(dialog, ExportDialog)
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=20_000)
    kept = sorted(k.key for k in dialog.plan.kept)
    assert kept == ["model_state_dict.linear1.bias", "model_state_dict.linear1.weight"]
    dialog.shutdown()
    dialog.reject()


def test_compare_row_menu(qtbot, window: MainWindow, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.ones(2, 3)}, a)
    torch.save({"w": torch.ones(2, 3) * 2}, b)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    menu = actions(view.results.row_menu(view.selected_entry()))
    clipboard = QGuiApplication.clipboard()
    menu["Copy Key"].trigger()
    assert clipboard.text() == "w"
    menu["Copy Shapes"].trigger()
    assert clipboard.text() == "A: [2, 3]\nB: [2, 3]"
    menu["Copy Statistics"].trigger()
    assert "max |A−B|: 1" in clipboard.text()
    menu["Copy as Python"].trigger()
    assert clipboard.text() == 'sd["w"]'


def test_escape_clears_the_filter(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = files.opened(qtbot, window, files.training_checkpoint(tmp_path / "t.pt"))
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    view.tree.filter_edit.setFocus()
    qtbot.keyClicks(view.tree.filter_edit, "running")
    assert view.tree.visible_rows() == ["model_state_dict"]
    qtbot.keyClick(view.tree.filter_edit, Qt.Key.Key_Escape)
    assert view.tree.filter_edit.text() == ""
    assert len(view.tree.visible_rows()) == 4


def test_help_menu(qtbot, window: MainWindow) -> None:
    dialog = window.show_shortcuts()
    keys = dict(dialog.rows)
    assert keys["Ctrl+F"] == "Filter" and keys["F5"] == "Reload" and "Esc" in keys
    dialog.close()
    box = window.show_about()
    text = box.text()
    assert f"ckpt-gui {__version__}" in text
    assert f"torch {metadata.version('torch')}" in text
    assert f"Qt {qVersion()}" in text
    box.close()
