"""What a big comparison's window paints, and when (issue #14): rows arriving below the ones
shown do not repaint the table, progress bars paint with the rest of the window rather than
at once, the rows of a comparison replaced by another are freed on a later turn, the filter
that keeps every row decides once for all of them, and plots are made without menus."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtWidgets import QApplication, QProgressBar, QWidget

from ckpt_gui.core.diff import DiffEntry
from ckpt_gui.qt import gui_turns
from ckpt_gui.qt.compare.bars import PathsBar
from ckpt_gui.qt.compare.cells import KEY
from ckpt_gui.qt.compare.table import DiffFilterProxy, make_table
from ckpt_gui.qt.compare.table_model import DiffTableModel
from ckpt_gui.qt.widgets.plot_widget import new_plot
from ckpt_gui.qt.widgets.progress import set_progress


class PaintCounter(QObject):
    """Counts the paint events ``widget`` receives."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def entries(first: int, count: int) -> list[DiffEntry]:
    return [
        DiffEntry(
            key=f"layer.{i}.weight",
            name=f"layer.{i}.weight",
            category="only_a",
            kind="tensor",
            dtype_a="float32",
            shape_a=(4,),
        )
        for i in range(first, first + count)
    ]


def shown_table(qtbot, height: int):  # noqa: ANN001, ANN201
    model = DiffTableModel()
    proxy = DiffFilterProxy()
    proxy.setSourceModel(model)
    table = make_table(proxy)
    qtbot.addWidget(table)
    table.resize(500, height)
    table.show()
    qtbot.waitExposed(table)
    return model, table


def settle(qtbot) -> None:  # noqa: ANN001
    """Long enough for the delayed layout and the window's repaint after it."""
    qtbot.wait(60)


def visible_keys(table) -> list[str]:  # noqa: ANN001
    """Keys of the rows inside the viewport, top-down."""
    keys, y = [], 1
    while y < table.viewport().height():
        index = table.indexAt(QPoint(1, y))
        if not index.isValid():
            break
        keys.append(index.siblingAtColumn(KEY).data())
        y += table.rowHeight(index.row())
    return keys


def test_rows_added_below_the_ones_shown_do_not_repaint_the_table(qtbot) -> None:
    model, table = shown_table(qtbot, 200)
    model.add_entries(entries(0, 40))
    settle(qtbot)
    shown = visible_keys(table)
    assert shown[0] == "layer.0.weight" and 3 < len(shown) < 40  # the viewport is full
    paints = PaintCounter(table.viewport())
    scroll = table.verticalScrollBar()
    scroll_range = scroll.maximum()
    model.add_entries(entries(40, 40))
    settle(qtbot)
    assert paints.count == 0
    assert visible_keys(table) == shown
    assert scroll.maximum() > scroll_range  # the scroll bar reaches the new rows
    scroll.setValue(scroll.maximum())
    settle(qtbot)
    assert paints.count > 0
    assert visible_keys(table)[-1] == "layer.79.weight"


def test_rows_added_where_they_show_are_painted(qtbot) -> None:
    model, table = shown_table(qtbot, 400)
    model.add_entries(entries(0, 3))
    settle(qtbot)
    paints = PaintCounter(table.viewport())
    model.add_entries(entries(3, 3))  # into the empty space below the first three
    settle(qtbot)
    assert paints.count > 0
    assert visible_keys(table) == [f"layer.{i}.weight" for i in range(6)]
    # Sorting moves the rows the viewport shows: repainted.
    paints.count = 0
    table.sortByColumn(KEY, Qt.SortOrder.DescendingOrder)
    settle(qtbot)
    assert paints.count > 0
    assert visible_keys(table)[0] == "layer.5.weight"


