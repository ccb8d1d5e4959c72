"""Opening the rows a filter keeps, within a budget; and painting them on a turn of their own.

``QTreeView.expandAll`` lays out every row it opens in one go, with several calls into Python per
row (a filter that keeps all of 8,000 tensors took over 100 ms). After a filter, rows open from
the top down, in the order the view shows them, each one only if its rows still fit in
``budget``: a filter that keeps a few hundred rows opens them all, as ``expandAll`` did, and one
that keeps thousands opens what fills the first screens; Expand all opens the rest.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPoint
from PySide6.QtWidgets import QTreeView

from ckpt_gui.qt.gui_turns import after_paint
from ckpt_gui.qt.models.tree_model import ITEM_ROLE, CheckpointModel

EXPAND_SHOWN_ROWS = 300  # rows a filter opens at most (about five screens of rows)


def expand_within(view: QTreeView, budget: int | None = None) -> int:
    """Open the view's rows top-down while the rows shown stay within ``budget`` (by default
    ``EXPAND_SHOWN_ROWS``); a row whose rows would pass it stays closed (its later siblings may
    still open). Returns the rows shown (top-level rows count too)."""
    budget = EXPAND_SHOWN_ROWS if budget is None else budget
    model = view.model()
    top = model.rowCount(QModelIndex())
    shown = top
    stack = [model.index(row, 0, QModelIndex()) for row in range(top - 1, -1, -1)]
    while stack:
        index = stack.pop()
        rows = model.rowCount(index)
        if rows == 0 or shown + rows > budget:
            continue
        view.expand(index)
        shown += rows
        stack.extend(model.index(row, 0, index) for row in range(rows - 1, -1, -1))
    return shown


def hold_repaint(view: QTreeView, model: CheckpointModel) -> None:
    """Repaint the view on later turns of the event loop (``after_paint``): a filter applied
    to a big tree, laying out the rows it shows and making their cells (their first paint
    formats every figure), and painting them take tens of milliseconds each, and never add
    up to one stall."""
    viewport = view.viewport()
    viewport.setUpdatesEnabled(False)

    def make_cells() -> None:
        index = view.indexAt(QPoint(0, 0))  # lays the rows out first
        columns = [c for c in range(view.model().columnCount()) if not view.isColumnHidden(c)]
        rows = viewport.height() // max(1, view.rowHeight(index)) + 1 if index.isValid() else 0
        for _ in range(rows):
            if not index.isValid():
                break
            item = index.data(ITEM_ROLE)
            for column in columns:
                model.cell(item, column)
            index = view.indexBelow(index)
        after_paint(viewport, lambda: viewport.setUpdatesEnabled(True))

    after_paint(viewport, make_cells)
