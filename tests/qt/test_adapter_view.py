"""The Adapter tab of a LoRA adapter, driven offscreen with real PEFT adapters: its rows and
numbers are ``iter_report``'s, untrained modules are marked, a base model adds ‖ΔW‖/‖W‖, its
chart and the warning for config targets that match nothing, and the merged export writes what
PEFT's ``merge_and_unload`` gives (a cancelled one writes nothing)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from safetensors.torch import load_file, save_file

from ckpt_gui.core.adapters import ModuleReport, adapter_report, find_adapters
from ckpt_gui.core.export import ExportOptions, ExportProgress, ExportResult
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.qt import workers
from ckpt_gui.qt.adapter import AdapterPanel, MergeExportDialog
from ckpt_gui.qt.adapter import model as cols
from ckpt_gui.qt.adapter.chart import RatioChart
from ckpt_gui.qt.formatting import format_float
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.widgets.checkpoint_view import CheckpointView
from tests.core.adapter_models import edit_config, make_adapter, merged_reference
from tests.core.test_adapter_merge import assert_bitwise, read_back
from tests.qt.files import cancel_mid_write

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]
ZEROED = "model.layers.1.self_attn.v_proj"  # its lora_B is set to zeros in the file


def zero_b(adapter: Path, name: str) -> None:
    """Make one module untrained: its B all zeros, as PEFT initialises it."""
    path = adapter / "adapter_model.safetensors"
    tensors = load_file(path)
    key = next(k for k in tensors if f"{name}.lora_B" in k)
    tensors[key] = torch.zeros_like(tensors[key])
    save_file(tensors, path)


def reference(adapter: Path, base: Path | None = None) -> list[ModuleReport]:
    """The core's report of the adapter, computed apart from the window."""
    with open_checkpoint(adapter) as ckpt, find_adapters(ckpt) as found:
        if base is None:
            return adapter_report(found.adapters[0]).modules
        with open_checkpoint(base) as base_ckpt:
            return adapter_report(found.adapters[0], base_ckpt).modules


def open_adapter(qtbot, window: MainWindow, path: Path) -> tuple[CheckpointView, AdapterPanel]:
    page = window.open_path(path)
    assert isinstance(page, CheckpointView)
    qtbot.waitUntil(lambda: page.adapter_panel is not None, timeout=20_000)
    panel = page.adapter_panel
    assert panel is not None
    qtbot.waitUntil(lambda: panel.report is not None, timeout=20_000)
    qtbot.waitUntil(page.is_idle, timeout=20_000)
    return page, panel


def with_base(qtbot, panel: AdapterPanel, base: Path) -> None:
    with qtbot.waitSignal(panel.report_finished, timeout=20_000):
        panel.open_base(base)


def texts(panel: AdapterPanel, column: int) -> dict[str, str]:
    """What each module row shows in ``column``, by module path."""
    assert panel.model is not None
    return {m: panel.model.text(row, column) for m, row in panel.model.by_module.items()}


