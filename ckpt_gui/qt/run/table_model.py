"""``RunTableModel``: one row per tensor of a run, with its figures across the checkpoints as
sparklines and the numbers that sort it (final change, largest update, first NaN/Inf)."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from ckpt_gui.core.run import RunCheckpoint, TensorTrajectory
from ckpt_gui.qt import theme
from ckpt_gui.qt.formatting import format_float, format_shape
from ckpt_gui.qt.run.metrics import METRICS, series
from ckpt_gui.qt.run.sparkline import SERIES_ROLE

SORT_ROLE = Qt.ItemDataRole.UserRole + 2
_Index = QModelIndex | QPersistentModelIndex
NO_PARENT = QModelIndex()

KEY, SHAPE, FLAGS = "key", "shape", "flags"
FINAL, LARGEST, FIRST_BAD = "final", "largest", "first_bad"
SPARKS = ("norm", "rel_change_from_first", "rel_update", "update_cosine", "min", "max", "std")
COLUMNS: tuple[str, ...] = (KEY, SHAPE, FLAGS, *SPARKS, FINAL, LARGEST, FIRST_BAD)
TITLES = {
    KEY: "Key",
    SHAPE: "Shape",
    FLAGS: "Flags",
    FINAL: "Change from first",
    LARGEST: "Largest update",
    FIRST_BAD: "First NaN/Inf",
    **{name: METRICS[name][0] for name in SPARKS},
}
TIPS = {
    "norm": "L2 norm at each checkpoint",
    "rel_change_from_first": "‖Wₜ−W₀‖/‖W₀‖: how far each checkpoint is from the first",
    "rel_update": "‖Wₜ−Wₜ₋₁‖/‖Wₜ₋₁‖: the relative update between consecutive checkpoints",
    "update_cosine": "cosine of consecutive updates: 1 = same direction, −1 = reversed",
    "min": "the smallest finite value at each checkpoint",
    "max": "the largest finite value at each checkpoint",
    "std": "the standard deviation of the finite values at each checkpoint",
    FINAL: "‖W−W₀‖/‖W₀‖ at the last checkpoint",
    LARGEST: "the largest relative update between consecutive checkpoints",
    FIRST_BAD: "the first checkpoint holding a NaN or an infinity",
    FLAGS: "frozen: never changed; nonfinite: NaN/Inf; exploding/vanishing: the norm grew "
    "10× / fell to 0.1× of the first",
}


class RunTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.tensors: list[TensorTrajectory] = []
        self.checkpoints: list[RunCheckpoint] = []

    def set_checkpoints(self, checkpoints: list[RunCheckpoint]) -> None:
        self.beginResetModel()
        self.checkpoints, self.tensors = list(checkpoints), []
        self.endResetModel()

    def add(self, tensors: list[TensorTrajectory]) -> None:
        if not tensors:
            return
        first = len(self.tensors)
        self.beginInsertRows(NO_PARENT, first, first + len(tensors) - 1)
        self.tensors.extend(tensors)
        self.endInsertRows()

    def rowCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.tensors)

    def columnCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(  # noqa: N802 - Qt override
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        name = COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return TITLES[name]
        if role == Qt.ItemDataRole.ToolTipRole:
            return TIPS.get(name)
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        t = self.tensors[index.row()]
        name = COLUMNS[index.column()]
        if role == SERIES_ROLE:
            return series(t, name) if name in SPARKS else None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(t, name)
        if role == SORT_ROLE:
            return self._sort_value(t, name)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(t, name)
        if role == Qt.ItemDataRole.ForegroundRole and name == FLAGS and t.flags:
            bad = "nonfinite" in t.flags or "exploding" in t.flags
            return QColor(theme.colour("red" if bad else "grey"))
        if role == Qt.ItemDataRole.TextAlignmentRole and name in (FINAL, LARGEST):
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def _text(self, t: TensorTrajectory, name: str) -> str | None:
        if name == KEY:
            return t.key
        if name == SHAPE:
            return format_shape(t.shape)
        if name == FLAGS:
            return ", ".join(t.flags)
        if name == FINAL:
            return format_float(t.final_change)
        if name == LARGEST:
            return format_float(t.max_rel_update)
        if name == FIRST_BAD:
            i = t.first_nonfinite
            return "" if i is None else self.checkpoint_name(i)
        return None  # sparklines draw themselves

    def _sort_value(self, t: TensorTrajectory, name: str) -> Any:
        if name in (KEY, SHAPE, FLAGS, FIRST_BAD):
            if name == FIRST_BAD:
                return -1 if t.first_nonfinite is None else t.first_nonfinite
            return self._text(t, name) or ""
        values = [v for v in series(t, name) if v is not None] if name in SPARKS else []
        if name == FINAL:
            value = t.final_change
        elif name == LARGEST:
            value = t.max_rel_update
        else:
            value = values[-1] if values else None
        if value is None:
            return -math.inf
        return math.inf if math.isnan(value) else value

    def _tooltip(self, t: TensorTrajectory, name: str) -> str | None:
        if name == KEY:
            return t.key
        if name in SPARKS:
            values = series(t, name)
            lines = [
                f"{self.checkpoint_name(i)}: {format_float(v) if v is not None else '—'}"
                for i, v in enumerate(values)
            ]
            return f"{TITLES[name]}\n" + "\n".join(lines)
        return TIPS.get(name)

    def checkpoint_name(self, i: int) -> str:
        if 0 <= i < len(self.checkpoints):
            c = self.checkpoints[i]
            return c.name
        return str(i)

    def tensor_at(self, row: int) -> TensorTrajectory | None:
        return self.tensors[row] if 0 <= row < len(self.tensors) else None
