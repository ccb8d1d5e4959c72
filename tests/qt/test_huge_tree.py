"""Work on a big tree or a big comparison is spread over turns of the event loop (issue #14):
a filter opens what it keeps within a budget, the tree's columns are fitted once it has its
width, idle work waits until the pending repaint is done, a worker's turn covers the relayout
its batch started, and a comparison's final order is worked out a turn before the rows move."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import shiboken6
import torch
from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QWidget

from ckpt_gui.core.diff import diff_checkpoints
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.qt import gui_turns
from ckpt_gui.qt.compare import CompareView
from ckpt_gui.qt.compare.cells import HEADERS, REL
from ckpt_gui.qt.compare.table_model import DiffTableModel
from ckpt_gui.qt.widgets import tree_expand, tree_panel
from ckpt_gui.qt.widgets.tree_expand import expand_within
from tests.qt.files import opened


def blocks(path: Path, count: int, per_block: int = 4) -> Path:
    """``model.blocks.<i>.<part>.w``: ``count`` blocks of ``per_block`` module rows each."""
    saved = {
        f"model.blocks.{i}.part{j}.w": torch.zeros(1)
        for i in range(count)
        for j in range(per_block)
    }
    torch.save(saved, path)
    return path


def open_rows(view, parent: QModelIndex | None = None) -> list[str]:  # noqa: ANN001
    """Keys of the rows the tree shows open, top-down."""
    tree, proxy = view.tree.view, view.tree.proxy
    parent = parent or QModelIndex()
    out = []
    for row in range(proxy.rowCount(parent)):
        index = proxy.index(row, 0, parent)
        if tree.isExpanded(index):
            out.append(proxy.mapToSource(index).internalPointer().key)
            out += open_rows(view, index)
    return out


def test_a_filter_opens_all_it_keeps_when_that_is_few_rows(qtbot, window, tmp_path: Path) -> None:
    view = opened(qtbot, window, blocks(tmp_path / "blocks.pt", 30))
    view.tree.set_filter("blocks.12.")
    assert open_rows(view) == [
        "model",
        "model.blocks",
        "model.blocks.12",
        *[f"model.blocks.12.part{j}" for j in range(4)],
    ]
    assert view.tree.visible_rows() == ["model"]


def test_a_filter_that_keeps_many_rows_opens_them_top_down_within_the_budget(
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = opened(qtbot, window, blocks(tmp_path / "blocks.pt", 30))
    monkeypatch.setattr(tree_expand, "EXPAND_SHOWN_ROWS", 60)
    view.tree.set_filter("part")  # keeps every row: 30 blocks of 4 parts of 1 tensor
    # model, blocks and its 30 blocks (32 rows); then, top-down, blocks 0 to 2 with their
    # parts and each part's tensor (8 rows each: 56), block 3 with its parts (60); no more.
    parts = [f"model.blocks.{i}.part{j}" for i in range(3) for j in range(4)]
    want = ["model", "model.blocks"]
    for i in range(3):
        want += [f"model.blocks.{i}", *(p for p in parts if p.startswith(f"model.blocks.{i}."))]
    assert open_rows(view) == [*want, "model.blocks.3"]
    # A narrower filter after it still opens what it keeps (the tree was closed first).
    view.tree.set_filter("blocks.29.part3")
    assert open_rows(view) == ["model", "model.blocks", "model.blocks.29", "model.blocks.29.part3"]


def test_a_big_trees_filtered_rows_are_painted_on_turns_of_their_own(
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applying the filter, making the cells of the rows it shows, and painting them: each on
    a turn of its own (``after_paint``), the cells made before the first paint."""
    view = opened(qtbot, window, blocks(tmp_path / "blocks.pt", 30))
    monkeypatch.setattr(tree_panel, "FILTER_AT_ONCE_ROWS", 10)  # a big tree, as it were
    later: list = []
    monkeypatch.setattr(tree_expand, "after_paint", lambda _context, call: later.append(call))
    viewport, model = view.tree.view.viewport(), view.model
    part = model.root_item().children[0].children[0].children[29].children[0]
    assert part.key == "model.blocks.29.part0" and part not in model._cells  # never shown yet
    view.tree.set_filter("blocks.29.")
    assert not viewport.updatesEnabled() and len(later) == 1  # not painted on the filter's turn
    later.pop()()  # the next turn: the rows laid out, the cells of those shown made
    assert model._cells[part][0] is not None
    assert not viewport.updatesEnabled() and len(later) == 1
    later.pop()()  # the one after: painted
    assert viewport.updatesEnabled()


