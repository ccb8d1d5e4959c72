"""Every shortcut works where the user is: in a compare tab (Ctrl+F, Ctrl+C, Ctrl+E, Ctrl+D),
and Ctrl+C copies what has focus (details text, values cells, keys)."""

from __future__ import annotations

from pathlib import Path

import torch
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QGuiApplication, QTextCursor
from PySide6.QtWidgets import QApplication

from ckpt_gui.qt.export import ExportDialog
from ckpt_gui.qt.main_window import MainWindow
from tests.qt import files
from tests.qt.files import wait_idle


def press(qtbot, window: MainWindow, key: Qt.Key) -> None:
    """Ctrl+``key`` where the focus is, as the keyboard would send it."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    target = QApplication.focusWidget() or window
    qtbot.keyClick(target, key, Qt.KeyboardModifier.ControlModifier)


def pair(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.randn(4, 4), "v": torch.ones(3), "u": torch.zeros(2)}, a)
    torch.save({"w": torch.randn(4, 4), "v": torch.ones(3) * 2, "u": torch.zeros(2)}, b)
    return a, b


def test_compare_tab_shortcuts(qtbot, window: MainWindow, tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    results = view.results

    press(qtbot, window, Qt.Key.Key_F)  # Ctrl+F: this tab's filter
    assert QApplication.focusWidget() is results.filter_bar.filter_edit

    results.table.setFocus()
    results.table.selectAll()
    press(qtbot, window, Qt.Key.Key_C)  # Ctrl+C: the selected keys
    assert sorted(QGuiApplication.clipboard().text().split("\n")) == ["u", "v", "w"]

    press(qtbot, window, Qt.Key.Key_E)  # Ctrl+E: asks which of A and B
    choice = window.export_choice
    qtbot.waitUntil(choice.isVisible, timeout=5000)
    assert [button.text() for button in choice.choices] == ["Export A: a.pt", "Export B: b.pt"]
    choice.choices[1].click()
    dialogs = [d for d in window.findChildren(ExportDialog) if d.isVisible()]
    assert len(dialogs) == 1 and dialogs[0].path == b
    dialogs[0].shutdown()
    dialogs[0].reject()

    # Ctrl+D in a compare tab asks for a new B (the dialog's title says so); the choice
    # replaces B in this tab, and the tab's title follows.
    assert window.compare_action.shortcut().toString() == "Ctrl+D"
    c = files.sized_state_dict(tmp_path / "c.pt")
    assert window.compare_current_with(c) is view
    wait_idle(qtbot, view)
    assert view.path_b == c and window.tabs.count() == 1
    assert window.tabs.tabText(0) == "a.pt ↔ c.pt"
    assert "B: " + str(c) in window.tabs.tabToolTip(0)


def test_ctrl_c_copies_what_has_focus(qtbot, window: MainWindow, tmp_path: Path) -> None:
    view = files.opened(qtbot, window, files.training_checkpoint(tmp_path / "t.pt"))
    model = view.model
    weight = next(
        it for it in model.root_item().walk() if it.key == "model_state_dict.linear1.weight"
    )
    view.tree.select_item(weight)
    view.plots.setCurrentWidget(view.values)
    wait_idle(qtbot, view)

    view.tree.view.setFocus()  # the tree: its keys
    press(qtbot, window, Qt.Key.Key_C)
    assert QGuiApplication.clipboard().text() == "model_state_dict.linear1.weight"

    table = view.values.table  # the values table: its selected cells, tab-separated
    table.setFocus()
    selection = table.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select
    for row, column in ((0, 0), (0, 1), (1, 0), (1, 1)):
        selection.select(table.model().index(row, column), flags)
    press(qtbot, window, Qt.Key.Key_C)
    cells = [line.split("\t") for line in QGuiApplication.clipboard().text().split("\n")]
    expected = [[table.model().index(r, c).data() for c in (0, 1)] for r in (0, 1)]
    assert cells == expected and all(cells[0])

    browser = view.details.browser  # the details panel: the selected text
    browser.setFocus()
    cursor = browser.textCursor()
    text = browser.toPlainText()
    start = text.index("model_state_dict.linear1.weight")
    cursor.setPosition(start)
    cursor.setPosition(start + len("model_state_dict"), QTextCursor.MoveMode.KeepAnchor)
    browser.setTextCursor(cursor)
    press(qtbot, window, Qt.Key.Key_C)
    assert QGuiApplication.clipboard().text() == "model_state_dict"
