"""The compare view on real files: counts on the toggles, filters, sorting, histograms, the
per-layer chart, key matching, drops and errors; and qtmodeltester on its models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from safetensors.torch import save_file

from ckpt_gui.core.diff import diff_checkpoints, layer_changes
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.qt import workers
from ckpt_gui.qt.compare import CompareView, DiffFilterProxy, DiffTableModel
from ckpt_gui.qt.compare.cells import REL, change_of, status_text
from ckpt_gui.qt.compare.table_model import SORT_ROLE

TIMEOUT = 30_000


def _weights() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "embed.weight": torch.randn(50, 16, generator=g),
        "layer.0.weight": torch.randn(16, 16, generator=g),
        "layer.0.bias": torch.randn(16, generator=g),
        "layer.1.weight": torch.randn(16, 16, generator=g),
        "head.weight": torch.randn(4, 16, generator=g),
        "removed.weight": torch.randn(3, generator=g),
    }


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A (safetensors) and B (torch.save) with one key in each category."""
    a = _weights()
    b = dict(a)
    b["layer.0.weight"] = a["layer.0.weight"] * 1.5  # changed a lot
    b["layer.0.bias"] = a["layer.0.bias"] + 0.001  # changed a little
    b["layer.1.weight"] = a["layer.1.weight"].half()  # recast
    b["head.weight"] = torch.zeros(5, 16)  # reshaped
    del b["removed.weight"]
    b["added.weight"] = torch.ones(2)
    save_file(a, tmp_path / "a.safetensors")
    torch.save({**b, "epoch": 20}, tmp_path / "b.pt")
    return tmp_path / "a.safetensors", tmp_path / "b.pt"


def finish(qtbot, view: CompareView) -> None:
    """Start ``view`` and wait until the diff and the histograms it starts are done."""
    with qtbot.waitSignal(view.compare_finished, timeout=TIMEOUT):
        view.start()
    qtbot.waitUntil(lambda: not view.panels_busy(), timeout=TIMEOUT)


@pytest.fixture()
def view(qtbot, pair) -> CompareView:
    widget = CompareView(*pair)
    qtbot.addWidget(widget)
    widget.resize(1300, 800)
    widget.show()
    finish(qtbot, widget)
    yield widget
    widget.shutdown()


def _toggle_texts(view: CompareView) -> dict[str, str]:
    return {c: " ".join(b.text().split()) for c, b in view.results.filter_bar.buttons.items()}


def test_models_pass_qtmodeltester(qtmodeltester, pair) -> None:
    with open_checkpoint(pair[0]) as a, open_checkpoint(pair[1]) as b:
        report = diff_checkpoints(a, b)
    model = DiffTableModel()
    model.add_entries(report.entries[:3])
    model.add_entries(report.entries[3:])
    qtmodeltester.check(model)
    proxy = DiffFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_categories({"changed", "only_a"})
    proxy.sort(REL, Qt.SortOrder.DescendingOrder)
    qtmodeltester.check(proxy)


def test_counts_summary_and_sorting(view: CompareView) -> None:
    assert view.state == "ready"
    assert _toggle_texts(view) == {
        "changed": "Changed 2",
        "identical": "Identical 1",
        "only_a": "Only A 1",
        "only_b": "Only B 1",
        "shape_mismatch": "Shape 1",
        "dtype_mismatch": "Dtype 1",
    }
    assert view.results.summary.headline().startswith(
        "7 tensors: 1 identical, 2 changed, 1 only in A, 1 only in B, "
        "1 shape and 1 dtype mismatches; largest change layer.0.weight (‖A−B‖/‖A‖ = 0.5)"
    )
    keys = view.visible_keys()
    # Sorted by relative change, largest first; rows without a measure last.
    assert keys[:4] == ["layer.0.weight", "layer.0.bias", "layer.1.weight", "embed.weight"]
    assert set(keys[4:]) == {"head.weight", "removed.weight", "added.weight"}
    first = view.results.proxy.index(0, REL)
    assert first.data() == "0.5" and first.data(SORT_ROLE) == pytest.approx(0.5, rel=1e-6)
    row = [view.results.proxy.index(2, c).data() for c in range(3, 4)]
    assert row == ["float16 [16, 16]"]  # B's dtype and shape beside A's


