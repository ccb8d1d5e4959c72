"""Compare: NaN/Inf that appear only in B are marked; the per-layer chart stays readable for a
400-block model."""

from __future__ import annotations

from pathlib import Path

import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont

from ckpt_gui.qt import theme
from ckpt_gui.qt.compare.cells import STATUS
from ckpt_gui.qt.main_window import MainWindow
from tests.qt.files import wait_idle


def test_nan_only_in_b_is_marked(qtbot, window: MainWindow, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    both = torch.ones(4, 4)
    both[0, 0] = float("nan")
    went_bad = torch.ones(4, 4) * 2
    went_bad[1, 2] = float("inf")
    went_bad[3, 3] = float("nan")
    torch.save({"went_bad": torch.ones(4, 4), "was_bad": both, "fine": torch.ones(3)}, a)
    torch.save({"went_bad": went_bad, "was_bad": both * 3, "fine": torch.ones(3) * 2}, b)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    proxy = view.results.proxy
    status = {proxy.index(r, 0).data(): proxy.index(r, STATUS) for r in range(proxy.rowCount())}
    bad = status["went_bad"]
    assert "NaN/Inf in B (2)" in bad.data()
    assert bad.data(Qt.ItemDataRole.ForegroundRole).name() == theme.colour("red")
    assert isinstance(bad.data(Qt.ItemDataRole.FontRole), QFont)
    assert "finite in A" in bad.data(Qt.ItemDataRole.ToolTipRole)
    for key in ("was_bad", "fine"):  # NaN in both, or none: not marked
        assert "NaN/Inf in B" not in status[key].data()


def blocks(path: Path, count: int, scale: float, seed: int) -> Path:
    generator = torch.Generator().manual_seed(seed)
    torch.save(
        {
            f"model.blocks.{i}.{part}.weight": torch.randn(4, 4, generator=generator) * scale
            for i in range(count)
            for part in ("attn", "mlp", "norm")
        },
        path,
    )
    return path


def _labels_overlap(chart) -> bool:
    from PySide6.QtGui import QFontMetrics

    axis = chart.plot.getAxis("bottom")
    ticks = axis._tickLevels[0] if axis._tickLevels else []
    metrics = QFontMetrics(axis.style.get("tickFont") or chart.plot.font())
    vb = chart.plot.getPlotItem().vb
    low, high = vb.viewRange()[0]
    per_unit = vb.width() / (high - low)
    spans = sorted(
        (
            (x - low) * per_unit - metrics.horizontalAdvance(t) / 2,
            (x - low) * per_unit + metrics.horizontalAdvance(t) / 2,
        )
        for x, t in ticks
        if low <= x <= high
    )
    return any(a[1] > b[0] for a, b in zip(spans, spans[1:]))


def test_layer_chart_of_400_blocks(qtbot, window: MainWindow, tmp_path: Path) -> None:
    window.resize(1280, 800)
    a = blocks(tmp_path / "a.pt", 400, 1.0, 0)
    b = blocks(tmp_path / "b.pt", 400, 1.0, 0)
    # B: block 7 moved, the rest identical.
    state = torch.load(b)
    state["model.blocks.7.mlp.weight"] += 0.5
    torch.save(state, b)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    chart = view.results.chart
    layers = chart.layers()
    assert len(layers) == 400  # grouped by block, not 1,200 bars
    assert layers[7].name == "model.blocks.7" and len(layers[7].keys) == 3
    assert chart.heights()[7] > 0 and max(chart.heights()[:7]) == 0
    low, high = chart.plot.getPlotItem().vb.viewRange()[1]
    assert low == 0 and high > 0
    qtbot.wait(50)
    assert not _labels_overlap(chart)


def test_layer_chart_when_nothing_changed(qtbot, window: MainWindow, tmp_path: Path) -> None:
    a = blocks(tmp_path / "a.pt", 3, 1.0, 0)
    b = blocks(tmp_path / "b.pt", 3, 1.0, 0)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    chart = view.results.chart
    low, high = chart.plot.getPlotItem().vb.viewRange()[1]
    assert low == 0 and high >= 1  # a sane axis, not a range of zero height
    assert chart.hover.text() == "nothing changed"
