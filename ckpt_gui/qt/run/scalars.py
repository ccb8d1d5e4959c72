"""Values across the run: the numbers the checkpoints hold (loss, lr, epoch, best metric) and the
optimizer state's norms, one chosen series at a time, against the checkpoints."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QWidget

from ckpt_gui.core.run import Trajectory
from ckpt_gui.qt import theme
from ckpt_gui.qt.widgets.plot_widget import new_plot

PREFERRED = ("loss", "val_loss", "train_loss", "lr")


class ScalarsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setMaximumWidth(280)
        self.plot = new_plot(bottom="checkpoint")
        self.series: dict[str, list[float | None]] = {}
        self.names: list[str] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addWidget(self.plot, 1)
        self.list.currentTextChanged.connect(self.show_series)

    def show_run(self, run: Trajectory, names: list[str]) -> None:
        """Offer every value series and optimizer norm of ``run``; show the loss first."""
        self.names = names
        self.series = {k: [_num(v) for v in vs] for k, vs in run.values.items()}
        for opt in run.optimizer:
            self.series[f"optimizer: {opt.key}"] = list(opt.norm)
        self.list.clear()
        for name in self.series:
            item = QListWidgetItem(name)
            item.setToolTip(name)
            self.list.addItem(item)
        first = next((n for n in PREFERRED if n in self.series), next(iter(self.series), None))
        if first is not None:
            self.list.setCurrentItem(self.list.findItems(first, Qt.MatchFlag.MatchExactly)[0])
        else:
            self.plot.clear()
            self.plot.setTitle("no values in these checkpoints")

    def show_series(self, name: str) -> None:
        self.plot.clear()
        values = self.series.get(name)
        if not values:
            return
        xs = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        ys = [values[i] for i in xs]
        pen = theme.colour("line")
        self.plot.plot(xs, ys, pen=pen, symbol="o", symbolSize=6, symbolBrush=pen)
        self.plot.setLabel("left", name)
        step = max(1, len(self.names) // 12)
        ticks = [(i, n) for i, n in enumerate(self.names) if i % step == 0]
        self.plot.getAxis("bottom").setTicks([ticks])


def _num(v: int | float | None) -> float | None:
    return None if v is None else float(v)