def test_category_toggles_and_text_filter(view: CompareView, qtbot) -> None:
    view.results.filter_bar.buttons["identical"].setChecked(False)
    view.results.filter_bar.buttons["only_b"].setChecked(False)
    keys = view.visible_keys()
    assert "embed.weight" not in keys and "added.weight" not in keys
    assert len(keys) == 5
    assert _toggle_texts(view)["identical"] == "Identical 1"  # counts do not depend on filters
    view.results.filter_bar.filter_edit.setText("layer.0")
    assert sorted(view.visible_keys()) == ["layer.0.bias", "layer.0.weight"]
    view.results.filter_bar.mode_box.setCurrentIndex(2)  # regex
    view.results.filter_bar.filter_edit.setText("layer.[")
    assert (
        view.visible_keys() == []
        and "invalid regular expression" in view.results.filter_bar.error.text()
    )
    view.results.filter_bar.filter_edit.setText("")
    view.results.filter_bar.buttons["identical"].setChecked(True)
    assert "embed.weight" in view.visible_keys()


def test_values_toggle_shows_plain_values(view: CompareView) -> None:
    assert "epoch" not in view.visible_keys()
    assert view.results.filter_bar.values_button.text().split() == ["Values", "1"]
    view.results.filter_bar.values_button.setChecked(True)
    assert "epoch" in view.visible_keys()
    assert _toggle_texts(view)["only_b"] == "Only B 2"  # epoch is only in B


def test_selecting_a_row_fills_the_histograms(view: CompareView, qtbot) -> None:
    entry = view.selected_entry()  # the largest change is selected once the diff is done
    assert entry is not None and entry.key == "layer.0.weight"
    assert view.results.histograms.result() is not None
    with qtbot.waitSignal(view.results.histograms.histograms_ready, timeout=TIMEOUT):
        assert view.select_key("removed.weight")  # one side only: no A − B
    assert view.results.histograms.result().b is None
    assert view.results.histograms.diff_plot.getPlotItem().listDataItems() == []
    with qtbot.waitSignal(view.results.histograms.histograms_ready, timeout=TIMEOUT):
        assert view.select_key("layer.0.weight")
    result = view.results.histograms.result()
    assert result is not None
    assert result.a.counts.sum() == result.b.counts.sum() == 256
    assert list(result.a.edges) == list(result.b.edges)
    w = _weights()["layer.0.weight"]
    diff = result.diff  # A − B = −0.5 A
    assert diff.edges[0] == pytest.approx(float((-0.5 * w).min()), rel=1e-5)
    assert diff.edges[-1] == pytest.approx(float((-0.5 * w).max()), rel=1e-5)
    assert len(view.results.histograms.ab_plot.getPlotItem().listDataItems()) == 2
    assert len(view.results.histograms.diff_plot.getPlotItem().listDataItems()) == 1
    assert "layer.0.weight" in view.results.histograms.title.text()


def test_layer_chart_in_model_order(view: CompareView) -> None:
    assert view.report is not None
    layers = layer_changes(view.report.entries)
    assert [x.name for x in view.results.chart.layers()] == ["embed", "layer.0", "layer.1"]
    assert view.results.chart.heights() == pytest.approx([x.rel_l2 for x in layers])
    assert view.results.chart.heights()[0] == 0 and view.results.chart.heights()[1] > 0.4


def test_ddp_copy_matches_and_exact_mode_does_not(qtbot, tmp_path: Path) -> None:
    torch.save(_weights(), tmp_path / "plain.pt")
    torch.save({f"module.{k}": v for k, v in _weights().items()}, tmp_path / "ddp.pt")
    view = CompareView(tmp_path / "ddp.pt", tmp_path / "plain.pt")
    qtbot.addWidget(view)
    finish(qtbot, view)
    assert _toggle_texts(view)["identical"] == "Identical 6"
    assert "'module.' stripped from A" in view.results.summary.details()
    with qtbot.waitSignal(view.compare_finished, timeout=TIMEOUT):
        view.paths_bar.match_box.setCurrentIndex(1)  # Keys: exact
    qtbot.waitUntil(lambda: not view.panels_busy(), timeout=TIMEOUT)
    assert _toggle_texts(view)["only_a"] == "Only A 6"
    assert _toggle_texts(view)["identical"] == "Identical 0"
    view.shutdown()


def test_dropping_a_file_replaces_b(view: CompareView, qtbot, tmp_path: Path) -> None:
    twin = tmp_path / "twin.safetensors"
    save_file(_weights(), twin)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(twin))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(view.compare_finished, timeout=TIMEOUT):
        view.dropEvent(event)
    qtbot.waitUntil(lambda: not view.panels_busy(), timeout=TIMEOUT)
    assert view.path_b == twin
    assert view.results.summary.headline().startswith("6 tensors: 6 identical, 0 changed")
    assert view.results.chart.heights() == [0.0] * 5  # embed, layer.0, layer.1, head, removed


