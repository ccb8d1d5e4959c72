"""The compare view's pictures: relative change per layer (bars in model order) and, for the
selected key, A's and B's histograms overlaid with the histogram of A − B under them."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ckpt_gui.core.diff import DiffEntry, LayerChange
from ckpt_gui.core.diff.histograms import EntryHistograms, entry_histograms
from ckpt_gui.qt import workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.formatting import format_float, format_value
from ckpt_gui.qt.widgets.plot_widget import new_plot

COLOUR_A, COLOUR_B, COLOUR_DIFF = "#1f77b4", "#ff7f0e", "#6a1b9a"
BAR_CHANGED, BAR_IDENTICAL = "#1565c0", "#b0bec5"
LABEL_PX = 9  # rough width of one tick-label character, to decide how many names fit


def _plot(left: str, bottom: str) -> pg.PlotWidget:
    return new_plot(left, bottom, grid_x=False)


class LayerChart(QWidget):
    """‖A−B‖/‖A‖ of each layer, in the order the layers appear in A. Hovering names a bar;
    clicking one emits ``layer_clicked(name)``."""

    layer_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Relative change per layer (‖A−B‖/‖A‖, model order)")
        self.title.setStyleSheet("font-weight: bold;")
        self.hover = QLabel("")
        self.hover.setTextFormat(Qt.TextFormat.PlainText)  # layer names come from the file
        self.hover.setStyleSheet("color: #444;")
        self.plot = _plot("‖A−B‖/‖A‖", "")
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.scene().sigMouseMoved.connect(self._on_move)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self._bars: pg.BarGraphItem | None = None
        self._layers: list[LayerChange] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        top = QWidget()
        row = pg.QtWidgets.QHBoxLayout(top)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.title)
        row.addStretch(1)
        row.addWidget(self.hover)
        layout.addWidget(top)
        layout.addWidget(self.plot, 1)

    def set_layers(self, layers: list[LayerChange]) -> None:
        self._layers = list(layers)
        self.plot.clear()
        self._bars = None
        if not layers:
            self.hover.setText("no compared tensors")
            return
        finite = [x.rel_l2 for x in layers if x.rel_l2 is not None]
        top = max(finite, default=1.0) or 1.0
        # A layer whose A side is all zeros has no ratio: draw it a little above the tallest.
        heights = [x.rel_l2 if x.rel_l2 is not None else 1.1 * top for x in layers]
        brushes = [pg.mkBrush(BAR_CHANGED if x.changed else BAR_IDENTICAL) for x in layers]
        self._bars = pg.BarGraphItem(
            x=np.arange(len(layers)), height=heights, width=0.8, brushes=brushes, pen=None
        )
        self.plot.addItem(self._bars)
        self.plot.setXRange(-0.6, len(layers) - 0.4, padding=0)
        self.plot.setYRange(0, 1.15 * max(heights), padding=0)
        self._set_ticks()
        biggest = max(range(len(layers)), key=lambda i: heights[i])
        self.hover.setText(f"largest: {self._describe(biggest)}")

    def layers(self) -> list[LayerChange]:
        return list(self._layers)

    def heights(self) -> list[float]:
        """The bar heights drawn, in model order (for tests and screenshots)."""
        if self._bars is None:
            return []
        return [float(h) for h in self._bars.opts["height"]]

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._set_ticks()

    def _set_ticks(self) -> None:
        if not self._layers:
            return
        longest = max(len(n) for n in _without_common_prefix([x.name for x in self._layers]))
        fit = max(1, int(self.plot.width() / (LABEL_PX * min(longest, 24) + 12)))
        step = max(1, math.ceil(len(self._layers) / fit))
        names = _without_common_prefix([x.name for x in self._layers])
        ticks = [(i, _short(names[i])) for i in range(0, len(names), step)]
        self.plot.getAxis("bottom").setTicks([ticks, []])

    def _index_at(self, pos: QPointF) -> int | None:
        if not self._layers or not self.plot.sceneBoundingRect().contains(pos):
            return None
        x = self.plot.getPlotItem().vb.mapSceneToView(pos).x()
        i = int(round(x))
        return i if 0 <= i < len(self._layers) and abs(x - i) <= 0.45 else None

    def _describe(self, i: int) -> str:
        layer = self._layers[i]
        rel = "A is zero" if layer.rel_l2 is None else format_float(layer.rel_l2)
        return f"{layer.name}: {rel} ({len(layer.keys)} tensors, {layer.changed} changed)"

    def _on_move(self, pos: QPointF) -> None:
        i = self._index_at(pos)
        if i is not None:
            self.hover.setText(self._describe(i))

    def _on_click(self, event: Any) -> None:
        i = self._index_at(event.scenePos())
        if i is not None:
            self.layer_clicked.emit(self._layers[i].name)


def _without_common_prefix(names: list[str]) -> list[str]:
    """Drop the dotted components every name shares (``model_state_dict.``): the labels get
    short enough to read, and the hover line still gives the full name."""
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return [".".join(p[common:]) for p in parts]


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


class PairHistogramPanel(QWidget):
    """Histograms of the selected key: A and B overlaid on one plot, A − B on the other."""

    histograms_ready = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select a row to see A's and B's histograms and that of A − B.")
        self.title.setWordWrap(True)
        self.title.setStyleSheet("color: gray;")
        self.ab_plot = _plot("count", "value")
        self.ab_legend = self.ab_plot.addLegend(offset=(-10, 10))
        self.diff_plot = _plot("count", "A − B")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.ab_plot, 1)
        layout.addWidget(self.diff_plot, 1)
        self._entry: DiffEntry | None = None
        self._result: EntryHistograms | None = None
        self._work = workers.WorkerSlot()

    def show_entry(self, entry: DiffEntry | None) -> None:
        """Show ``entry``'s histograms, computed on a worker; earlier requests are dropped."""
        self._work.abort()
        self._entry, self._result = entry, None
        self._clear()
        if entry is None:
            self._say("Select a row to see A's and B's histograms and that of A − B.")
            self.histograms_ready.emit()
            return
        if entry.kind == "value":
            a = format_value(entry.value_a) if entry.node_a is not None else "(absent)"
            b = format_value(entry.value_b) if entry.node_b is not None else "(absent)"
            self._say(f"{entry.key} is a value, not a tensor: A = {a}, B = {b}")
            self.histograms_ready.emit()
            return
        self._say(f"{entry.key}: computing histograms…")
        self._work.call(
            lambda: entry_histograms(entry), on_finish=self._on_done, on_error=self._on_failed
        )

    def is_busy(self) -> bool:
        return self._work.busy()

    def result(self) -> EntryHistograms | None:
        return self._result

    def shutdown(self, wait_s: float = 5.0) -> None:
        self._work.shutdown(wait_s)

    def _on_done(self, result: EntryHistograms) -> None:
        self._result = result
        self._draw(result)
        self.histograms_ready.emit()

    def _on_failed(self, exc: BaseException) -> None:
        self._say(f"No histogram: {error_text(exc)[0]}")
        self.histograms_ready.emit()

    def _clear(self) -> None:
        self.ab_plot.clear()
        self.ab_legend.clear()
        self.diff_plot.clear()

    def _say(self, text: str) -> None:
        """A line of plain text (it quotes keys and values from the files)."""
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setText(text)

    def _draw(self, result: EntryHistograms) -> None:
        entry = self._entry
        assert entry is not None
        self._clear()
        notes = []
        for h, colour, name in ((result.a, COLOUR_A, "A"), (result.b, COLOUR_B, "B")):
            if h is None or h.is_empty:
                continue
            self.ab_plot.plot(
                h.edges,
                h.counts.astype(float),
                stepMode="center",
                fillLevel=0,
                brush=pg.mkBrush(colour + "40"),
                pen=pg.mkPen(colour, width=1.5),
                name=name,
            )
        diff = result.diff
        if diff is not None and not diff.is_empty:
            self.diff_plot.plot(
                diff.edges,
                diff.counts.astype(float),
                stepMode="center",
                fillLevel=0,
                brush=pg.mkBrush(COLOUR_DIFF + "50"),
                pen=pg.mkPen(COLOUR_DIFF, width=1.5),
            )
        elif diff is None:
            notes.append("no A − B: the two sides differ in shape or one is missing")
        sample = next((h for h in result.sides() if h is not None and h.sampled), None)
        if sample is not None:
            notes.append(f"sampled: {sample.elements:,} of {sample.numel:,} positions")
        m = entry.metrics
        if m is not None and m.nonfinite:
            notes.append(f"{m.nonfinite:,} NaN/Inf positions left out")
        headline = f"<b>{escape(entry.key)}</b>"
        if m is not None and m.rel_l2 is not None:
            headline += f" &nbsp; ‖A−B‖/‖A‖ = {format_float(m.rel_l2)}"
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setText(headline + ("<br>" + escape("; ".join(notes)) if notes else ""))
        self.title.setStyleSheet("")
