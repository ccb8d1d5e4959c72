"""``AdapterModel``: one row per target module of a LoRA adapter (r, alpha, scale, ‖ΔW‖, stable
rank, top singular values, ‖W‖ and ‖ΔW‖/‖W‖ with a base, flags), its A and B factors (and a DoRA
magnitude vector) as child rows, then the ``modules_to_save`` tensors and any other tensors under
rows of their own. Rows exist as soon as the adapter's tensors are sorted; the numbers arrive
module by module from ``iter_report`` on a worker (``set_report``)."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from ckpt_gui.core.adapters import Adapter, AdapterReport, ModuleReport
from ckpt_gui.core.formats.folders import natural
from ckpt_gui.core.tree import Node
from ckpt_gui.qt import theme
from ckpt_gui.qt.formatting import format_float, format_shape
from ckpt_gui.qt.plain_text import plain_tooltip

_Index = QModelIndex | QPersistentModelIndex
NO_PARENT = QModelIndex()
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
KEY_ROLE = Qt.ItemDataRole.UserRole + 2  # a tensor row's key in the adapter's tree

MODULE, R, ALPHA, SCALE, DELTA, STABLE, SIGMA, BASE_NORM, RATIO, FLAGS = range(10)
TITLES = (
    "Module",
    "r",
    "alpha",
    "scale",
    "‖ΔW‖_F",
    "stable rank",
    "top σ",
    "‖W‖_F",
    "‖ΔW‖/‖W‖",
    "Flags",
)
HEADER_TIPS = {
    R: "The rank of the factors (A's rows)",
    ALPHA: "lora_alpha for this module (alpha_pattern applied)",
    SCALE: "alpha/r, or alpha/√r with rsLoRA: ΔW = scale·B·A",
    DELTA: "Frobenius norm of ΔW = scale·B·A, computed from the factors (ΔW is never formed)",
    STABLE: "‖ΔW‖_F² / σ_max²: how many directions ΔW really uses (at most r)",
    SIGMA: "The largest singular values of ΔW (all of them in the cell's tooltip)",
    BASE_NORM: "Frobenius norm of the base weight this module changes",
    RATIO: "‖ΔW‖_F / ‖W‖_F: how much the adapter changes the base weight",
    FLAGS: "What the row needs you to know: untrained, DoRA, no base weight…",
}
BASE_COLUMNS = (BASE_NORM, RATIO)
NUMERIC = (R, ALPHA, SCALE, DELTA, STABLE, SIGMA, BASE_NORM, RATIO)
SIGMA_SHOWN = 3
UNTRAINED_MARK = "⚠ "


class Row:
    """A row: a target module (``module`` set), a tensor (``node`` set) or a heading."""

    def __init__(
        self,
        text: str,
        parent: Row | None = None,
        *,
        module: str | None = None,
        node: Node | None = None,
        tip: str = "",
    ) -> None:
        self.text = text
        self.parent = parent
        self.module = module
        self.node = node
        self.tip = tip
        self.children: list[Row] = []
        self.report: ModuleReport | None = None
        self.detail = ""  # a tensor row's second line: what it is, what it replaces
        if parent is not None:
            parent.children.append(self)

    def row(self) -> int:
        return 0 if self.parent is None else self.parent.children.index(self)


class AdapterModel(QAbstractItemModel):
    """The rows of one adapter (see the module's docstring)."""

    def __init__(self, adapter: Adapter, parent: Any = None) -> None:
        super().__init__(parent)
        self.adapter = adapter
        self.root = Row("")
        self.by_module: dict[str, Row] = {}
        self.saved_rows: dict[str, Row] = {}  # saved tensor key -> its row
        self.has_base = False
        self._build()
        theme.follow_theme(self, self._restyle)

    def _build(self) -> None:
        tensors = self.adapter.tensors
        # Model order as far as names tell it: layers.2 before layers.10 (files sort keys).
        for module in sorted(tensors.modules, key=lambda m: natural(m.name)):
            row = Row(module.name, self.root, module=module.module, tip=module.module)
            self.by_module[module.module] = row
            for label, node in (("lora_A", module.a), ("lora_B", module.b)):
                if node is not None:
                    _tensor_row(label, node, row)
            if module.magnitude is not None:
                magnitude = _tensor_row("magnitude (DoRA)", module.magnitude, row)
                magnitude.detail = "DoRA magnitude vector: the column norms the merged weight gets"
            if module.bias is not None:
                _tensor_row("lora_B bias", module.bias, row)
        if tensors.saved:
            head = Row(
                f"modules_to_save: {len(tensors.saved)} full tensors that replace the base's",
                self.root,
                tip="Trained in full (modules_to_save): a merge writes them instead of the base's",
            )
            for saved in tensors.saved:
                row = _tensor_row(saved.name, saved.node, head)
                row.detail = "replaces the base's " + saved.name
                self.saved_rows[saved.node.key] = row
        if tensors.other:
            head = Row(
                f"other tensors: {len(tensors.other)}, neither LoRA factors nor saved modules",
                self.root,
            )
            for node in tensors.other:
                _tensor_row(node.key, node, head)

    # --- filling in -------------------------------------------------------------------------
    def clear_reports(self, has_base: bool) -> None:
        """Forget the numbers (a new report is coming, with or without a base)."""
        self.has_base = has_base
        for row in self.by_module.values():
            row.report = None
        for row in self.saved_rows.values():
            row.detail = "replaces the base's " + row.text
        self._changed_all()

    def set_reports(self, reports: list[ModuleReport]) -> None:
        for report in reports:
            row = self.by_module.get(report.module)
            if row is None:
                continue
            row.report = report
            first, last = self.index(row.row(), 0), self.index(row.row(), len(TITLES) - 1)
            self.dataChanged.emit(first, last)

    def set_adapter_report(self, report: AdapterReport) -> None:
        """The whole report: says which base tensor each saved module replaces."""
        if report.base is None:
            return
        for saved in report.saved:
            row = self.saved_rows.get(saved["key"])
            if row is not None:
                base_key = saved.get("base_key")
                row.detail = (
                    f"replaces the base's {base_key}"
                    if base_key
                    else "the base has no such tensor: a merge adds it"
                )
        self._changed_all()

    def reports(self) -> list[ModuleReport]:
        """The module reports received so far, in model order."""
        return [r.report for r in self.by_module.values() if r.report is not None]

    def row_of(self, module: str) -> Row | None:
        return self.by_module.get(module)

    def index_of(self, row: Row, column: int = 0) -> QModelIndex:
        if row.parent is None:
            return QModelIndex()
        return self.createIndex(row.row(), column, row)

    # --- Qt ---------------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: _Index = NO_PARENT) -> QModelIndex:
        owner = parent.internalPointer() if parent.isValid() else self.root
        if 0 <= row < len(owner.children) and 0 <= column < len(TITLES):
            return self.createIndex(row, column, owner.children[row])
        return QModelIndex()

    def parent(self, index: _Index = NO_PARENT) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        owner = index.internalPointer().parent
        if owner is None or owner is self.root:
            return QModelIndex()
        return self.createIndex(owner.row(), 0, owner)

    def rowCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        if parent.isValid() and parent.column() != 0:
            return 0
        owner = parent.internalPointer() if parent.isValid() else self.root
        return len(owner.children)

    def columnCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        return len(TITLES)

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def headerData(  # noqa: N802 - Qt override
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(TITLES):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return TITLES[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS.get(section)
        if role == Qt.ItemDataRole.TextAlignmentRole and section in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row: Row = index.internalPointer()
        column = index.column()
        if row.module is None:
            return self._plain_data(row, column, role)
        report = row.report
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(row, column)
        if role == SORT_ROLE:
            return _sort_value(row, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return plain_tooltip(self._tooltip(row, column))
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and report is not None:
            return self._foreground(report, column)
        if role == Qt.ItemDataRole.FontRole and column == FLAGS and report and report.untrained:
            font = QFont()
            font.setBold(True)
            return font
        return None

    def _plain_data(self, row: Row, column: int, role: int) -> Any:
        """A tensor or heading row: its text spans the row (the view spans column 0)."""
        if column != 0:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            if row.node is None:
                return row.text
            return f"{row.text}    {_tensor_text(row.node)}" + (
                f"    — {row.detail}" if row.detail else ""
            )
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = row.node.key if row.node is not None else row.tip
            if row.node is not None:
                tip += "\nDouble-click to show it in the Tensors tab"
            return plain_tooltip(tip) if tip else None
        if role == Qt.ItemDataRole.ForegroundRole:
            return QBrush(QColor(theme.colour("secondary"))) if row.node is not None else None
        if role == Qt.ItemDataRole.FontRole and row.node is None:
            font = QFont()
            font.setBold(True)
            return font
        if role == SORT_ROLE:
            return row.row()
        if role == KEY_ROLE:
            return row.node.key if row.node is not None else None
        return None

    def text(self, row: Row, column: int) -> str:
        """What a module row's cell shows."""
        report = row.report
        if column == MODULE:
            untrained = report is not None and report.untrained
            return (UNTRAINED_MARK if untrained else "") + row.text
        if report is None:
            return "…" if column == DELTA else ""
        if column == R:
            return "" if report.r is None else str(report.r)
        if column == ALPHA:
            return format_float(report.alpha)
        if column == SCALE:
            return format_float(report.scale)
        if column == DELTA:
            return format_float(report.delta_norm)
        if column == STABLE:
            return format_float(report.stable_rank, 3)
        if column == SIGMA:
            return ", ".join(format_float(s, 3) for s in report.singular_values[:SIGMA_SHOWN])
        if column == BASE_NORM:
            return format_float(report.base_norm)
        if column == RATIO:
            return format_float(report.relative)
        if column == FLAGS:
            return "; ".join(report.flags)
        return ""

    def _tooltip(self, row: Row, column: int) -> str:
        report = row.report
        if column == MODULE:
            kind = f" ({report.kind})" if report is not None else ""
            return row.module + kind if row.module else row.text
        if report is None:
            return ""
        if column == SIGMA and report.singular_values:
            values = ", ".join(format_float(s, 4) for s in report.singular_values)
            return f"largest singular values of ΔW: {values}"
        if column in (BASE_NORM, RATIO) and report.base_key:
            return f"base weight: {report.base_key}"
        if column == FLAGS and report.untrained:
            return (
                f"{report.zero_factor} is all zeros, so ΔW = scale·B·A = 0: this module was "
                "never trained (or its training did not reach it)"
            )
        return "; ".join(report.flags) if column == FLAGS else ""

    def _foreground(self, report: ModuleReport, column: int) -> QBrush | None:
        if column == FLAGS and report.flags:
            serious = report.untrained or any(
                f not in ("DoRA",) for f in report.flags if not f.startswith("untrained")
            )
            name = "orange" if report.untrained else ("red" if serious else "secondary")
            return QBrush(QColor(theme.colour(name)))
        if report.untrained and column != MODULE:
            return QBrush(QColor(theme.colour("grey")))
        if report.untrained:
            return QBrush(QColor(theme.colour("orange")))
        return None

    def _changed_all(self) -> None:
        if self.root.children:
            last = len(self.root.children) - 1
            self.dataChanged.emit(self.index(0, 0), self.index(last, len(TITLES) - 1))
            for row in self.root.children:
                if row.children:
                    parent = self.index_of(row)
                    self.dataChanged.emit(
                        self.index(0, 0, parent), self.index(len(row.children) - 1, 0, parent)
                    )

    def _restyle(self) -> None:
        self._changed_all()


def _tensor_row(label: str, node: Node, parent: Row) -> Row:
    return Row(label, parent, node=node)


def _tensor_text(node: Node) -> str:
    info = node.tensor
    if info is None:
        return ""
    return f"{format_shape(info.shape)} {info.dtype}"


def _sort_value(row: Row, column: int) -> Any:
    report = row.report
    if column == MODULE or report is None:
        return row.row() if column == MODULE else -math.inf
    value: Any = {
        R: report.r,
        ALPHA: report.alpha,
        SCALE: report.scale,
        DELTA: report.delta_norm,
        STABLE: report.stable_rank,
        SIGMA: report.singular_values[0] if report.singular_values else None,
        BASE_NORM: report.base_norm,
        RATIO: report.relative,
        FLAGS: "; ".join(report.flags),
    }.get(column)
    if value is None:
        return "" if column == FLAGS else -math.inf
    if isinstance(value, float) and math.isnan(value):
        return -math.inf
    return value
