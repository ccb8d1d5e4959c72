"""The run view: a real training run (tests/core/run_files.py: Adam steps between saves, a frozen
layer, a NaN at one checkpoint) opened in the window, checked against the core's own figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QMessageBox

from ckpt_gui.core.run import compute_trajectory
from ckpt_gui.qt.compare import CompareView
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.run.heatmap import cell_values
from ckpt_gui.qt.run.metrics import pair_for_cell
from ckpt_gui.qt.run.sparkline import SERIES_ROLE
from ckpt_gui.qt.run.table_model import COLUMNS, FINAL
from ckpt_gui.qt.run.view import RunView
from tests.core.run_files import NAN_AT, NAN_KEY, save_all, train_states
from tests.qt.test_app import assert_picture, shoot


@pytest.fixture
def run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "run"
    save_all(folder, train_states(), lambda i, s: f"model_epoch_{i}.pth")
    return folder


def open_run(qtbot, window: MainWindow, paths: list[Path]) -> RunView:
    view = window.open_run(paths)
    qtbot.waitUntil(view.is_idle, timeout=60_000)
    return view


def test_the_table_shows_what_the_core_measured(qtbot, window, run_folder: Path) -> None:
    view = open_run(qtbot, window, [run_folder])
    want = compute_trajectory([run_folder], cache=False)
    assert view.state == "ready" and window.current_page() is view
    assert [t.key for t in view.model.tensors] == [t.key for t in want.tensors]
    by_key = {t.key: t for t in view.model.tensors}
    for t in want.tensors:
        got = by_key[t.key]
        names = ("norm", "rel_change_from_first", "rel_update", "update_cosine", "nan")
        for name in (*names, "min", "max", "std"):
            a, b = getattr(got, name), getattr(t, name)
            assert [x is None for x in a] == [x is None for x in b], (t.key, name)
            for x, y in zip(a, b):
                if x is not None and y is not None:
                    assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12)
    # What the sparkline cells draw is the core's series.
    std_column = COLUMNS.index("std")
    for row, t in enumerate(view.model.tensors):
        assert view.model.index(row, std_column).data(SERIES_ROLE) == t.std
    frozen = {t.key for t in view.model.tensors if "frozen" in t.flags}
    assert frozen == {"model_state_dict.embed.weight", "model_state_dict.embed.bias"}
    broken = by_key[f"model_state_dict.{NAN_KEY}"]
    assert broken.first_nonfinite == NAN_AT and "nonfinite" in broken.flags
    text = view.summary.text()
    assert "5 checkpoints" in text and "step" in text and "2 frozen" in text
    assert "1 with NaN/Inf" in text
    # The row of the broken tensor names the checkpoint where the NaN appeared.
    row = view.model.tensors.index(broken)
    first_bad = view.model.index(row, COLUMNS.index("first_bad")).data()
    assert first_bad == f"model_epoch_{NAN_AT}.pth"
    # Values across the run: the loss is plotted first, optimizer norms are offered.
    scalars = view.scalars
    assert scalars.list.currentItem().text() == "loss"
    assert any(name.startswith("optimizer: ") for name in scalars.series)
    assert scalars.series["loss"] == [pytest.approx(v) for v in want.values["loss"]]


def test_filter_sort_and_heat_map_follow_the_rows(qtbot, window, run_folder: Path) -> None:
    view = open_run(qtbot, window, [run_folder])
    view.focus_filter()
    qtbot.keyClicks(view.filter_edit, "hidden")
    keys = [t.key for t in view.visible_tensors()]
    assert keys and all("hidden" in k for k in keys)
    assert [t.key for t in view.heatmap.tensors] == keys
    qtbot.keyClick(view.filter_edit, Qt.Key.Key_Escape)
    assert view.filter_edit.text() == ""
    top = view.select_largest_tensor()
    finals = [t.rel_change_from_first[-1] or 0 for t in view.model.tensors]
    assert top is not None and top.rel_change_from_first[-1] == max(finals)
    assert view.heatmap.tensors[0] is top
    assert view.copy_keys() == [top.key]
    # The heat map crosses out the NaN cells and colours the frozen layer as "no change".
    matrix = cell_values(view.heatmap.tensors, "rel_update", 5)
    row = [t.key for t in view.heatmap.tensors].index(f"model_state_dict.{NAN_KEY}")
    assert math.isinf(matrix[row, NAN_AT])
    assert len(view.heatmap.broken.data) >= 1
    frozen = [t.key for t in view.heatmap.tensors].index("model_state_dict.embed.weight")
    assert all(v == -8.0 for v in matrix[frozen, 1:])


def test_clicking_a_cell_compares_those_checkpoints(qtbot, window, run_folder: Path) -> None:
    view = open_run(qtbot, window, [run_folder])
    view.tabs.setCurrentWidget(view.heatmap)
    qtbot.waitExposed(view.heatmap)
    row, col = 2, 3
    key = view.heatmap.tensors[row].key
    plot, image = view.heatmap.plot, view.heatmap.image

    def cell_centre() -> QPoint:
        plot.getPlotItem().getViewBox().updateMatrix()  # laid out, whatever the load
        return plot.mapFromScene(image.mapToScene(QPointF(col + 0.5, row + 0.5)))

    qtbot.waitUntil(lambda: plot.viewport().rect().contains(cell_centre()), timeout=10_000)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=cell_centre())
    qtbot.waitUntil(lambda: isinstance(window.current_page(), CompareView), timeout=10_000)
    compare = window.current_page()
    a, b = pair_for_cell("rel_update", col, 5)
    assert (compare.path_a.name, compare.path_b.name) == (
        f"model_epoch_{a}.pth",
        f"model_epoch_{b}.pth",
    )
    assert compare.results.filter_bar.filter_edit.text() == key
    qtbot.waitUntil(compare.is_idle, timeout=30_000)


def test_dropping_several_files_offers_a_run(qtbot, window, run_folder: Path) -> None:
    paths = sorted(run_folder.iterdir())
    window.open_dropped(paths)
    box = window.drop_question
    assert isinstance(box, QMessageBox) and box.isVisible()
    as_run = next(b for b in box.buttons() if b.text() == "Open as a Run")
    qtbot.mouseClick(as_run, Qt.MouseButton.LeftButton)
    page = window.current_page()
    assert isinstance(page, RunView)
    qtbot.waitUntil(page.is_idle, timeout=60_000)
    assert [c.path.name for c in page.checkpoints] == [f"model_epoch_{i}.pth" for i in range(5)]


def test_a_broken_file_in_the_run_is_one_line(qtbot, window, run_folder: Path) -> None:
    (run_folder / "model_epoch_2.pth").write_bytes(b"PK\x03\x04 truncated")
    view = open_run(qtbot, window, [run_folder])
    assert view.state == "failed"
    assert "model_epoch_2.pth" in view.error_message and "\n" not in view.error_message
    assert view.stack.currentWidget() is view.error_view


def test_screenshot_of_a_run(qapp, run_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    assert shoot("--run", str(run_folder), "--screenshot", str(out)) == 0
    assert_picture(out)


def test_sorting_by_change_puts_the_frozen_layer_last(qtbot, window, run_folder: Path) -> None:
    view = open_run(qtbot, window, [run_folder])
    view.table.sortByColumn(COLUMNS.index(FINAL), Qt.SortOrder.DescendingOrder)
    keys = [t.key for t in view.visible_tensors()]
    assert set(keys[-2:]) == {"model_state_dict.embed.weight", "model_state_dict.embed.bias"}


def test_cancel_and_reload(qtbot, window, run_folder: Path) -> None:
    view = window.open_run([run_folder])
    view.cancel()
    assert view.state == "cancelled" and view.is_idle()
    view.reload()  # File > Reload: measured again (from the cache where it was kept)
    qtbot.waitUntil(view.is_idle, timeout=60_000)
    assert view.state == "ready" and len(view.model.tensors) == 11
    window.close_current()
    assert window.current_page() is not view