def test_rows_and_numbers_are_iter_reports(qtbot, qtmodeltester, window, tmp_path: Path) -> None:
    made = make_adapter(tmp_path, target_modules=TARGETS, modules_to_save=["lm_head"])
    zero_b(made.adapter, ZEROED)
    expected = reference(made.adapter)
    page, panel = open_adapter(qtbot, window, made.adapter)
    assert page.content_tabs is not None and page.content_tabs.currentWidget() is panel
    model = panel.model
    assert model is not None
    qtmodeltester.check(model)
    assert len(expected) == len(TARGETS) * 2 == len(model.by_module)
    for column, value in (
        (cols.R, lambda m: str(m.r)),
        (cols.ALPHA, lambda m: format_float(m.alpha)),
        (cols.SCALE, lambda m: format_float(m.scale)),
        (cols.DELTA, lambda m: format_float(m.delta_norm)),
        (cols.STABLE, lambda m: format_float(m.stable_rank, 3)),
    ):
        assert texts(panel, column) == {m.module: value(m) for m in expected}, cols.TITLES[column]
    first = expected[0]
    assert first.scale == 2.0 and first.delta_norm and first.delta_norm > 0
    row = model.by_module[first.module]
    sigma = model.index(row.row(), cols.SIGMA)
    assert sigma.data() == ", ".join(format_float(s, 3) for s in first.singular_values[:3])
    assert format_float(first.singular_values[-1], 4) in sigma.data(Qt.ItemDataRole.ToolTipRole)
    # The A and B factors are the module's children, shown by key.
    children = [model.index(i, 0, model.index_of(row)).data(cols.KEY_ROLE) for i in range(2)]
    assert children == [first.a_key, first.b_key]
    # Without a base the base columns are hidden and the chart too.
    assert panel.view.isColumnHidden(cols.RATIO) and not panel.chart.isVisibleTo(panel)
    assert not panel.export_button.isEnabled()

    # The untrained module: marked in its row and in a line above the table.
    untrained = [m for m in expected if m.untrained]
    assert [m.name for m in untrained] == [ZEROED]
    zeroed = model.by_module[untrained[0].module]
    assert model.text(zeroed, cols.MODULE) == "⚠ " + ZEROED
    assert model.text(zeroed, cols.FLAGS) == "untrained: B all zeros"
    assert model.text(zeroed, cols.DELTA) == "0"
    assert panel.lines.untrained_label.isVisibleTo(panel)
    assert panel.lines.untrained_label.text().startswith(
        "⚠ 1 of 10 modules are untrained: B all zeros"
    )
    assert sum("untrained" in model.text(r, cols.FLAGS) for r in model.by_module.values()) == 1

    # modules_to_save: the full tensors, shown as what they are.
    heading = model.root.children[len(model.by_module)]
    assert heading.text.startswith("modules_to_save: 2 full tensors that replace the base's")
    shown = [model.index(i, 0, model.index_of(heading)).data() for i in range(2)]
    assert any(s.startswith("lm_head.weight    [32, 16] float32") for s in shown)


def test_sorting_by_a_column_keeps_factors_under_their_module(qtbot, window, tmp_path) -> None:
    made = make_adapter(tmp_path, target_modules=TARGETS)
    expected = reference(made.adapter)
    _, panel = open_adapter(qtbot, window, made.adapter)
    panel.view.sortByColumn(cols.DELTA, Qt.SortOrder.DescendingOrder)
    proxy = panel.proxy
    shown = [proxy.index(i, cols.MODULE).data() for i in range(proxy.rowCount())]
    by_norm = sorted(expected, key=lambda m: m.delta_norm or 0.0, reverse=True)
    assert shown == [m.name for m in by_norm]
    top = proxy.index(0, 0)
    assert [proxy.index(i, 0, top).data().split()[0] for i in range(2)] == ["lora_A", "lora_B"]


def test_the_weights_file_opens_as_an_adapter_and_factors_link_to_the_tree(
    qtbot, window, tmp_path: Path
) -> None:
    made = make_adapter(tmp_path)
    page, panel = open_adapter(qtbot, window, made.adapter / "adapter_model.safetensors")
    assert page.checkpoint is not None and page.checkpoint.kind == "lora-adapter"
    model = panel.model
    assert model is not None and len(model.by_module) == 8
    row = next(iter(model.by_module.values()))
    b_index = panel.proxy.mapFromSource(model.index(1, 0, model.index_of(row)))
    panel.view.doubleClicked.emit(b_index)
    assert page.content_tabs is not None and page.content_tabs.currentWidget() is page.splitter
    assert page.tree.selected_keys() == [row.children[1].node.key]


