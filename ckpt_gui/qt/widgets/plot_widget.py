"""One look for every pyqtgraph plot in the app: the palette's base colour behind, its text
colour for ticks and labels (light or dark theme, following a change live), no context menu, a
light grid, plain tick labels (no "(x0.001)" scaling)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QGuiApplication, QPalette

from ckpt_gui.qt import theme


def plot_colours() -> dict[str, str]:
    """Background, text and axis colours of a plot, from the palette in use."""
    palette = QGuiApplication.palette()
    return {
        "background": palette.color(QPalette.ColorRole.Base).name(),
        "text": palette.color(QPalette.ColorRole.Text).name(),
        "axis": theme.colour("secondary"),
    }


def style_plot(plot: pg.PlotWidget) -> None:
    """Paint ``plot`` with the palette's colours."""
    colours = plot_colours()
    plot.setBackground(colours["background"])
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setTextPen(colours["text"])
        axis.setPen(colours["axis"])
        # Kept for labels set later too (setLabel without a style uses ``labelStyle``).
        axis.labelStyle = {"color": colours["text"]}
        axis.label.setHtml(axis.labelString())
    legend = plot.getPlotItem().legend
    if legend is not None:
        legend.setLabelTextColor(colours["text"])
        for _, label in legend.items:
            label.setText(label.text, color=colours["text"])


def new_plot(
    left: str | None = None, bottom: str | None = None, grid_x: bool = True
) -> pg.PlotWidget:
    # Without a context menu from the start: the view box's menu, made and then dropped,
    # was about a third of the time it takes to make a plot (on the GUI thread).
    plot = pg.PlotWidget(enableMenu=False)
    plot.setMenuEnabled(False)
    plot.showGrid(x=grid_x, y=True, alpha=0.15)
    for name, label in (("left", left), ("bottom", bottom)):
        axis = plot.getAxis(name)
        axis.enableAutoSIPrefix(False)  # "500 (x0.001)" reads worse than "0.5"
        if label is not None:
            plot.setLabel(name, label)
    style_plot(plot)
    theme.follow_theme(plot, lambda: style_plot(plot))
    return plot
