"""The run's heat map: tensors down, checkpoints across, coloured by the chosen figure. Hovering
names the cell; clicking one asks to compare the two checkpoints it stands for, on that tensor."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ckpt_gui.core.run import TensorTrajectory
from ckpt_gui.qt import theme
from ckpt_gui.qt.formatting import format_float
from ckpt_gui.qt.run.metrics import METRICS, series
from ckpt_gui.qt.widgets.plot_widget import new_plot

MAX_LABELLED_ROWS = 40  # more tensors than this: keys in the hover text only
LOG_FLOOR = -8.0  # relative changes below 1e-8 all look the same: "no change"


def cell_values(tensors: list[TensorTrajectory], metric: str, count: int) -> np.ndarray:
    """The matrix drawn (tensors × checkpoints): relative figures on a log10 scale, the norm
    as log10 of its ratio to the first checkpoint's, the cosine as it is, NaN/Inf counts as
    counts. NaN where undefined; a NaN or Inf figure (a broken tensor) becomes +inf."""
    out = np.full((len(tensors), count), np.nan)
    for row, t in enumerate(tensors):
        values = series(t, metric)
        first = values[0] if values else None
        for col, v in enumerate(values[:count]):
            if v is None:
                continue
            if not math.isfinite(v):
                out[row, col] = np.inf
            elif metric in ("rel_change_from_first", "rel_update"):
                out[row, col] = max(math.log10(v), LOG_FLOOR) if v > 0 else LOG_FLOOR
            elif metric == "norm":
                ok = first is not None and math.isfinite(first) and first > 0 and v > 0
                out[row, col] = math.log10(v / first) if ok else np.nan  # type: ignore[operator]
            else:
                out[row, col] = v
    return out


class _Cells(pg.ImageItem):
    """The image, reporting the cell under a click or the pointer."""

    def __init__(self, owner: HeatMap) -> None:
        super().__init__()
        self.owner = owner
        self.setAcceptHoverEvents(True)

    def mouseClickEvent(self, event: Any) -> None:  # noqa: N802 - pyqtgraph override
        cell = self._cell(event.pos())
        if cell is not None:
            event.accept()
            self.owner.cell_clicked.emit(*cell)

    def hoverEvent(self, event: Any) -> None:  # noqa: N802 - pyqtgraph override
        if event.isExit():
            self.setToolTip("")
            return
        cell = self._cell(event.pos())
        self.setToolTip(self.owner.describe(*cell) if cell is not None else "")

    def _cell(self, pos: Any) -> tuple[int, int] | None:
        col, row = int(math.floor(pos.x())), int(math.floor(pos.y()))
        rows, cols = self.owner.shape()
        return (row, col) if 0 <= row < rows and 0 <= col < cols else None


class HeatMap(QWidget):
    cell_clicked = Signal(int, int)  # row (tensor), column (checkpoint)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = new_plot(bottom="checkpoint", grid_x=False)
        self.plot.showGrid(x=False, y=False)
        self.plot.invertY(True)
        self.image = _Cells(self)
        self.image.setColorMap(pg.colormap.get("viridis"))
        self.plot.addItem(self.image)
        # NaN or Inf in a tensor: a red cross over its cell, whatever the colour scale says.
        self.broken = pg.ScatterPlotItem(symbol="x", size=12, pen=None)
        self.plot.addItem(self.broken)
        self.bar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.tensors: list[TensorTrajectory] = []
        self.names: list[str] = []
        self.figure = "rel_update"
        self.matrix = np.zeros((0, 0))

    def shape(self) -> tuple[int, int]:
        return self.matrix.shape[0], self.matrix.shape[1]

    def show_run(self, tensors: list[TensorTrajectory], names: list[str], metric: str) -> None:
        """Draw ``metric`` of ``tensors`` (rows) at the checkpoints called ``names``."""
        self.tensors, self.names, self.figure = list(tensors), list(names), metric
        self.matrix = cell_values(self.tensors, metric, len(names))
        drawn = self.matrix.copy()
        finite = drawn[np.isfinite(drawn)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        if metric == "update_cosine":
            lo, hi = -1.0, 1.0
        if hi <= lo:
            hi = lo + 1.0
        bad = np.argwhere(np.isposinf(drawn))
        drawn[np.isposinf(drawn)] = hi  # a broken tensor shows at the top of the scale...
        red = theme.colour("red")  # ...and is crossed out
        self.broken.setData(
            [c + 0.5 for _, c in bad], [r + 0.5 for r, _ in bad], brush=red, pen=pg.mkPen(red)
        )
        self.image.setImage(drawn.T if drawn.size else np.zeros((1, 1)), levels=(lo, hi))
        self.bar.setLevels((lo, hi))
        title = METRICS[metric][0]
        if metric in ("rel_change_from_first", "rel_update"):
            title = f"log₁₀ {title}"
        elif metric == "norm":
            title = "log₁₀ ‖Wₜ‖/‖W₀‖"
        self.plot.setLabel("left", title)
        bottom = self.plot.getAxis("bottom")
        step = max(1, len(names) // 12)
        bottom.setTicks([[(i + 0.5, n) for i, n in enumerate(names) if i % step == 0]])
        left = self.plot.getAxis("left")
        if len(tensors) <= MAX_LABELLED_ROWS:
            left.setTicks([[(i + 0.5, t.key) for i, t in enumerate(tensors)]])
        else:
            left.setTicks([[]])
        self.plot.getPlotItem().getViewBox().autoRange(padding=0)

    def describe(self, row: int, col: int) -> str:
        t = self.tensors[row]
        value = series(t, self.figure)[col]
        text = "—" if value is None else format_float(value)
        return f"{t.key}\n{self.names[col]}: {METRICS[self.figure][0]} = {text}\nclick to compare"
