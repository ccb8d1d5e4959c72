"""Two ``checkpoint.pth`` in different folders, told apart in tabs, compare headers and legends."""

from __future__ import annotations

from pathlib import Path

from ckpt_gui.qt.main_window import MainWindow
from tests.qt import files
from tests.qt.files import wait_idle


def twins(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    a = files.training_checkpoint(tmp_path / "run1" / "checkpoint.pth")
    b = files.marked_state_dict(tmp_path / "run2" / "checkpoint.pth")
    return a, b


def test_tabs_tell_same_named_files_apart(qtbot, window: MainWindow, tmp_path: Path) -> None:
    a, b = twins(tmp_path)
    files.opened(qtbot, window, a)
    assert window.tabs.tabText(0) == "checkpoint.pth"  # alone: its bare name
    files.opened(qtbot, window, b)
    assert [window.tabs.tabText(i) for i in range(2)] == [
        "run1/checkpoint.pth",
        "run2/checkpoint.pth",
    ]
    window.close_tab(0)
    assert window.tabs.tabText(0) == "checkpoint.pth"


def test_compare_names_its_sides_and_follows_swap(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    a, b = twins(tmp_path)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    assert window.tabs.tabText(0) == "run1/checkpoint.pth ↔ run2/checkpoint.pth"
    assert "run1/checkpoint.pth" in view.paths_bar.label_a.text()
    assert "run2/checkpoint.pth" in view.paths_bar.label_b.text()
    assert view.select_key("model_state_dict.linear1.weight") or view.select_largest_change()
    wait_idle(qtbot, view)
    legend = view.results.histograms.ab_legend
    labels = [label.text for _, label in legend.items]
    assert any("run1/checkpoint.pth" in t for t in labels), labels

    view.swap()
    wait_idle(qtbot, view)
    assert window.tabs.tabText(0) == "run2/checkpoint.pth ↔ run1/checkpoint.pth"
    assert (
        window.tabs.tabToolTip(0).startswith("A: ")
        and "run2" in window.tabs.tabToolTip(0).split("\n")[0]
    )
    assert "run2/checkpoint.pth" in view.paths_bar.label_a.text()

    # A drop replaces B: the title follows.
    other = files.sized_state_dict(tmp_path / "other.pt")
    view.set_paths(view.path_a, other)
    wait_idle(qtbot, view)
    assert window.tabs.tabText(0) == "checkpoint.pth ↔ other.pt"