def test_a_base_model_adds_ratios_chart_and_the_unmatched_warning(
    qtbot, window, tmp_path: Path
) -> None:
    made = make_adapter(tmp_path, target_modules=TARGETS)
    zero_b(made.adapter, ZEROED)
    # Three targets that this model does not have: the adapter silently does nothing there.
    edit_config(made.adapter, target_modules=[*TARGETS, "gate_proj", "c_attn", "wq"])
    expected = reference(made.adapter, made.base)
    _, panel = open_adapter(qtbot, window, made.adapter)
    assert not panel.lines.warning_label.isVisibleTo(panel)
    with_base(qtbot, panel, made.base)
    assert not panel.view.isColumnHidden(cols.RATIO) and panel.chart.isVisibleTo(panel)
    assert texts(panel, cols.RATIO) == {m.module: format_float(m.relative) for m in expected}
    assert texts(panel, cols.BASE_NORM) == {m.module: format_float(m.base_norm) for m in expected}
    assert all(m.relative is not None for m in expected)
    assert panel.chart.heights() == {m.module: m.relative for m in expected}
    assert panel.chart.groups is not None
    assert [g.label for g in panel.chart.groups.groups] == ["0", "1"]
    assert panel.chart.plot.getPlotItem().vb.viewRange()[1][0] == 0  # the y axis starts at 0
    assert "untrained" in panel.chart.legend.text()  # the zero bar is marked
    warning = panel.lines.warning_label.text()
    assert panel.lines.warning_label.isVisibleTo(panel)
    assert warning == (
        "⚠ 3 target modules in adapter_config.json match no base weight: gate_proj, c_attn, wq"
    )
    assert str(made.base) in panel.base_label.text()
    assert "10 of 10 paired" in panel.base_label.text()
    assert panel.export_button.isEnabled()


def test_the_chart_thins_its_labels_out_for_many_layers(qtbot) -> None:
    chart = RatioChart()
    qtbot.addWidget(chart)
    chart.resize(900, 300)
    chart.show()
    rows = [
        (f"base_model.model.model.layers.{i}.{m}", f"model.layers.{i}.self_attn.{m}", 0.01 * i)
        for i in range(64)
        for m in ("q_proj", "v_proj")
    ]
    chart.set_rows(rows)
    labels = chart.tick_labels()
    assert labels[0] == "0" and 1 < len(labels) < 64
    step = int(labels[1])
    assert labels == [str(i) for i in range(0, 64, step)]
    # Neighbouring labels are a step of blocks apart: more than the widest label needs.
    room = chart.plot.getPlotItem().vb.width() * step / 64
    assert room >= max(chart.fontMetrics().horizontalAdvance(label) for label in labels)
    assert chart.plot.getPlotItem().vb.viewRange()[1][0] == 0
    assert chart.plot.getAxis("bottom").labelText == "model.layers"


def test_dora_magnitudes_are_shown_and_the_merge_refused(qtbot, window, tmp_path: Path) -> None:
    made = make_adapter(tmp_path, use_dora=True)
    _, panel = open_adapter(qtbot, window, made.adapter)
    model = panel.model
    assert model is not None
    row = next(iter(model.by_module.values()))
    assert [c.text for c in row.children] == ["lora_A", "lora_B", "magnitude (DoRA)"]
    assert "DoRA" in model.text(row, cols.FLAGS)
    assert "DoRA" in panel.header.text()
    with_base(qtbot, panel, made.base)
    dialog = panel.export_merged()
    assert dialog is not None
    qtbot.addWidget(dialog)
    dst = tmp_path / "m.safetensors"
    dialog.set_destination(dst)
    with qtbot.waitSignal(dialog.export_failed, timeout=20_000) as failed:
        dialog.start_export()
    assert "DoRA" in failed.args[0]
    assert "Nothing was written" in dialog.result_label.text() and not dst.exists()


