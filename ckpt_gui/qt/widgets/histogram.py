"""``HistogramPanel``: the histogram of the selected tensors (pyqtgraph), computed on a worker.

Several selected tensors are overlaid with a legend. The core samples big tensors; the panel says
so and offers the exact histogram on request.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.stats import TensorStats
from ckpt_gui.core.tree import Node
from ckpt_gui.qt import jobs, theme, workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.widgets.plot_widget import new_plot, style_plot

BIN_CHOICES = (16, 32, 64, 128, 256, 512, 1024)
MAX_OVERLAY = 8


class HistogramPanel(QWidget):
    """Bins control, log-y toggle, sampled marker and an exact-histogram button over one plot."""

    histogram_ready = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bins_box = QComboBox()
        self.bins_box.addItems([str(b) for b in BIN_CHOICES])
        self.bins_box.setCurrentText("128")
        self.bins_box.setToolTip("Number of bins")
        self.log_box = QCheckBox("Log y")
        self.sampled_label = QLabel()
        self.sampled_label.setTextFormat(Qt.TextFormat.PlainText)
        theme.style_text(self.sampled_label, "orange")
        self.exact_button = QPushButton("Compute exact")
        self.exact_button.setToolTip("Read every element instead of a sample")
        self.exact_button.setVisible(False)
        self.message = QLabel("Select a tensor to see its histogram.")
        self.message.setTextFormat(Qt.TextFormat.PlainText)  # errors name keys from the file
        theme.style_secondary(self.message)
        self.message.setWordWrap(True)

        self._plot: pg.PlotWidget | None = None  # made on first use: it costs ~15 ms
        self._legend: pg.LegendItem | None = None

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Bins"))
        controls.addWidget(self.bins_box)
        controls.addWidget(self.log_box)
        controls.addStretch(1)
        controls.addWidget(self.sampled_label)
        controls.addWidget(self.exact_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.message)
        layout.addStretch(0)  # keeps the message at the top while there is nothing to plot
        self._layout = layout

        self._nodes: list[Node] = []
        self._results: dict[Node, Any] = {}
        self._stats: dict[Node, TensorStats | None] = {}
        self._work = workers.WorkerSlot()
        self.bins_box.currentIndexChanged.connect(lambda _: self._compute(exact=False))
        self.log_box.toggled.connect(lambda _: self._redraw())
        self.exact_button.clicked.connect(lambda: self._compute(exact=True))
        theme.follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        """Draw again in the new theme's colours."""
        if self._plot is not None:
            self._redraw()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    def prepare(self) -> None:
        """Make the plot widget ahead of its first use."""
        self.plot  # noqa: B018

    @property
    def plot(self) -> pg.PlotWidget:
        if self._plot is None:
            plot = new_plot(left="count", bottom="value")
            self._legend = plot.addLegend(offset=(-10, 10))
            style_plot(plot)
            plot.setVisible(False)
            self._layout.insertWidget(self._layout.count() - 1, plot, 1)
            self._plot = plot
        return self._plot

    @property
    def legend(self) -> pg.LegendItem:
        self.plot  # noqa: B018 - makes the plot and its legend
        assert self._legend is not None
        return self._legend

    # --- public -----------------------------------------------------------------------------
    def show_tensors(
        self, nodes: list[Node], stats: Mapping[Node, TensorStats | None] | None = None
    ) -> None:
        """Plot ``nodes``; ``stats`` are their statistics where known (the tree's), which
        "Compute exact" uses for the range instead of reading each tensor twice."""
        self._stats = dict(stats or {})  # statistics may have arrived since the last call
        if nodes == self._nodes:
            return
        self._nodes = list(nodes[:MAX_OVERLAY])
        self._compute(exact=False)
        if len(nodes) > MAX_OVERLAY:
            self.message.setText(
                f"Showing the first {MAX_OVERLAY} of {len(nodes)} selected tensors."
            )

    def is_busy(self) -> bool:
        return self._work.busy()

    def bins(self) -> int:
        return int(self.bins_box.currentText())

    def curves(self) -> list[pg.PlotDataItem]:
        return [i for i in self.plot.getPlotItem().listDataItems()]

    def results(self) -> dict[Node, Any]:
        return dict(self._results)

    def shutdown(self, wait_s: float = 5.0) -> None:
        self._work.shutdown(wait_s)

    def clear(self) -> None:
        """Forget the tensors shown and their results (the tab reloads or closes): the nodes
        hold their tensors, and the tensors the file's memory map."""
        self._work.abort()
        self._nodes, self._results, self._stats = [], {}, {}
        if self._plot is not None:
            self._plot.clear()
            self.legend.clear()
            self._plot.setVisible(False)
        self.sampled_label.setText("")
        self.exact_button.setVisible(False)
        self.message.setText("Select a tensor to see its histogram.")
        self.message.setVisible(True)

    # --- work -------------------------------------------------------------------------------
    def _compute(self, exact: bool) -> None:
        self._work.abort()  # results of earlier selections never arrive
        self._results = {}
        self.plot.clear()
        self.legend.clear()
        self.sampled_label.setText("")
        self.exact_button.setVisible(False)
        if not self._nodes:
            self.plot.setVisible(False)
            self.message.setText("Select a tensor to see its histogram.")
            self.message.setVisible(True)
            return
        self.message.setText("Computing exact histogram…" if exact else "Computing histogram…")
        self.message.setVisible(True)
        nodes, bins = list(self._nodes), self.bins()
        stats = {n: self._stats.get(n) for n in nodes}
        self._work.start(
            lambda cancel: jobs.histogram_events(nodes, bins, exact, cancel, stats),
            on_yield=self._on_results,
            on_finish=lambda _: self._on_done(),
            on_error=self._on_failed,
            with_abort=True,
        )

    def _on_results(self, batch: list[tuple[Node, Any]]) -> None:
        for node, result in batch:
            self._results[node] = result
        self._redraw()

    def _on_done(self) -> None:
        self._redraw()
        self.histogram_ready.emit()

    def _on_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ImportError):
            self.message.setText("Histograms are not available in this version.")
        else:
            self.message.setText(f"No histogram: {error_text(exc)[0]}")
        self.message.setVisible(True)
        self.histogram_ready.emit()

    # --- drawing ----------------------------------------------------------------------------
    def _redraw(self) -> None:
        self.plot.clear()
        self.legend.clear()
        errors, sampled = [], []
        drawn = 0
        overlay = len(self._nodes) > 1
        for i, node in enumerate(self._nodes):
            result = self._results.get(node)
            if result is None:
                continue
            if isinstance(result, str):
                errors.append(f"{node.key}: {result}")
                continue
            edges = np.asarray(result.edges, dtype=float)
            counts = np.asarray(result.counts, dtype=float)
            if counts.size == 0 or edges.size != counts.size + 1:
                errors.append(f"{node.key}: no finite values")
                continue
            colour = theme.series_colour(i)
            brush = pg.mkBrush(colour + ("40" if overlay else "90"))
            log = self.log_box.isChecked()
            if log:  # empty bins have no logarithm: draw them just below one
                counts = np.maximum(counts, 0.5)
            self.plot.plot(
                edges,
                counts,
                stepMode="center",
                fillLevel=(np.log10(0.5) if log else 0),
                brush=brush,
                pen=pg.mkPen(colour, width=1.5),
                name=escape(node.key),  # the legend renders its names as HTML
            )
            drawn += 1
            if getattr(result, "sampled", False):
                sampled.append(node)
        self._apply_log(self.log_box.isChecked())
        if drawn:
            self.plot.setVisible(True)
        if not overlay:
            self.legend.setVisible(False)
        else:
            self.legend.setVisible(True)
        notes = [_sampled_text(sampled, self._results), _nonfinite_text(self._nodes, self._results)]
        self.sampled_label.setText(" · ".join(n for n in notes if n))
        self.exact_button.setVisible(bool(sampled) and not self._work.busy())
        if errors:
            self.message.setText("\n".join(errors))
        self.message.setVisible(bool(errors) or self._work.busy())
        if not self._work.busy() and not errors:
            self.message.setVisible(False)

    def _apply_log(self, on: bool) -> None:
        self.plot.setLogMode(x=False, y=on)
        self.plot.setLabel("left", "count (log)" if on else "count")


def _sampled_text(sampled: list[Node], results: dict[Node, Any]) -> str:
    if not sampled:
        return ""
    if len(sampled) == 1:
        result = results[sampled[0]]
        return f"Sampled: {result.elements:,} of {result.numel:,} values"
    return f"{len(sampled)} sampled"


def _nonfinite_text(nodes: list[Node], results: dict[Node, Any]) -> str:
    """``5 NaN, 1 +Inf not shown`` for what a histogram of finite values leaves out."""
    counts = {"NaN": 0, "+Inf": 0, "-Inf": 0}
    for node in nodes:
        result = results.get(node)
        for name, attr in (("NaN", "nan"), ("+Inf", "posinf"), ("-Inf", "neginf")):
            counts[name] += int(getattr(result, attr, 0) or 0)
    shown = [f"{n:,} {name}" for name, n in counts.items() if n]
    return ", ".join(shown) + " not shown" if shown else ""
