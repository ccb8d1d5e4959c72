"""``RatioChart``: ‖ΔW‖/‖W‖ of every target module, in the table's order (names sorted
naturally: layers.2 before layers.10), grouped by the block it sits in (one colour per kind of
module, a legend above), the y axis from 0. Tick labels name the
blocks and thin out (every 2nd, 4th, ... block) when they would not fit side by side. Hovering
names a bar; clicking one emits ``module_clicked(module)``."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ckpt_gui.qt import theme
from ckpt_gui.qt.adapter.groups import Bar, LayerGroups, layer_groups
from ckpt_gui.qt.formatting import format_float
from ckpt_gui.qt.widgets.plot_widget import new_plot

GROUP_WIDTH = 0.8  # of the 1.0 between two blocks' centres
TICK_GAP_PX = 14  # at least this much space between two tick labels
MAX_LABEL = 24  # characters of a tick label; longer ones are shortened from the left


class RatioChart(QWidget):
    """‖ΔW‖/‖W‖ per module, grouped per layer (see the module's docstring)."""

    module_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("‖ΔW‖/‖W‖ per layer")
        self.title.setStyleSheet("font-weight: bold;")
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)  # module names escaped
        self.hover = QLabel("")
        self.hover.setTextFormat(Qt.TextFormat.PlainText)  # module names come from the file
        theme.style_secondary(self.hover)
        self.plot = new_plot("‖ΔW‖/‖W‖", None, grid_x=False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.scene().sigMouseMoved.connect(self._on_move)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self.groups: LayerGroups | None = None
        self._bars: list[tuple[float, float, Bar]] = []  # (x, width, bar) of each drawn bar
        self._items: list[pg.BarGraphItem] = []
        self._rows: list[tuple[str, str, float | None]] = []
        self._marked = (0, 0)  # untrained modules and modules without a ratio, marked
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title)
        top.addSpacing(12)
        top.addWidget(self.legend)
        top.addStretch(1)
        top.addWidget(self.hover)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        theme.follow_theme(self, lambda: self.set_rows(self._rows))

    def set_rows(self, rows: list[tuple[str, str, float | None]]) -> None:
        """Draw ``(module, name, ratio)`` rows (model order); a None ratio draws no bar."""
        self._rows = list(rows)
        for item in self._items:
            self.plot.removeItem(item)
        self._items, self._bars = [], []
        self.groups = groups = layer_groups(self._rows)
        series = max(1, len(groups.series))
        width = GROUP_WIDTH / series
        by_colour: dict[str, tuple[list[float], list[float], list[float]]] = {}
        zero: list[float] = []  # ΔW = 0 (untrained): no bar to see, so a mark at the axis
        missing: list[float] = []  # no ratio (no base weight): a mark of its own
        for g, group in enumerate(groups.groups):
            alone = all(bar.series < 0 for bar in group.bars)
            for n, bar in enumerate(group.bars):
                if alone:  # modules outside any block: side by side in their own group
                    w = GROUP_WIDTH / len(group.bars)
                    x = g - GROUP_WIDTH / 2 + w * (n + 0.5)
                else:
                    w = width
                    slot = bar.series if bar.series >= 0 else series - 1
                    x = g - GROUP_WIDTH / 2 + w * (slot + 0.5)
                self._bars.append((x, w, bar))
                if bar.ratio is None or not math.isfinite(bar.ratio):
                    missing.append(x)
                    continue
                if bar.ratio == 0:
                    zero.append(x)
                colour = self._colour(bar.series)
                xs, hs, ws = by_colour.setdefault(colour, ([], [], []))
                xs.append(x)
                hs.append(bar.ratio)
                ws.append(w * 0.9)
        for colour, (xs, hs, ws) in by_colour.items():
            item = pg.BarGraphItem(
                x=np.array(xs), height=np.array(hs), width=np.array(ws), brush=colour, pen=None
            )
            self.plot.addItem(item)
            self._items.append(item)
        heights = [bar.ratio for _, _, bar in self._bars if bar.ratio is not None]
        heights = [h for h in heights if math.isfinite(h)]
        top = max(heights, default=0.0) or 1.0
        for xs, name, symbol in ((zero, "orange", "x"), (missing, "red", "t")):
            if xs:
                marks = pg.ScatterPlotItem(
                    x=np.array(xs),
                    y=np.full(len(xs), 0.025 * top),
                    symbol=symbol,
                    size=11,
                    pen=pg.mkPen(theme.colour(name), width=2),
                    brush=theme.colour(name),
                )
                self.plot.addItem(marks)
                self._items.append(marks)
        self._marked = (len(zero), len(missing))
        self.plot.setLabel("bottom", groups.prefix or None)
        count = len(groups.groups)
        self.plot.setXRange(-0.6, max(count, 1) - 0.4, padding=0)
        self.plot.setYRange(0, 1.12 * top, padding=0)  # bars stand on the axis: it starts at 0
        self.plot.getPlotItem().vb.setLimits(yMin=0)
        self._set_legend()
        self._set_ticks()
        drawn = [b for _, _, b in self._bars if _finite(b.ratio)]
        if drawn:
            biggest = max(drawn, key=lambda b: b.ratio or 0.0)
            self.hover.setText(f"largest: {self._describe(biggest)}")
        else:
            self.hover.setText("no module has a ratio")

    def heights(self) -> dict[str, float]:
        """The bar drawn for each module (for tests and screenshots)."""
        return {
            b.module: b.ratio for _, _, b in self._bars if b.ratio is not None and _finite(b.ratio)
        }

    def tick_labels(self) -> list[str]:
        """The block names under the axis now (fewer than the blocks when they would overlap)."""
        ticks = self.plot.getAxis("bottom")._tickLevels  # noqa: SLF001 - set by setTicks
        return [label for _, label in ticks[0]] if ticks else []

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._set_ticks()

    def _colour(self, series: int) -> str:
        return theme.series_colour(series) if series >= 0 else theme.colour("bar_identical")

    def _set_legend(self) -> None:
        groups = self.groups
        parts = []
        if groups is not None and len(groups.series) > 1:
            parts = [
                f"<span style='color:{self._colour(i)}'>■</span>&nbsp;{escape(label)}"
                for i, label in enumerate(groups.series_labels)
            ]
        zero, missing = self._marked
        if zero:
            parts.append(f"<span style='color:{theme.colour('orange')}'>✕</span>&nbsp;untrained")
        if missing:
            parts.append(f"<span style='color:{theme.colour('red')}'>▼</span>&nbsp;no base weight")
        self.legend.setText("&nbsp;&nbsp; ".join(parts))

    def _set_ticks(self) -> None:
        groups = self.groups
        if groups is None or not groups.groups:
            return
        labels = [_short(g.label) for g in groups.groups]
        metrics = QFontMetrics(self.plot.getAxis("bottom").style.get("tickFont") or self.font())
        widest = max(metrics.horizontalAdvance(label) for label in labels) + TICK_GAP_PX
        plot_width = self.plot.getPlotItem().vb.width() or self.plot.width()
        visible = max(1.0, float(len(labels)))  # the whole range is shown (setXRange above)
        fit = max(1, int(plot_width / widest))
        step = max(1, math.ceil(visible / fit))
        ticks = [(float(i), labels[i]) for i in range(0, len(labels), step)]
        self.plot.getAxis("bottom").setTicks([ticks, []])

    def _bar_at(self, pos: QPointF) -> Bar | None:
        if not self._bars or not self.plot.sceneBoundingRect().contains(pos):
            return None
        x = self.plot.getPlotItem().vb.mapSceneToView(pos).x()
        for centre, width, bar in self._bars:
            if abs(x - centre) <= width / 2:
                return bar
        return None

    def _describe(self, bar: Bar) -> str:
        ratio = "no ratio" if bar.ratio is None else format_float(bar.ratio)
        return f"{bar.name}: {ratio}"

    def _on_move(self, pos: QPointF) -> None:
        bar = self._bar_at(pos)
        if bar is not None:
            self.hover.setText(self._describe(bar))

    def _on_click(self, event: Any) -> None:
        bar = self._bar_at(event.scenePos())
        if bar is not None:
            self.module_clicked.emit(bar.module)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL else "…" + name[-(MAX_LABEL - 1) :]
