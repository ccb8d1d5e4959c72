"""The export preview: the plan as a table model (kept keys with their new names and dtypes,
then dropped keys with the reason), a one-paragraph summary with the resulting size, and what
the cast check found."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QWidget

from ckpt_gui.core.export import ExportPlan, dropped_summary
from ckpt_gui.core.export.casting import CastEffect
from ckpt_gui.core.export.check import describe_effects
from ckpt_gui.core.export.run import count
from ckpt_gui.qt import theme
from ckpt_gui.qt.formatting import format_bytes

_Index = QModelIndex | QPersistentModelIndex


class PreviewModel(QAbstractTableModel):
    """The plan as rows: kept keys first (source key, name in the result, dtype, size), then
    dropped ones with their reason. Sizes sort as numbers (``Qt.UserRole``)."""

    HEADERS = ("", "Key", "In the export", "Size")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[str, str, str, int]] = []

    def set_plan(self, plan: ExportPlan | None) -> None:
        self.beginResetModel()
        self._rows = []
        if plan is not None:
            for k in plan.kept:
                detail = k.name if k.dtype == k.source_dtype else f"{k.name}  ({k.dtype})"
                self._rows.append(("kept", k.key, detail, k.nbytes))
            for d in plan.dropped:
                self._rows.append(("dropped", d.key, d.reason, d.nbytes))
        self.endResetModel()

    def row(self, row: int) -> tuple[str, str, str, int]:
        return self._rows[row]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt override
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        status, key, detail, nbytes = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (status, key, detail, format_bytes(nbytes) if nbytes else "")[col]
        if role == Qt.ItemDataRole.UserRole:
            return (status, key, detail, nbytes)[col]
        if role == Qt.ItemDataRole.ForegroundRole and status == "dropped":
            return QBrush(QColor(theme.colour("grey")))
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def plan_summary(plan: ExportPlan) -> str:
    """``Keeps 9 tensors (356 B); drops ... Result: 1.0 KB (the source is 9.1 KB).``"""
    kept = f"Keeps {count(len(plan.kept), 'tensor')} ({format_bytes(plan.tensor_bytes)})"
    if plan.kept_values:
        kept += f" and {count(len(plan.kept_values), 'value')}"
    size = format_bytes(plan.size_after)
    after = size if plan.size_exact else f"about {size}"
    shards = f" in {count(len(plan.files) - 1, 'shard')}" if plan.files else ""
    return (
        f"{kept}; {dropped_summary(plan).replace('dropped', 'drops', 1)}. "
        f"Result: {after}{shards} (the source is {format_bytes(plan.size_before)})."
    )


def cast_summary(plan: ExportPlan, effects: dict[str, CastEffect]) -> tuple[str, str]:
    """(text, colour) of what the plan's cast does beyond rounding, tensor by tensor."""
    lines = describe_effects(plan, effects)
    if not lines:
        fine = f"The cast to {plan.options.dtype} only rounds: no value overflows or flushes."
        return fine, theme.colour("green")
    shown = lines[:4] + ([f"… and {len(lines) - 4} more tensors"] if len(lines) > 4 else [])
    return "\n".join(shown), theme.colour("amber")


def cast_problems(plan: ExportPlan, effects: dict[str, CastEffect] | None) -> list[str]:
    """Why the export is refused: a cast that would overflow when overflow is an error."""
    if not effects or plan.options.on_overflow != "error":
        return []
    overflow = [(k, e) for k, e in effects.items() if e.overflow]
    if not overflow:
        return []
    key, effect = overflow[0]
    return [
        f"{key}: {effect.overflow:,} finite values would become ±inf; choose what "
        "out-of-range values become to export anyway"
    ]
