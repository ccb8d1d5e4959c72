"""Cells that read in full: fitted columns, no elided numbers or shapes, all statistics in view
at 1280×800, a header menu that chooses columns, header and splitter state kept."""

from __future__ import annotations

from pathlib import Path

import torch
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView

from ckpt_gui.qt.compare.cells import KEY, STATUS
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.widgets.checkpoint_view import CheckpointView
from tests.qt import files
from tests.qt.files import wait_idle

NEVER_ELIDED = (col.DTYPE, col.SHAPE, col.SIZE, *col.STAT_COLUMNS)


def wide_facts(path: Path) -> Path:
    """Shapes and numbers that an ellipsis in the middle used to destroy."""
    torch.save(
        {
            # A view of one element as [8192, 8192]: the shape is real, the file tiny.
            "model.embed_tokens.weight": torch.zeros(1).expand(8192, 8192),
            "model.layers.0.extreme": torch.tensor([-3.0e38, 3.0e38, 1.0, -2.5e-7]),
            "model.layers.0.mlp.up_proj.weight": torch.randn(64, 32),
            "step": 123456,
        },
        path,
    )
    return path


def _rows(view: QAbstractItemView, parent: QModelIndex | None = None) -> list[QModelIndex]:
    model = view.model()
    parent = parent or QModelIndex()
    out: list[QModelIndex] = []
    for row in range(model.rowCount(parent)):
        index = model.index(row, 0, parent)
        out.append(index)
        if view.isExpanded(index):  # type: ignore[attr-defined]
            out += _rows(view, index)
    return out


def _fits(view: QAbstractItemView, index: QModelIndex) -> bool:
    """The cell's text is drawn in full: it fits its column, margins included."""
    text = index.data() or ""
    width = view.columnWidth(index.column())  # type: ignore[attr-defined]
    return view.fontMetrics().horizontalAdvance(text) + 6 <= width


def test_numbers_shapes_and_dtypes_are_never_elided(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    view = files.opened(qtbot, window, wide_facts(tmp_path / "wide.pt"))
    tree = view.tree.view
    tree.expandAll()
    assert tree.textElideMode() == Qt.TextElideMode.ElideNone  # what is not fitted is clipped
    texts = []
    for index in _rows(tree):
        for column in NEVER_ELIDED:
            cell = index.siblingAtColumn(column)
            texts.append(cell.data())
            assert _fits(tree, cell), (cell.data(), tree.columnWidth(column))
    assert "[8192, 8192]" in texts
    assert "-3.000e+38" in texts and "3.000e+38" in texts
    # Keys may elide, on the right, and their tooltip holds them in full.
    name_delegate = tree.itemDelegateForColumn(col.NAME)
    assert name_delegate is not None and name_delegate.mode == Qt.TextElideMode.ElideRight


def test_every_statistic_is_in_view_at_1280x800(qtbot, window: MainWindow, tmp_path: Path) -> None:
    window.resize(1280, 800)
    view = files.opened(qtbot, window, wide_facts(tmp_path / "wide.pt"))
    tree = view.tree.view
    header = tree.header()
    right = tree.viewport().width()
    for column in (*col.STAT_COLUMNS, col.DTYPE, col.SHAPE, col.SIZE):
        assert not header.isSectionHidden(column)
        end = header.sectionViewportPosition(column) + header.sectionSize(column)
        assert end <= right, (col.COLUMNS[column].title, end, right)
    assert tree.horizontalScrollBar().maximum() == 0
    assert header.sectionSize(col.VALUE) <= 100  # mostly empty: it does not take 260 px


def test_compare_cells_read_in_full(qtbot, window: MainWindow, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.randn(4, 4), "big": torch.full((3,), -3.0e38), "v": torch.ones(2)}, a)
    torch.save({"w": torch.randn(4, 4), "big": torch.full((3,), 1.0), "v": torch.ones(5)}, b)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    table = view.results.table
    proxy = table.model()
    texts = []
    for row in range(proxy.rowCount()):
        for column in range(STATUS, proxy.columnCount()):
            cell = proxy.index(row, column)
            texts.append(cell.data())
            assert _fits(table, cell), (cell.data(), table.columnWidth(column))
    assert "shape mismatch" in [t.lower() for t in texts]
    assert "3.000e+38" in texts  # max |A−B|
    assert table.itemDelegateForColumn(KEY) is not None


def test_header_menu_chooses_columns_and_they_persist(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    view = files.opened(qtbot, window, files.training_checkpoint(tmp_path / "t.pt"))
    header = view.tree.view.header()
    assert header.isSectionHidden(col.ROLE)  # hidden by default, to leave room for statistics
    menu = view.tree.columns.menu()
    actions = {a.text(): a for a in menu.actions()}
    assert not actions["Name"].isEnabled()  # the key column cannot go
    actions["Role"].setChecked(True)
    actions["Max"].setChecked(False)
    assert not header.isSectionHidden(col.ROLE) and header.isSectionHidden(col.MAX)
    # A user drag on a column edge is kept as the user's width.
    view.tree.columns._pressed = True
    header.resizeSection(col.MEAN, 150)
    view.tree.columns._pressed = False

    again = window.open_path(files.sized_state_dict(tmp_path / "s.pt"))
    wait_idle(qtbot, again)
    other = again.tree.view.header()
    assert not other.isSectionHidden(col.ROLE) and other.isSectionHidden(col.MAX)
    assert other.sectionSize(col.MEAN) == 150


def test_splitters_persist_and_do_not_jump(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = files.training_checkpoint(tmp_path / "t.pt")
    view = files.opened(qtbot, window, path)
    sizes = view.splitter.sizes()
    side = view.side.sizes()
    for item in view.model.root_item().walk():  # every row, tensors and containers
        if item is view.model.root_item():
            continue
        view.tree.select_item(item)
        qtbot.wait(5)
        assert view.splitter.sizes() == sizes
        assert view.side.sizes() == side
    view.splitter.moveSplitter(sizes[0] - 100, 1)
    moved = view.splitter.sizes()
    assert moved != sizes

    window.close_current()
    fresh = CheckpointView(path)
    qtbot.addWidget(fresh)
    fresh.resize(window.tabs.size())
    fresh.show()
    fresh.start()
    wait_idle(qtbot, fresh)
    assert fresh.splitter.sizes() == moved