def test_expand_within_skips_a_row_that_does_not_fit_and_opens_later_ones(
    qtbot, window, tmp_path: Path
) -> None:
    saved = {f"big.{i}": torch.zeros(1) for i in range(20)}
    saved |= {f"small.{i}": torch.zeros(1) for i in range(3)}
    torch.save(saved, tmp_path / "rows.pt")
    view = opened(qtbot, window, tmp_path / "rows.pt")
    tree = view.tree.view
    tree.collapseAll()
    assert expand_within(tree, budget=10) == 2 + 3  # two top rows, and small's three
    keys = open_rows(view)
    assert keys == ["small"]


def test_the_tree_is_fitted_once_it_shows_not_again_when_statistics_come(
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tab's tree gets its model before it shows, when it has no width yet: its Name column
    is fitted when it shows, and stays as it is when the statistics arrive (which would
    repaint the whole tree once more)."""
    # As a big tree: the statistics columns keep their bounded widths while rows fill in.
    monkeypatch.setattr(tree_panel, "FIT_ALL", 2)
    window.resize(1800, 900)
    torch.save({"model.a_long_module_name.weight": torch.zeros(2)}, tmp_path / "long.pt")
    view = window.open_path(tmp_path / "long.pt")
    header = view.tree.view.header()
    at_load: list[int] = []
    view.loaded.connect(lambda: at_load.append(header.sectionSize(0)))
    qtbot.waitUntil(view.is_idle, timeout=20_000)
    assert view.state == "ready", view.error_message
    assert at_load == [header.sectionSize(0)]
    assert at_load[0] > tree_panel.NAME_WIDTH[0]  # fitted to its names, not to no room


def test_after_paint_runs_on_a_later_turn_and_not_for_a_deleted_context(qtbot) -> None:
    order: list[str] = []
    keep, gone = QObject(), QObject()
    gui_turns.after_paint(keep, lambda: order.append("after"))
    gui_turns.after_paint(gone, lambda: order.append("gone"))
    QTimer.singleShot(0, lambda: order.append("posted"))
    shiboken6.delete(gone)
    assert order == []  # never at once
    qtbot.waitUntil(lambda: "after" in order, timeout=2000)
    qtbot.wait(50)
    assert order == ["posted", "after"]  # behind what was queued, and not for ``gone``


class Painted(QWidget):
    """Notes, at each paint, whether ``turn`` was already given."""

    def __init__(self, turn: threading.Event) -> None:
        super().__init__()
        self.turn = turn
        self.seen: list[bool] = []

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        self.seen.append(self.turn.is_set())


def test_a_workers_turn_comes_after_the_repaint_its_batch_asked_for(qtbot) -> None:
    """A view relayouts on a zero timer after rows are inserted, and asks for its repaint
    then; the window paints on a timer of its own: the worker waits until that is done, so
    the repaint never competes with it for the GIL."""
    turn = threading.Event()
    widget = Painted(turn)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    qtbot.wait(50)
    widget.seen.clear()
    relayout = QTimer()
    relayout.setSingleShot(True)
    relayout.setInterval(0)
    relayout.timeout.connect(widget.update)
    relayout.start()  # as a batch's handler does, by inserting rows
    gui_turns.give_turn(turn)
    qtbot.waitUntil(turn.is_set, timeout=2000)
    assert widget.seen == [False]


def test_the_final_order_is_worked_out_before_the_rows_move(qtmodeltester, tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    a = {f"layer.{i}.weight": torch.randn(4, generator=g) for i in range(8)}
    b = {k: v * (1 + i / 10) for i, (k, v) in enumerate(a.items())}  # changed more and more
    del b["layer.3.weight"]  # only in A: no measure, last
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    with open_checkpoint(tmp_path / "a.pt") as ca, open_checkpoint(tmp_path / "b.pt") as cb:
        entries = diff_checkpoints(ca, cb).entries
    assert len(entries) == 8
    model = DiffTableModel()
    model.sort(REL, Qt.SortOrder.DescendingOrder)
    model.add_entries(entries[3:])
    assert model.sorted_order() is None  # the first batch is in order
    model.add_entries(entries[:3])
    before = model.entries()
    order = model.sorted_order()
    assert order is not None and sorted(order) == list(range(len(before)))
    assert model.entries() == before  # nothing moved yet
    model.make_cells(order[:2])
    top = before[order[0]]
    assert all(model._cells[id(top)][c] is not None for c in range(len(HEADERS)))
    model.ensure_sorted(order)
    assert model.entries() == [before[i] for i in order]
    again = DiffTableModel()
    again.sort(REL, Qt.SortOrder.DescendingOrder)
    again.add_entries(entries[5:])
    again.add_entries(entries[2:5])
    stale = again.sorted_order()
    again.add_entries(entries[:2])  # rows came since: the order worked out no longer fits
    again.ensure_sorted(stale)
    assert again.entries() == model.entries()  # as one sort of every row
    qtmodeltester.check(model)


def test_swap_while_the_report_is_shown_step_by_step_drops_the_old_steps(
    qtbot, tmp_path: Path
) -> None:
    """A finished comparison is shown one step per turn, each after the last one's repaint;
    Swap in between starts again, and the first comparison's steps are not taken after it."""
    g = torch.Generator().manual_seed(0)
    a = {f"layer.{i}.weight": torch.randn(8, generator=g) for i in range(6)}
    b = {k: v * 2 for k, v in a.items() if k != "layer.5.weight"}  # layer.5 only in A
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    view = CompareView(tmp_path / "a.pt", tmp_path / "b.pt")
    qtbot.addWidget(view)
    view.show()
    finished: list[str] = []
    view.compare_finished.connect(lambda: finished.append(view.path_a.name))
    view.start()
    qtbot.waitUntil(lambda: len(view._steps) > 0, timeout=30_000)  # the report, step by step
    first = view._steps
    view.swap()
    assert view._steps is not first and first  # the first steps were left as they were
    qtbot.waitUntil(view.is_idle, timeout=30_000)
    qtbot.wait(100)  # any step of the first comparison still waiting would have run by now
    assert finished == ["b.pt"]
    assert view.results.model.counts()["only_b"] == 1  # layer.5: in B now, as swapped
    assert view.results.model.counts()["only_a"] == 0
    view.shutdown()


def test_a_batch_of_statistics_reaches_the_rows_a_few_at_a_time(
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of many small tensors' statistics is handed to the tree at most
    ``STATS_PER_TURN`` at a time, each part on a turn of its own, the tree repainted with the
    last; the sweep ends (and the tab is idle) once every row has its figures, the roll-ups
    above them complete."""
    from ckpt_gui.qt.widgets import stats_sweep

    monkeypatch.setattr(stats_sweep, "STATS_PER_TURN", 50)
    monkeypatch.setattr(stats_sweep, "STATS_BATCH_SECONDS", 10.0)  # one batch: all of them
    sizes: list[int] = []
    repaints: list[bool] = []
    real = tree_panel.TreePanel.apply_stats

    def counted(self, pairs, final: bool = False, repaint: bool = True) -> None:  # noqa: ANN001
        if pairs:
            sizes.append(len(pairs))
            repaints.append(repaint)
        real(self, pairs, final, repaint)

    monkeypatch.setattr(tree_panel.TreePanel, "apply_stats", counted)
    view = opened(qtbot, window, blocks(tmp_path / "blocks.pt", 60))  # 240 tensors
    assert view.model.stats_count() == 240
    assert sizes and max(sizes) <= 50 and sum(sizes) == 240
    assert len(sizes) >= 240 // 50
    assert repaints == [False] * (len(sizes) - 1) + [True]  # one repaint, with the last part
    top = view.model.stats_of(view.model.root_item().children[0])
    assert top is not None and top.tensors == 240
