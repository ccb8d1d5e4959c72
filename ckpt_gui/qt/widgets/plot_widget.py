"""One look for every pyqtgraph plot in the app: white, no context menu, light grid, plain
tick labels (no "(x0.001)" scaling)."""

from __future__ import annotations

import pyqtgraph as pg


def new_plot(
    left: str | None = None, bottom: str | None = None, grid_x: bool = True
) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    plot.setMenuEnabled(False)
    plot.showGrid(x=grid_x, y=True, alpha=0.15)
    for name, label in (("left", left), ("bottom", bottom)):
        axis = plot.getAxis(name)
        axis.setTextPen("#333333")
        axis.setPen("#999999")
        axis.enableAutoSIPrefix(False)  # "500 (x0.001)" reads worse than "0.5"
        if label is not None:
            plot.setLabel(name, label)
    return plot
