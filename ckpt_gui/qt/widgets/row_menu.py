"""The context menus of the tree's and the compare table's rows: copy the key, the shape, the
statistics, the row as Python; compare this tensor with another file; export this subtree."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu, QWidget

from ckpt_gui.core.diff import DiffEntry
from ckpt_gui.core.python_access import python_access
from ckpt_gui.qt.formatting import format_shape
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.items import Item

if TYPE_CHECKING:
    from ckpt_gui.qt.models.tree_model import CheckpointModel


def copy_text(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


def statistics_text(model: CheckpointModel, item: Item) -> str:
    """The row's statistics, one "Title: value" a line, as the columns show them."""
    stats = model.stats_of(item)
    lines = []
    for column in (col.ELEMENTS, col.SIZE, *col.STAT_COLUMNS):
        text = col.display(item, column, stats)
        if text:
            lines.append(f"{col.COLUMNS[column].title}: {text}")
    return "\n".join(lines)


def include_globs(key: str) -> str:
    """Include globs that keep ``key`` and everything below it (glob characters in the key
    matched literally)."""
    literal = "".join(f"[{c}]" if c in "*?[" else c for c in key)
    assert fnmatch.fnmatchcase(key, literal)
    return f"{literal}, {literal}.*"


def tree_row_menu(
    parent: QWidget,
    model: CheckpointModel,
    item: Item,
    *,
    variable: str,
    compare: Callable[[Item], object],
    export: Callable[[Item], object],
) -> QMenu:
    """The tree row's menu; ``compare`` and ``export`` do the last two actions."""
    menu = QMenu(parent)
    menu.addAction("Copy Key").triggered.connect(lambda: copy_text(item.key))
    node = item.node
    if item.is_tensor and node is not None and node.tensor is not None:
        shape = format_shape(node.tensor.shape)
        menu.addAction("Copy Shape").triggered.connect(lambda: copy_text(shape))
    stats = statistics_text(model, item)
    action = menu.addAction("Copy Statistics")
    action.setEnabled(bool(stats))
    action.triggered.connect(lambda: copy_text(stats))
    action = menu.addAction("Copy as Python")
    action.setEnabled(node is not None)
    if node is not None:
        expression = python_access(node, variable)
        action.setToolTip(expression)
        action.triggered.connect(lambda: copy_text(expression))
    menu.addSeparator()
    action = menu.addAction("Compare This Tensor With…")
    action.setEnabled(item.is_tensor)
    action.triggered.connect(lambda: compare(item))
    menu.addAction("Export This Subtree…").triggered.connect(lambda: export(item))
    return menu


def diff_row_menu(parent: QWidget, entry: DiffEntry) -> QMenu:
    """The compare row's menu: its key, its shapes, its change figures, as Python."""
    from ckpt_gui.qt.compare.cells import HEADERS, MAX_ABS, STATUS, cell_text

    menu = QMenu(parent)
    menu.addAction("Copy Key").triggered.connect(lambda: copy_text(entry.key))
    shapes = "\n".join(
        f"{side}: {format_shape(shape) if shape is not None else '(none)'}"
        for side, shape in (("A", entry.shape_a), ("B", entry.shape_b))
    )
    action = menu.addAction("Copy Shapes")
    action.setEnabled(entry.kind == "tensor")
    action.triggered.connect(lambda: copy_text(shapes))
    figures = "\n".join(
        f"{HEADERS[c]}: {cell_text(entry, c)}"
        for c in (STATUS, *range(MAX_ABS, len(HEADERS)))
        if cell_text(entry, c)
    )
    menu.addAction("Copy Statistics").triggered.connect(lambda: copy_text(figures))
    node = entry.node_a or entry.node_b
    action = menu.addAction("Copy as Python")
    action.setEnabled(node is not None)
    if node is not None:
        expression = python_access(node, "sd")
        action.triggered.connect(lambda: copy_text(expression))
    return menu