def test_a_file_that_cannot_be_opened_shows_why(qtbot, pair, tmp_path: Path) -> None:
    view = CompareView(pair[0], tmp_path / "missing.pt")
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.compare_finished, timeout=TIMEOUT):
        view.start()
    assert view.state == "failed" and view.is_idle()
    assert "missing.pt" in view.error_view.message()
    assert view.stack.currentWidget() is view.error_view
    view.shutdown()


def test_cancel_stops_the_work(qtbot, pair) -> None:
    view = CompareView(*pair)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.compare_finished, timeout=TIMEOUT):
        view.start()
        view.cancel()
    assert view.state == "cancelled" and view.is_idle()
    qtbot.waitUntil(lambda: workers.active_workers() == 0, timeout=TIMEOUT)
    assert view.report is None and view.visible_keys() == []


def test_rows_arriving_in_batches_end_sorted(qtmodeltester, pair) -> None:
    """The first batch shows sorted; later ones wait at the end until ``ensure_sorted`` puts
    every row in its place, as one sort of all rows would (rows without a value last)."""
    with open_checkpoint(pair[0]) as a, open_checkpoint(pair[1]) as b:
        entries = diff_checkpoints(a, b).entries
    model = DiffTableModel()
    model.sort(REL, Qt.SortOrder.DescendingOrder)
    model.add_entries(entries[3:])
    changes = [change_of(model.entry(r)) for r in range(model.rowCount())]
    measured = [c for c in changes if c is not None]
    assert measured == sorted(measured, reverse=True)
    assert all(c is None for c in changes[len(measured) :])  # the rows without a measure last
    model.add_entries(entries[:3])
    assert model.entry(model.rowCount() - 1) is entries[2]  # at the end until the diff is done
    model.ensure_sorted()
    keys = [model.entry(r).key for r in range(model.rowCount())]
    assert keys[:4] == ["layer.0.weight", "layer.0.bias", "layer.1.weight", "embed.weight"]
    assert set(keys[4:]) == {"head.weight", "removed.weight", "added.weight", "epoch"}
    model.sort(0, Qt.SortOrder.DescendingOrder)  # text, the other way round
    assert [model.entry(r).key for r in range(model.rowCount())] == sorted(keys, reverse=True)
    qtmodeltester.check(model)


def test_column_widths_come_from_a_sample_gathered_as_rows_arrive(pair) -> None:
    with open_checkpoint(pair[0]) as a, open_checkpoint(pair[1]) as b:
        entries = diff_checkpoints(a, b).entries
    model = DiffTableModel()
    for entry in entries:
        model.add_entries([entry])
    sample = model.widths
    assert sample.statuses == {status_text(e) for e in entries}
    assert sample.keys[0] == max((e.key for e in entries), key=len)  # the longest first
    shapes = {(e.dtype_a, e.shape_a, e.dtype_b, e.shape_b) for e in entries if e.kind == "tensor"}
    assert {k[:4] for k in sample.sides if k[4] == 0} == shapes  # one row per dtypes and shapes
    model.clear()
    assert not model.widths.statuses and model.widths.keys == []


def test_sorting_moves_the_selection_without_drawing_it_again(view: CompareView) -> None:
    entry = view.selected_entry()
    assert entry is not None and view.results.histograms.entry() is entry
    view.results.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert view.selected_entry() is entry and view.visible_keys() == sorted(view.visible_keys())
    assert not view.panels_busy()  # the histograms shown are the selected row's already


def test_plots_are_made_once_the_comparison_is_done(qtbot, pair) -> None:
    """Opening a compare tab makes no plot (each takes tens of milliseconds to make and first
    paint); the finished comparison makes the chart and the histograms, one step at a time."""
    import pyqtgraph as pg

    widget = CompareView(*pair)
    qtbot.addWidget(widget)
    widget.show()
    assert widget.results.findChildren(pg.PlotWidget) == []
    finish(qtbot, widget)
    assert len(widget.results.findChildren(pg.PlotWidget)) == 3
    assert widget.results.histograms.ab_plot.isVisible()  # the largest change, drawn
    assert len(widget.results.chart.heights()) == 3
    widget.shutdown()
