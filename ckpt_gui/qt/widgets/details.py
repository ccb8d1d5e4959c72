"""``DetailsPanel``: everything known about the selected row, selectable and copyable."""

from __future__ import annotations

import dataclasses
from html import escape
from typing import Any

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from ckpt_gui.qt import theme
from ckpt_gui.qt.formatting import (
    format_bytes,
    format_count,
    format_float,
    format_percent,
    format_shape,
)
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.items import Item

STAT_ORDER = ("min", "max", "mean", "std", "l2", "absmax")
STAT_TITLES = {"l2": "norm (L2)", "absmax": "max |x|", "std": "std"}
# Fields of the core's ``Rollup`` that are sizes or working sums, not statistics to show.
ROLLUP_BOOKKEEPING = ("prefix", "nbytes", "sum_squares", "counted", "m2")


def detail_rows(item: Item, stats: Any) -> list[tuple[str, str]]:
    """(label, value) pairs describing ``item``; what the panel shows and what Copy copies."""
    node = item.node
    rows: list[tuple[str, str]] = [("key", item.key or "(top level)")]
    if node is None:
        rows.append(("kind", "module (grouped by dotted name)"))
    elif node.kind == "tensor" and node.tensor is not None:
        info = node.tensor
        lt = info.quant  # a quantized weight's logical tensor: what its figures are of
        rows += [
            ("kind", f"tensor, {lt.label()}" if lt is not None else "tensor"),
            ("role", node.role.replace("_", " ")),
            ("dtype", info.dtype),
            ("shape", format_shape(info.shape)),
            (
                "stride",
                format_shape(info.stride) if info.stride is not None else "n/a (not strided)",
            ),
            ("contiguous", "yes" if info.contiguous else "no"),
            ("saved on", info.device),
            ("elements", f"{info.numel:,}"),
            ("size", f"{format_bytes(info.nbytes)} ({info.nbytes:,} bytes)"),
        ]
        if info.storage_offset:
            rows.append(("storage offset", f"{info.storage_offset:,}"))
        if node.tied:
            storage = f"tied to {node.shares_storage_with} (the same bytes)"
        elif node.shares_storage_with:
            storage = f"shared with {node.shares_storage_with} (distinct bytes)"
        else:
            storage = "own"
        rows.append(("storage", storage))
        if lt is not None:
            rows.append(("stored as", f"{len(lt.parts)} raw tensors ({', '.join(lt.parts)})"))
        if info.container == "numpy":
            rows.append(("saved as", "a NumPy array (shown and measured as a tensor)"))
        if info.layout != "strided":
            rows.append(("layout", f"{info.layout}: {info.stored:,} stored values"))
        if info.no_data:
            rows.append(("data", f"none: {info.no_data}"))
        if node.overrides:
            rows.append(("attributes from the file", ", ".join(node.overrides)))
    else:
        rows.append(("kind", node.kind))
        if node.label:
            rows.append(("recognised as", node.label))
        if node.standin:  # the structural view's made-up object: no real value to show
            rows.append(("stands in for", node.standin))
            what = "import and call" if node.kind == "object" else "import"
            rows.append(("a real load would", f"{what} {node.standin}"))
        elif node.kind == "value" or node.value is not None:
            rows.append(("value", repr(node.value)))
            rows.append(("type", type(node.value).__name__))
    if node is not None and node.param:
        rows.append(("parameter", node.param))
    if item.tensors and not item.is_tensor:
        rows.append(("tensors", f"{item.tensors:,}"))
        rows.append(("elements", f"{format_count(item.numel)} ({item.numel:,})"))
        rows.append(("size", format_bytes(item.nbytes)))
    if isinstance(stats, dict):  # optimizer state: one roll-up per state name
        rows.append(("", "optimizer state, rolled up per state name (counters left out)"))
        for name, rollup in stats.items():
            figures = ", ".join(
                f"{title} {format_float(getattr(rollup, attr), digits=4) or '—'}"
                for attr, title in (("min", "min"), ("max", "max"), ("mean", "mean"), ("l2", "L2"))
            )
            rows.append((name, f"{rollup.tensors} tensors: {figures}"))
        return rows
    rows += stat_rows(stats)
    if stats is not None and not item.is_tensor:
        rows.append(("", "statistics of a module roll up its floating-point tensors"))
    return rows


def stat_rows(stats: Any) -> list[tuple[str, str]]:
    if stats is None:
        return []
    rows = []
    for name in STAT_ORDER:
        value = getattr(stats, name, None)
        if value is not None or hasattr(stats, name):
            rows.append((STAT_TITLES.get(name, name), format_float(value, digits=7) or "—"))
    zeros = col.zero_fraction(stats)
    if zeros is not None:
        rows.append(("zeros", f"{getattr(stats, 'zeros', 0):,} ({format_percent(zeros)})"))
    for name, title in (("nan", "NaN"), ("posinf", "+Inf"), ("neginf", "-Inf")):
        value = getattr(stats, name, None)
        if value is not None:
            rows.append((title, f"{value:,}"))
    is_instance = dataclasses.is_dataclass(stats) and not isinstance(stats, type)
    extra = dataclasses.asdict(stats) if is_instance else {}
    known = set(STAT_ORDER) | {
        "zeros",
        "nan",
        "posinf",
        "neginf",
        "numel",
        "tensors",
        "key",
        "dtype",
        *ROLLUP_BOOKKEEPING,
    }
    for name, value in extra.items():
        if name not in known and isinstance(value, (int, float)) and not isinstance(value, bool):
            text = format_float(value, digits=7) if isinstance(value, float) else f"{value:,}"
            rows.append((name.replace("_", " "), text))
    return rows


class DetailsPanel(QWidget):
    """A read-only, selectable table of the selected row's details."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy these details as text")
        self.copy_button.clicked.connect(self.copy)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.browser, 1)
        layout.addLayout(buttons)
        self._rows: list[tuple[str, str]] = []
        self.show_rows([])

    def show_item(self, item: Item | None, stats: Any) -> None:
        self.show_rows(detail_rows(item, stats) if item is not None else [])

    def show_rows(self, rows: list[tuple[str, str]]) -> None:
        self._rows = rows
        self.copy_button.setEnabled(bool(rows))
        if not rows:
            grey = theme.colour("secondary")
            self.browser.setHtml(f"<p style='color:{grey}'>Select a row to see its details.</p>")
            return
        grey = theme.colour("secondary")
        cells = "".join(
            f"<tr><td style='color:{grey}; padding-right:12px' valign='top'>{escape(k)}</td>"
            f"<td>{escape(v)}</td></tr>"
            for k, v in rows
        )
        self.browser.setHtml(f"<table cellspacing='2'>{cells}</table>")

    def text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self._rows)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text())