@pytest.mark.parametrize(("fmt", "dtype"), [("safetensors", ""), ("pt", "bfloat16")])
def test_merged_export_is_peft_merge(qtbot, window, tmp_path: Path, fmt: str, dtype: str) -> None:
    made = make_adapter(tmp_path, target_modules=TARGETS, modules_to_save=["lm_head"])
    _, panel = open_adapter(qtbot, window, made.adapter)
    with_base(qtbot, panel, made.base)
    dialog = panel.export_merged()
    assert dialog is not None
    qtbot.addWidget(dialog)
    assert dialog.destination() == tmp_path / "base-merged.safetensors"
    dialog.format_box.setCurrentIndex(dialog.format_box.findData(fmt))
    dialog.dtype_box.setCurrentIndex(dialog.dtype_box.findData(dtype))
    dst = tmp_path / f"merged.{fmt}"
    dialog.set_destination(dst)
    with qtbot.waitSignal(dialog.export_finished, timeout=60_000) as finished:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    result: ExportResult = finished.args[0]
    assert result.destination == dst
    expected = merged_reference(made)
    if dtype:
        expected = {k: v.to(torch.bfloat16) for k, v in expected.items()}
    assert_bitwise(read_back(dst), expected)
    shown = dialog.result_label.text()
    assert "✔ verified: 10 merged weights equal W + scale·B·A" in shown
    assert "merged 10 modules of adapter default" in shown
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum()


