"""The export dialog, driven offscreen: presets change the preview, an export produces a
verified file, Cancel leaves no partial file and no thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from pathlib import Path

import torch
from PySide6.QtCore import Qt
from safetensors.torch import load_file

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.export import ExportOptions, ExportProgress, ExportResult
from ckpt_gui.qt import workers
from ckpt_gui.qt.export import ExportDialog
from tests.qt.files import cancel_mid_write, training_checkpoint

MODEL_KEYS = 9  # TinyNet's state_dict: two linears and a batch norm


def open_dialog(qtbot, path: Path, cls: type[ExportDialog] = ExportDialog) -> ExportDialog:
    dialog = cls(path)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.loaded, timeout=20_000):
        dialog.show()
    return dialog


def rows(dialog: ExportDialog, status: str) -> list[str]:
    model = dialog.preview_model
    return [model.row(r)[1] for r in range(model.rowCount()) if model.row(r)[0] == status]


def test_presets_change_the_preview(qtbot, qtmodeltester, tmp_path: Path) -> None:
    src = training_checkpoint(tmp_path / "train.pt")
    dialog = open_dialog(qtbot, src)
    qtmodeltester.check(dialog.preview_model)
    assert dialog.form.preset_buttons["params"].isChecked()
    assert len(rows(dialog, "kept")) == MODEL_KEYS
    assert "optimizer_state_dict.state.0.momentum_buffer" in rows(dialog, "dropped")
    assert dialog.summary_label.text().startswith(f"Keeps {MODEL_KEYS} tensors (")
    assert dialog.form.dest_edit.text() == str(tmp_path / "train.params.safetensors")

    with qtbot.waitSignal(dialog.preview_changed, timeout=5_000):
        qtbot.mouseClick(dialog.form.preset_buttons["cpu"], Qt.MouseButton.LeftButton)
    assert len(rows(dialog, "kept")) == MODEL_KEYS + 6 and rows(dialog, "dropped") == []
    assert "drops nothing" in dialog.summary_label.text()
    assert dialog.form.dest_edit.text() == str(tmp_path / "train.cpu.pt")

    with qtbot.waitSignal(dialog.preview_changed, timeout=5_000):
        dialog.form.exclude_edit.setText("optimizer_state_dict")
    assert dialog.form.preset_buttons["custom"].isChecked()
    assert len(rows(dialog, "kept")) == MODEL_KEYS
    assert dialog.preview_model.row(0)[2] == "model_state_dict.linear1.weight"

    with qtbot.waitSignal(dialog.preview_changed, timeout=5_000):
        dialog.form.shard_edit.setText("lots")
    assert "Shard size: not a size" in dialog.problem_label.text()
    assert not dialog.export_button.isEnabled()

    with qtbot.waitSignal(dialog.preview_changed, timeout=5_000):
        dialog.form.dest_edit.setText(str(src))
        dialog.form.dest_edit.textEdited.emit(str(src))
        dialog.form.shard_edit.clear()
    assert "this is the source file" in dialog.problem_label.text()
    assert not dialog.export_button.isEnabled()


def test_export_produces_a_verified_file(qtbot, tmp_path: Path) -> None:
    src = training_checkpoint(tmp_path / "train.pt")
    before = src.read_bytes()
    dialog = open_dialog(qtbot, src)
    with qtbot.waitSignal(dialog.cast_checked, timeout=10_000):  # the cast is checked first
        dialog.form.dtype_box.setCurrentIndex(dialog.form.dtype_box.findData("bfloat16"))
    assert dialog.cast_label.text() == (
        "The cast to bfloat16 only rounds: no value overflows or flushes."
    )
    with qtbot.waitSignal(dialog.export_finished, timeout=30_000) as done:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    result: ExportResult = done.args[0]
    dst = tmp_path / "train.params.safetensors"
    assert result.destination == dst
    expected = torch.load(src, weights_only=True)["model_state_dict"]
    loaded = load_file(dst)
    for key, value in expected.items():
        cast = value.to(torch.bfloat16) if value.is_floating_point() else value
        assert torch.equal(loaded[key], cast)
    text = dialog.result_label.text()
    assert f"verified: all {MODEL_KEYS} tensors equal the source" in text
    assert "equal the source cast to bfloat16 (max relative error" in text
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum()
    assert src.read_bytes() == before


class GatedDialog(ExportDialog):
    """Pauses the export after its temporary file exists, until the test has pressed Cancel:
    the cancel lands mid-export every time, however fast the machine."""

    gate = threading.Event()

    def export_steps(
        self,
        checkpoint: Checkpoint,
        destination: Path,
        options: ExportOptions,
        cancel: Callable[[], bool],
        overwrite: bool = False,
    ) -> Generator[ExportProgress, None, ExportResult]:
        steps = super().export_steps(checkpoint, destination, options, cancel, overwrite)
        yield next(steps)
        self.gate.wait(20)
        return (yield from steps)


def test_cancel_leaves_no_partial_file_and_no_thread(qtbot, tmp_path: Path) -> None:
    src = training_checkpoint(tmp_path / "train.pt")
    out = tmp_path / "out"
    out.mkdir()
    dialog = open_dialog(qtbot, src, GatedDialog)
    GatedDialog.gate.clear()
    dialog.form.dest_edit.setText(str(out / "params.pt"))
    dialog.form.dest_edit.textEdited.emit(dialog.form.dest_edit.text())
    cancel_mid_write(qtbot, dialog, GatedDialog.gate, out)
    assert not dialog.is_exporting() and dialog.export_button.isEnabled()
    qtbot.waitUntil(lambda: workers.active_workers() == 0, timeout=10_000)


def test_a_cast_that_overflows_is_shown_and_refused_until_chosen(qtbot, tmp_path: Path) -> None:
    src = tmp_path / "wide.pt"
    torch.save({"model": {"w": torch.tensor([1e5, 1.0, 1e-9]), "b": torch.ones(2)}}, src)
    dialog = open_dialog(qtbot, src)
    with qtbot.waitSignal(dialog.cast_checked, timeout=10_000):
        dialog.form.dtype_box.setCurrentIndex(dialog.form.dtype_box.findData("float16"))
    assert dialog.cast_label.text() == (
        "model.w: 1 finite values become ±inf and 1 non-zero values flush to zero in float16"
    )
    assert dialog.problem_label.text().startswith("model.w: 1 finite values would become ±inf")
    assert not dialog.export_button.isEnabled()
    with qtbot.waitSignal(dialog.preview_changed, timeout=5_000):
        dialog.form.overflow_box.setCurrentIndex(dialog.form.overflow_box.findData("clamp"))
    assert dialog.problem_label.text() == "" and dialog.export_button.isEnabled()
    with qtbot.waitSignal(dialog.export_finished, timeout=30_000) as done:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert load_file(done.args[0].destination)["w"][0].item() == 65504.0
    text = dialog.result_label.text()
    assert "1 value clamped to the largest finite value; 1 value flushed to zero" in text


def test_an_existing_destination_is_replaced_only_when_the_user_says_so(
    qtbot, tmp_path: Path
) -> None:
    src = training_checkpoint(tmp_path / "train.pt")
    dialog = open_dialog(qtbot, src)
    dest = dialog.destination()
    dest.write_bytes(b"keep me")
    with qtbot.waitSignal(dialog.preview_changed, timeout=5_000):
        dialog.form.changed.emit()
    assert dialog.summary_label.text().endswith("It replaces the existing file.")
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    box = dialog.replace_box
    assert box is not None and box.isVisible()
    assert box.text() == f"{dest.name} already exists in {dest.parent}."
    qtbot.mouseClick(box.button(box.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert dest.read_bytes() == b"keep me" and not dialog.is_exporting()
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    box = dialog.replace_box
    assert box is not None
    replace = next(b for b in box.buttons() if b.text() == "Replace")
    with qtbot.waitSignal(dialog.export_finished, timeout=30_000):
        qtbot.mouseClick(replace, Qt.MouseButton.LeftButton)
    assert set(load_file(dest)) == set(torch.load(src, weights_only=True)["model_state_dict"])


def test_quantized_weights_export_dequantized_when_asked(qtbot, tmp_path: Path) -> None:
    from tests.core.quant import writers as W

    src, refs = W.gptq(tmp_path / "q")
    [(key, ref)] = refs.items()
    dialog = open_dialog(qtbot, src)
    box = dialog.form.dequantize_box
    assert dialog.form._form.isRowVisible(box) and not box.isChecked()
    assert key not in rows(dialog, "kept")  # the raw parts, as the file holds them
    with qtbot.waitSignal(dialog.preview_changed, timeout=5_000):
        box.setChecked(True)
    assert key in rows(dialog, "kept") and not any("qweight" in r for r in rows(dialog, "kept"))
    with qtbot.waitSignal(dialog.export_finished, timeout=30_000) as done:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    result: ExportResult = done.args[0]
    loaded = load_file(result.destination)
    assert torch.equal(loaded[key], torch.from_numpy(ref.copy()).to(torch.bfloat16))
    assert "1 dequantized weight equal their parts dequantized again" in dialog.result_label.text()


def test_the_dequantize_choice_is_hidden_without_quantized_weights(qtbot, tmp_path: Path) -> None:
    dialog = open_dialog(qtbot, training_checkpoint(tmp_path / "train.pt"))
    assert not dialog.form._form.isRowVisible(dialog.form.dequantize_box)
    assert not dialog.form.dequantize()
