"""The compare view's pictures: relative change per layer (bars in model order) and, for the
selected key, A's and B's histograms overlaid with the histogram of A − B under them."""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ckpt_gui.core.diff import DiffEntry, LayerChange
from ckpt_gui.core.diff.histograms import EntryHistograms, entry_histograms
from ckpt_gui.core.diff.layers import by_block
from ckpt_gui.qt import theme, workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.formatting import format_float, format_value
from ckpt_gui.qt.widgets.plot_widget import new_plot, style_plot

LABEL_GAP = 12  # pixels between two tick labels at least
MAX_BARS = 80  # more layers than this are grouped by block
VISIBLE_BARS = 120  # bars in view at once; drag the chart to scroll through the rest


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
        theme.style_secondary(self.hover)
        self._plot: pg.PlotWidget | None = None  # made when first needed (``plot``)
        self._bars: pg.BarGraphItem | None = None
        self._layers: list[LayerChange] = []  # as drawn (grouped by block when many)
        self._all_layers: list[LayerChange] = []  # as given
        self._label_step = 1
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
        layout.addStretch(1)  # the plot's place, until it is made
        self._layout = layout
        theme.follow_theme(self, lambda: self.set_layers(self._all_layers))

    @property
    def plot(self) -> pg.PlotWidget:
        """The chart, made on first use: a plot takes tens of milliseconds to make and to paint
        first, too long to add to opening a compare tab (``prepare`` makes it ahead)."""
        if self._plot is None:
            plot = _plot("‖A−B‖/‖A‖", "")
            plot.setMouseEnabled(x=True, y=False)
            plot.scene().sigMouseMoved.connect(self._on_move)
            plot.scene().sigMouseClicked.connect(self._on_click)
            plot.getPlotItem().vb.sigXRangeChanged.connect(lambda *_: self._set_ticks())
            self._layout.insertWidget(1, plot, 1)
            self._layout.setStretch(2, 0)
            self._plot = plot
        return self._plot

    def prepare(self) -> None:
        """Make the plot ahead of its first use."""
        self.plot  # noqa: B018

    def set_layers(
        self, layers: list[LayerChange], grouped: list[LayerChange] | None = None
    ) -> None:
        """Draw ``layers`` (grouped by block when there are too many to read: ``grouped``, when
        already worked out); the y-axis starts at 0, and at most ``VISIBLE_BARS`` bars show at
        once (drag to scroll)."""
        self._all_layers = list(layers)
        layers = by_block(list(layers), MAX_BARS) if grouped is None else grouped
        self._layers = layers
        self._bars = None
        if self._plot is not None:
            self._plot.clear()
        if not layers:
            self.hover.setText("no compared tensors")
            return
        self.plot.clear()
        finite = [x.rel_l2 for x in layers if x.rel_l2 is not None]
        # Nothing changed: a unit axis with empty bars, not a range of zero height.
        top = max(finite, default=0.0) or 1.0
        # A layer whose A side is all zeros has no ratio: draw it a little above the tallest.
        heights = [x.rel_l2 if x.rel_l2 is not None else 1.1 * top for x in layers]
        changed, identical = theme.colour("bar"), theme.colour("bar_identical")
        brushes = [pg.mkBrush(changed if x.changed else identical) for x in layers]
        self._bars = pg.BarGraphItem(
            x=np.arange(len(layers)), height=heights, width=0.8, brushes=brushes, pen=None
        )
        self.plot.addItem(self._bars)
        shown = min(len(layers), VISIBLE_BARS)
        self.plot.setLimits(xMin=-0.6, xMax=len(layers) - 0.4, yMin=0)
        self.plot.setXRange(-0.6, shown - 0.4, padding=0)
        self.plot.setYRange(0, 1.15 * max(max(heights), top), padding=0)
        self._set_ticks()
        if not finite or max(finite) == 0:
            self.hover.setText("nothing changed")
            return
        biggest = max(range(len(layers)), key=lambda i: heights[i])
        note = " (grouped by block)" if len(layers) < len(self._all_layers) else ""
        self.hover.setText(f"largest: {self._describe(biggest)}{note}")

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
        """Label as many bars as fit without two labels overlapping: every ``step``-th bar
        of those in view, measured with the axis font."""
        if not self._layers:
            return
        names = [_short(n) for n in _without_common_prefix([x.name for x in self._layers])]
        axis = self.plot.getAxis("bottom")
        metrics = QFontMetrics(axis.style.get("tickFont") or self.plot.font())
        low, high = self.plot.getPlotItem().vb.viewRange()[0]
        first, last = max(0, math.ceil(low)), min(len(names) - 1, math.floor(high))
        in_view = max(1, last - first + 1)
        widest = max(metrics.horizontalAdvance(n) for n in names[first : last + 1] or names)
        width = max(1.0, self.plot.getPlotItem().vb.width() or self.plot.width())
        per_bar = width / in_view
        step = max(1, math.ceil((widest + LABEL_GAP) / per_bar))
        self._label_step = step
        ticks = [(i, names[i]) for i in range(0, len(names), step)]
        axis.setTicks([ticks, []])

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
        theme.style_secondary(self.title)
        # A's and B's plot with its legend, and A − B's plot: made on first use.
        self._ab: tuple[pg.PlotWidget, pg.LegendItem] | None = None
        self._diff: pg.PlotWidget | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addStretch(1)  # the plots' place, until they show
        self._layout = layout
        self._entry: DiffEntry | None = None
        self._result: EntryHistograms | None = None
        self._names = ("A", "B")
        self._work = workers.WorkerSlot()
        theme.follow_theme(self, self._restyle)

    @property
    def ab_plot(self) -> pg.PlotWidget:
        return self._ab_made()[0]

    @property
    def ab_legend(self) -> pg.LegendItem:
        return self._ab_made()[1]

    @property
    def diff_plot(self) -> pg.PlotWidget:
        if self._diff is None:
            self._diff = self._place(_plot("count", "A − B"), 1 + (self._ab is not None))
        return self._diff

    def preparations(self) -> list[Callable[[], object]]:
        """Steps that make the plots ahead of their first use, one plot each (making one
        takes tens of milliseconds: one per turn of the event loop)."""
        return [self._ab_made, lambda: self.diff_plot]

    def _ab_made(self) -> tuple[pg.PlotWidget, pg.LegendItem]:
        """A's and B's plot and its legend. The plots are made on first use and hidden until
        they first draw: making and first painting them is too long to add to opening a tab."""
        if self._ab is None:
            plot = _plot("count", "value")
            legend = plot.addLegend(offset=(-10, 10))
            style_plot(plot)
            self._ab = (self._place(plot, 1), legend)
        return self._ab

    def _place(self, plot: pg.PlotWidget, index: int) -> pg.PlotWidget:
        plot.setVisible(False)
        self._layout.insertWidget(index, plot, 1)
        return plot

    def _restyle(self) -> None:
        """Draw again in the new theme's colours."""
        if self._result is not None:
            self._draw(self._result)

    def set_names(self, name_a: str, name_b: str) -> None:
        """What the legend calls A and B (names that tell same-named files apart)."""
        if (name_a, name_b) != self._names:
            self._names = (name_a, name_b)
            self._restyle()

    def entry(self) -> DiffEntry | None:
        """The entry shown (or being computed)."""
        return self._entry

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
        if self._ab is not None:
            self._ab[0].clear()
            self._ab[1].clear()
        if self._diff is not None:
            self._diff.clear()

    def _say(self, text: str) -> None:
        """A line of plain text (it quotes keys and values from the files)."""
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setText(text)

    def _draw(self, result: EntryHistograms) -> None:
        entry = self._entry
        assert entry is not None
        self._clear()
        if not self.ab_plot.isVisibleTo(self):  # the first drawing: the plots take their place
            self.ab_plot.setVisible(True)
            self.diff_plot.setVisible(True)
            self._layout.setStretch(self._layout.count() - 1, 0)
        notes = []
        colour_a, colour_b = theme.colour("a"), theme.colour("b")
        # The legend is rich text: the file names in it are escaped.
        name_a, name_b = (f"{side}: {escape(name)}" for side, name in zip("AB", self._names))
        for h, colour, name in ((result.a, colour_a, name_a), (result.b, colour_b, name_b)):
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
                brush=pg.mkBrush(theme.colour("diff") + "50"),
                pen=pg.mkPen(theme.colour("diff"), width=1.5),
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