def test_an_existing_destination_is_replaced_only_when_confirmed(
    qtbot, window, tmp_path: Path
) -> None:
    made = make_adapter(tmp_path)
    _, panel = open_adapter(qtbot, window, made.adapter)
    with_base(qtbot, panel, made.base)
    dialog = panel.export_merged()
    assert dialog is not None
    qtbot.addWidget(dialog)
    dst = tmp_path / "m.safetensors"
    dst.write_bytes(b"keep me")
    dialog.set_destination(dst)
    dialog.start_export()
    box = dialog.replace_box
    assert box is not None and "m.safetensors already exists" in box.text()
    qtbot.mouseClick(box.button(box.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert dst.read_bytes() == b"keep me" and not dialog.is_exporting()
    dialog.start_export()
    box = dialog.replace_box
    assert box is not None
    replace = next(b for b in box.buttons() if b.text() == "Replace")
    with qtbot.waitSignal(dialog.export_finished, timeout=60_000):
        qtbot.mouseClick(replace, Qt.MouseButton.LeftButton)
    assert_bitwise(read_back(dst), merged_reference(made))


class GatedMerge(MergeExportDialog):
    """Pauses the merge once its temporary file exists, until the test has pressed Cancel:
    the cancel lands mid-export however fast the machine."""

    gate = threading.Event()

    def export_steps(
        self, destination: Path, options: ExportOptions, overwrite: bool
    ) -> Callable[[Callable[[], bool]], Generator[ExportProgress, None, ExportResult]]:
        make = super().export_steps(destination, options, overwrite)

        def gated(cancel: Callable[[], bool]) -> Generator[ExportProgress, None, ExportResult]:
            steps = make(cancel)
            yield next(steps)
            self.gate.wait(20)
            return (yield from steps)

        return gated


def test_cancel_leaves_no_file(qtbot, window, tmp_path: Path) -> None:
    made = make_adapter(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    _, panel = open_adapter(qtbot, window, made.adapter)
    with_base(qtbot, panel, made.base)
    dialog = GatedMerge(panel.merge_source(), made.base)
    qtbot.addWidget(dialog)
    GatedMerge.gate.clear()
    dialog.set_destination(out / "m.safetensors")
    cancel_mid_write(qtbot, dialog, GatedMerge.gate, out)
    qtbot.waitUntil(lambda: workers.active_workers() == 0, timeout=10_000)


def test_reload_keeps_the_base_and_closing_the_tab_releases_it(
    qtbot, window, tmp_path: Path
) -> None:
    made = make_adapter(tmp_path)
    page, panel = open_adapter(qtbot, window, made.adapter)
    with_base(qtbot, panel, made.base)
    base = panel.base
    with qtbot.waitSignal(panel.report_finished, timeout=20_000):
        page.reload()
    assert panel.base is base and panel.report is not None and panel.report.base == made.base
    window.close_tab(window.tabs.indexOf(page))
    assert panel.base is None and panel.found is None and panel.model is None


def test_cancel_keeps_the_numbers_so_far(qtbot, window, tmp_path: Path) -> None:
    made = make_adapter(tmp_path)
    _, panel = open_adapter(qtbot, window, made.adapter)
    norms = texts(panel, cols.DELTA)
    panel.open_base(made.base)
    assert panel.is_busy() and panel.cancel_button.isVisibleTo(panel)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert not panel.is_busy()
    assert panel.status_label.text() == "Cancelled: the base model was not opened"
    assert texts(panel, cols.DELTA) == norms and "" not in norms.values()
    qtbot.waitUntil(lambda: not panel._work.winding_down(), timeout=10_000)
    assert panel.base is None  # a base being opened when cancelled is not opened


def test_the_menu_action_needs_an_adapter_tab(qtbot, window, tmp_path: Path) -> None:
    made = make_adapter(tmp_path)
    page = window.open_path(made.base)
    qtbot.waitUntil(page.is_idle, timeout=20_000)
    window.adapter_base_action.trigger()
    assert "Open a LoRA adapter first" in window.statusBar().currentMessage()
    assert isinstance(page, CheckpointView) and page.content_tabs is None


def test_sub_folder_adapters_are_offered_and_merged_from_their_folder(
    qtbot, window, tmp_path: Path
) -> None:
    peft = pytest.importorskip("peft")
    made = make_adapter(tmp_path)
    made.model.add_adapter("second", peft.LoraConfig(r=2, lora_alpha=4, target_modules=["o_proj"]))
    made.model.save_pretrained(made.adapter)
    _, panel = open_adapter(qtbot, window, made.adapter)
    assert panel.adapter_box.isVisibleTo(panel)
    assert [panel.adapter_box.itemText(i) for i in range(panel.adapter_box.count())] == [
        "default",
        "second",
    ]
    assert panel.merge_source() == made.adapter
    assert "more adapters in sub-folders: second" in panel.lines.notes_label.text()
    with qtbot.waitSignal(panel.report_finished, timeout=20_000):
        panel.adapter_box.setCurrentIndex(1)
    model = panel.model
    assert model is not None
    assert [r.text for r in model.by_module.values()] == [
        f"model.layers.{i}.self_attn.o_proj" for i in range(2)
    ]
    assert {panel.model.text(r, cols.R) for r in model.by_module.values()} == {"2"}
    assert panel.merge_source() == made.adapter / "second"


def test_a_malformed_config_is_one_line_and_the_tensors_still_show(
    qtbot, window, tmp_path: Path
) -> None:
    made = make_adapter(tmp_path)
    edit_config(made.adapter, r="four")
    page = window.open_path(made.adapter)
    assert isinstance(page, CheckpointView)
    qtbot.waitUntil(lambda: page.adapter_panel is not None, timeout=20_000)
    panel = page.adapter_panel
    assert panel is not None
    qtbot.waitUntil(lambda: panel.lines.warning_label.isVisibleTo(panel), timeout=20_000)
    assert "adapter_config.json" in panel.lines.warning_label.text()
    assert "\n" not in panel.lines.warning_label.text() and panel.model is None
    qtbot.waitUntil(page.is_idle, timeout=20_000)
    assert page.model is not None and page.model.row_count_total() > 0


def test_copy_gives_the_selected_rows_as_a_table(qtbot, window, tmp_path: Path) -> None:
    made = make_adapter(tmp_path)
    expected = reference(made.adapter)
    _, panel = open_adapter(qtbot, window, made.adapter)
    panel.select_module(expected[0].module)
    panel.view.setFocus()
    qtbot.waitUntil(panel.view.hasFocus, timeout=5_000)
    window.copy_action.trigger()
    lines = QApplication.clipboard().text().splitlines()
    assert lines[0].split("\t")[:4] == ["Module", "r", "alpha", "scale"]
    assert lines[1].split("\t")[:5] == [
        expected[0].name,
        str(expected[0].r),
        format_float(expected[0].alpha),
        format_float(expected[0].scale),
        format_float(expected[0].delta_norm),
    ]
