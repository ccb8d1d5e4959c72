"""F5 keeps the selection, the open rows and the scroll position; a file that changes on disk
offers to reload."""

from __future__ import annotations

from pathlib import Path

import torch

from ckpt_gui.qt.main_window import MainWindow
from tests.qt import files


def many_modules(path: Path) -> Path:
    torch.save({f"layers.{i}.{p}": torch.randn(3) for i in range(40) for p in "abc"}, path)
    return path


def test_reload_keeps_selection_open_rows_and_scroll(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    path = many_modules(tmp_path / "m.pt")
    view = files.opened(qtbot, window, path)
    tree = view.tree
    items = {it.key: it for it in view.model.root_item().walk()}
    tree.collapse_all()
    tree.view.expand(tree.proxy.mapFromSource(view.model.index_of(items["layers"])))
    opened = (3, 7, 11, 15, 19, 23, 27, 30)
    for i in opened:
        tree.view.expand(tree.proxy.mapFromSource(view.model.index_of(items[f"layers.{i}"])))
    tree.select_item(items["layers.30.b"])
    tree.view.verticalScrollBar().setValue(12)
    qtbot.wait(20)
    before = tree.view_state()
    assert before.scroll[0] == 12

    window.reload_action.trigger()
    qtbot.waitUntil(lambda: view.state == "ready", timeout=20_000)
    qtbot.wait(50)
    after = tree.view_state()
    assert tree.selected_keys() == ["layers.30.b"]
    assert sorted(after.expanded) == sorted(["layers"] + [f"layers.{i}" for i in opened])
    assert after.scroll == before.scroll


def test_changed_file_offers_to_reload(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = many_modules(tmp_path / "m.pt")
    view = files.opened(qtbot, window, path)
    assert not view.changed_bar.isVisible()
    torch.save({"other": torch.ones(2)}, path)
    qtbot.waitUntil(view.changed_bar.isVisible, timeout=10_000)
    view.changed_bar.reload_button.click()
    qtbot.waitUntil(lambda: view.state == "ready", timeout=20_000)
    assert view.tree.visible_rows() == ["other"]
    assert not view.changed_bar.isVisible()
