"""The panels beside the tree: histogram and values, fed from real tensors on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node
from ckpt_gui.core.value_sample import MAX_1D, MAX_SIDE
from ckpt_gui.qt.models.tree_model import CheckpointModel
from ckpt_gui.qt.widgets.histogram import HistogramPanel
from ckpt_gui.qt.widgets.values import ValuesPanel
from tests.qt import files


@pytest.fixture()
def nodes(tmp_path: Path) -> dict[str, Node]:
    g = torch.Generator().manual_seed(0)
    torch.save(
        {
            "vector": torch.arange(12, dtype=torch.float32),
            "matrix": torch.randn(6, 4, generator=g),
            "long": torch.linspace(0, 1, 10_000),
            "big": torch.randn(5_000_000, generator=g),  # over the core's sample size
            "conv": torch.randn(8, 3, 3, 3, generator=g),
            "step": torch.tensor(42),
            "counts": torch.arange(10, dtype=torch.int64),
        },
        tmp_path / "values.pt",
    )
    ckpt = open_checkpoint(tmp_path / "values.pt")
    return {n.key: n for n in ckpt.tensors()}


@pytest.fixture()
def histogram(qtbot) -> HistogramPanel:
    panel = HistogramPanel()
    qtbot.addWidget(panel)
    panel.resize(500, 400)
    panel.show()
    return panel


@pytest.fixture()
def values(qtbot) -> ValuesPanel:
    panel = ValuesPanel()
    qtbot.addWidget(panel)
    panel.resize(500, 600)
    panel.show()
    return panel


def show_histogram(qtbot, panel: HistogramPanel, selected: list[Node]) -> None:
    with qtbot.waitSignal(panel.histogram_ready, timeout=20_000):
        panel.show_tensors(selected)


def test_histogram_of_one_tensor_counts_every_element(qtbot, histogram, nodes) -> None:
    show_histogram(qtbot, histogram, [nodes["matrix"]])
    (curve,) = histogram.curves()
    x, y = curve.getOriginalDataset()
    assert len(x) == histogram.bins() + 1 and y.sum() == 24
    assert histogram.sampled_label.text() == ""
    assert not histogram.exact_button.isVisible()


def test_bins_and_log_controls_redraw(qtbot, histogram, nodes) -> None:
    show_histogram(qtbot, histogram, [nodes["long"]])
    with qtbot.waitSignal(histogram.histogram_ready, timeout=20_000):
        histogram.bins_box.setCurrentText("32")
    (curve,) = histogram.curves()
    assert len(curve.getOriginalDataset()[1]) == 32
    histogram.log_box.setChecked(True)
    assert histogram.plot.getPlotItem().getAxis("left").logMode
    assert len(histogram.curves()) == 1


def test_sampled_histogram_is_marked_and_exact_is_on_request(qtbot, histogram, nodes) -> None:
    show_histogram(qtbot, histogram, [nodes["big"]])
    assert histogram.sampled_label.text().startswith("Sampled:")
    assert "5,000,000" in histogram.sampled_label.text()
    assert histogram.exact_button.isVisible()
    with qtbot.waitSignal(histogram.histogram_ready, timeout=60_000):
        histogram.exact_button.click()
    (curve,) = histogram.curves()
    assert curve.getOriginalDataset()[1].sum() == 5_000_000
    assert histogram.sampled_label.text() == ""
    assert not histogram.exact_button.isVisible()


def test_several_tensors_overlay_with_a_legend(qtbot, histogram, nodes) -> None:
    show_histogram(qtbot, histogram, [nodes["matrix"], nodes["vector"], nodes["long"]])
    assert len(histogram.curves()) == 3
    assert histogram.legend.isVisible()
    labels = [label.text for _, label in histogram.legend.items]
    assert labels == ["matrix", "vector", "long"]


def test_new_selection_drops_the_old_histogram(qtbot, histogram, nodes) -> None:
    histogram.show_tensors([nodes["big"]])
    show_histogram(qtbot, histogram, [nodes["vector"]])
    (curve,) = histogram.curves()
    assert curve.getOriginalDataset()[1].sum() == 12


def read_values(qtbot, panel: ValuesPanel, node: Node) -> None:
    with qtbot.waitSignal(panel.values_ready, timeout=20_000):
        panel.show_tensor(node)


def headers(panel: ValuesPanel, orientation) -> list[str]:
    model = panel.table_model
    count = model.rowCount() if orientation.name == "Vertical" else model.columnCount()
    return [model.headerData(i, orientation) for i in range(count)]


def test_small_vector_shows_every_value_and_a_line(qtbot, values, nodes) -> None:
    from PySide6.QtCore import Qt

    read_values(qtbot, values, nodes["vector"])
    model = values.table_model
    assert model.rowCount() == 12 and model.columnCount() == 1
    assert model.index(5, 0).data() == "5"
    assert headers(values, Qt.Orientation.Vertical)[-1] == "11"
    assert values.note.text() == "[12] float32: all values"
    assert len(values.plot.getPlotItem().listDataItems()) == 1


def test_matrix_shows_a_table_and_a_heat_map_with_a_colour_bar(qtbot, values, nodes) -> None:
    read_values(qtbot, values, nodes["matrix"])
    assert (values.table_model.rowCount(), values.table_model.columnCount()) == (6, 4)
    assert values.colour_bar is not None
    assert values.image.image.shape == (6, 4)
    expected = nodes["matrix"].load()[2, 3].item()
    assert float(values.table_model.index(2, 3).data()) == pytest.approx(expected, rel=1e-5)


def test_long_vector_is_sampled_with_its_real_indices(qtbot, values, nodes) -> None:
    from PySide6.QtCore import Qt

    read_values(qtbot, values, nodes["long"])
    rows = headers(values, Qt.Orientation.Vertical)
    assert len(rows) <= MAX_1D and rows[0] == "0" and rows[-1] == "9999"
    assert "of 10,000 values" in values.note.text()
    sample = values.sample()
    assert sample is not None and sample.sampled
    np.testing.assert_allclose(sample.values, nodes["long"].load().numpy()[sample.rows])


def test_higher_dimensional_tensor_is_viewed_as_a_matrix(qtbot, values, nodes) -> None:
    read_values(qtbot, values, nodes["conv"])
    assert values.note.text().startswith("[8, 3, 3, 3] float32: viewed as [8, 27]")
    assert values.table_model.columnCount() == 27 <= MAX_SIDE


def test_scalar_and_integer_tensors(qtbot, values, nodes) -> None:
    read_values(qtbot, values, nodes["step"])
    assert values.table_model.index(0, 0).data() == "42"
    assert not values.plot_shown()
    read_values(qtbot, values, nodes["counts"])
    assert values.table_model.index(9, 0).data() == "9"


def test_values_panel_in_the_window_follows_the_selection(qtbot, tmp_path: Path) -> None:
    from ckpt_gui.qt.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    view = win.open_path(files.training_checkpoint(tmp_path / "t.pt"))
    qtbot.waitUntil(view.is_idle, timeout=20_000)
    view.select_largest_tensor()
    qtbot.waitUntil(lambda: view.values.sample() is not None, timeout=20_000)
    assert (view.values.table_model.rowCount(), view.values.table_model.columnCount()) == (5, 10)
    qtbot.waitUntil(lambda: not view.panels_busy(), timeout=20_000)
    assert isinstance(view.model, CheckpointModel)


def test_histogram_says_what_nan_and_inf_it_leaves_out(qtbot, histogram, tmp_path: Path) -> None:
    t = torch.randn(100)
    t[:3] = float("nan")
    t[3] = float("-inf")
    torch.save({"bad": t}, tmp_path / "bad.pt")
    (node,) = open_checkpoint(tmp_path / "bad.pt").tensors()
    show_histogram(qtbot, histogram, [node])
    assert histogram.sampled_label.text() == "3 NaN, 1 -Inf not shown"
    (curve,) = histogram.curves()
    assert curve.getOriginalDataset()[1].sum() == 96


def test_prepared_values_panel_draws_its_first_heat_map_with_the_parts_made_ahead(
    qtbot, values, nodes
) -> None:
    values.prepare()  # the plot now, the heat map's image and colour bar on a turn after it
    assert values._plot is not None and values.colour_bar is None
    qtbot.waitUntil(lambda: values.colour_bar is not None, timeout=5_000)
    bar, image = values.colour_bar, values.image
    assert not bar.isVisible()  # nothing drawn yet: hidden beside an empty plot
    read_values(qtbot, values, nodes["matrix"])
    assert values.colour_bar is bar and values.image is image  # used, not made again
    assert bar.isVisible() and image.image.shape == (6, 4)
    levels = bar.levels()
    bound = float(nodes["matrix"].load().abs().max())
    assert levels == pytest.approx((-bound, bound))  # centred on zero: the data has both signs
    read_values(qtbot, values, nodes["vector"])
    assert not bar.isVisible()  # a line plot: no colour bar