def test_the_compare_progress_bar_shows_progress_without_painting_at_once(qtbot) -> None:
    bar = PathsBar()
    qtbot.addWidget(bar)
    bar.show()
    qtbot.waitExposed(bar)
    bar.set_progress(0)
    settle(qtbot)
    paints = PaintCounter(bar.progress_bar)
    bar.set_progress(500)
    assert paints.count == 0  # QProgressBar.setValue alone would have painted the window here
    assert bar.progress_bar.isVisible() and bar.progress_bar.value() == 500
    qtbot.waitUntil(lambda: paints.count > 0, timeout=2000)
    bar.set_progress(None)
    assert not bar.progress_bar.isVisible()


def test_set_progress_sets_the_range_and_a_busy_indicator(qtbot) -> None:
    bar = QProgressBar()
    qtbot.addWidget(bar)
    bar.show()
    qtbot.waitExposed(bar)
    set_progress(bar, 3, 10)
    assert (bar.minimum(), bar.maximum(), bar.value()) == (0, 10, 3)
    set_progress(bar, 0, 0)  # busy: Qt's moving indicator
    assert (bar.minimum(), bar.maximum()) == (0, 0)
    set_progress(bar, 7, 10)
    assert (bar.maximum(), bar.value()) == (10, 7)
    assert bar.updatesEnabled()


def test_cleared_rows_are_freed_on_a_later_turn(qtbot) -> None:
    model = DiffTableModel()
    model.add_entries(entries(0, 50))
    old = weakref.ref(model.entry(0))
    model.clear()
    assert model.rowCount() == 0
    gc.collect()
    assert old() is not None  # not in the turn that emptied the table
    qtbot.waitUntil(lambda: old() is None, timeout=2000)
    model.add_entries(entries(0, 2))
    assert [model.entry(r).key for r in range(2)] == ["layer.0.weight", "layer.1.weight"]


def test_the_filter_keeps_hiding_rows_of_a_kind_that_arrives_later(qtbot) -> None:
    """Every row kept is worked out once for all rows; rows of a kind not seen before (a
    plain value, with values hidden) are still filtered out when they come."""
    model = DiffTableModel()
    proxy = DiffFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_show_values(False)
    model.add_entries(entries(0, 3))
    assert proxy.rowCount() == 3
    value = DiffEntry(key="epoch", name="epoch", category="changed", kind="value")
    value.value_a, value.value_b = 1, 2
    model.add_entries([value, *entries(3, 2)])
    keys = [proxy.index(r, KEY).data() for r in range(proxy.rowCount())]
    assert keys == [f"layer.{i}.weight" for i in range(5)]
    proxy.set_show_values(True)
    assert proxy.rowCount() == 6
    proxy.set_categories({"changed"})
    assert [proxy.index(r, KEY).data() for r in range(proxy.rowCount())] == ["epoch"]
    proxy.set_categories({"only_a", "changed"})
    proxy.set_filter("layer.4")
    assert [proxy.index(r, KEY).data() for r in range(proxy.rowCount())] == ["layer.4.weight"]
    proxy.set_filter("")
    model.clear()
    model.add_entries(entries(0, 2))
    assert proxy.rowCount() == 2


def test_plots_have_no_context_menu(qtbot) -> None:
    plot = new_plot("count", "value")
    qtbot.addWidget(plot)
    plot.resize(300, 200)
    plot.show()
    qtbot.waitExposed(plot)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.RightButton, pos=QPoint(150, 100))
    qtbot.wait(50)
    assert QApplication.activePopupWidget() is None


def test_garbage_is_freed_after_the_paint_and_before_a_worker_started_after_it(qtbot) -> None:
    """A comparison started again frees the old rows on a turn of their own, not in the turn
    of Swap, and before its worker runs (so that the two do not compete for the GIL)."""
    order: list[str] = []

    class Rows:
        def __del__(self) -> None:
            order.append("freed")

    class Turn(threading.Event):
        def set(self) -> None:
            order.append("worker's turn")
            super().set()

    gui_turns.release_later(Rows())
    turn = Turn()
    gui_turns.give_turn(turn)  # as a worker started after the rows were cleared
    assert order == []
    qtbot.waitUntil(turn.is_set, timeout=2000)
    assert order == ["freed", "worker's turn"]
