"""The export options: a row of presets above a form (contents, state dict, cast, format, key
globs, prefix rewrite, shard size, destination). Presets fill the options; changing any option
switches to Custom. ``ExportDialog`` shows it and plans the preview from ``options()``."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.export import CASTS, PRESETS, ExportOptions, parse_size

PRESET_TITLES = {"params": "Parameters only", "cpu": "CPU copy", "custom": "Custom"}


class ExportForm(QWidget):
    """Options for exporting ``path``. ``changed`` says an option or the destination changed (the
    dialog then plans the preview again)."""

    changed = Signal()

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self._applying = False  # True while a preset (or the list of state dicts) fills widgets
        self._dest_edited = False
        self._quantized = False  # the checkpoint has quantized weights (the checkbox shows)

        self.presets = QButtonGroup(self)
        preset_row = QHBoxLayout()
        preset_row.addWidget(QLabel("Preset:"))
        self.preset_buttons: dict[str, QRadioButton] = {}
        for name, title in PRESET_TITLES.items():
            button = QRadioButton(title)
            self.presets.addButton(button)
            self.preset_buttons[name] = button
            preset_row.addWidget(button)
            button.toggled.connect(partial(self._on_preset_toggled, name))
        preset_row.addStretch(1)

        self.contents = _combo([("The model's state_dict", "params"), ("Everything", "all")])
        self.state_dict_box = QComboBox()
        self.dtype_box = _combo([("Keep dtypes", "")] + [(c, c) for c in CASTS])
        self.overflow_box = _combo(
            [
                ("Refuse the export", "error"),
                ("Clamp to the largest finite value", "clamp"),
                ("Write ±inf", "inf"),
            ]
        )
        self.overflow_box.setToolTip(
            "What a cast does with finite values beyond the new dtype's range (1e5 in float16)"
        )
        self.numpy_box = _combo(
            [("Ask (refuse until chosen)", ""), ("Keep as NumPy arrays", "keep")]
            + [("Convert to tensors", "tensors")]
        )
        self.format_box = _combo([("safetensors", "safetensors"), ("PyTorch (torch.save)", "pt")])
        self.dequantize_box = QCheckBox("Write them dequantized, in place of their raw parts")
        self.dequantize_box.setToolTip(
            "Each quantized weight is written as its logical tensor, in its own dtype unless "
            "cast, a block of rows at a time"
        )
        self.dequantize_box.toggled.connect(self._on_option_changed)
        self.include_edit = QLineEdit(placeholderText="all keys; or globs: encoder.*, *.weight")
        self.exclude_edit = QLineEdit(placeholderText="none; or globs: *.num_batches_tracked")
        self.strip_edit = QLineEdit(placeholderText="e.g. module. or model.")
        self.add_edit = QLineEdit(placeholderText="replace it with (optional)")
        self.shard_edit = QLineEdit(placeholderText="one file; or a size such as 5GB")
        self.dest_edit = QLineEdit()
        self.browse_button = QPushButton("Browse…")
        combos = (self.contents, self.state_dict_box, self.dtype_box, self.format_box)
        for combo in (*combos, self.overflow_box, self.numpy_box):
            combo.currentIndexChanged.connect(self._on_option_changed)
        for edit in self._edits():
            edit.textChanged.connect(self._on_option_changed)
        self.dest_edit.textEdited.connect(self._on_dest_edited)
        self.browse_button.clicked.connect(self._browse)

        self._form = form = QFormLayout()
        form.addRow("Keep:", self.contents)
        form.addRow("State dict:", self.state_dict_box)
        form.addRow("Cast floats to:", self.dtype_box)
        form.addRow("Out-of-range values:", self.overflow_box)
        form.addRow("Quantized weights:", self.dequantize_box)
        form.setRowVisible(self.dequantize_box, False)
        form.addRow("NumPy arrays:", self.numpy_box)
        form.addRow("Format:", self.format_box)
        form.addRow("Include:", self.include_edit)
        form.addRow("Exclude:", self.exclude_edit)
        prefix = QHBoxLayout()
        prefix.addWidget(self.strip_edit)
        prefix.addWidget(self.add_edit)
        form.addRow("Strip key prefix:", prefix)
        form.addRow("Shard size:", self.shard_edit)
        dest = QHBoxLayout()
        dest.addWidget(self.dest_edit, 1)
        dest.addWidget(self.browse_button)
        form.addRow("Save to:", dest)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)  # laid out as if the rows were the dialog's own
        layout.addLayout(preset_row)
        layout.addLayout(form)
        self._option_widgets: list[QWidget] = [
            *self.preset_buttons.values(),
            self.contents, self.state_dict_box, self.dtype_box, self.format_box,
            self.overflow_box, self.numpy_box, self.dequantize_box, self.include_edit,
            self.exclude_edit, self.strip_edit, self.add_edit, self.shard_edit, self.dest_edit,
            self.browse_button,
        ]  # fmt: skip

    def _on_preset_toggled(self, name: str, on: bool) -> None:
        if on:
            self.apply_preset(name)

    def apply_preset(self, name: str) -> None:
        """Fill the options from a preset ("params", "cpu"); "custom" keeps them as they are."""
        if not self.preset_buttons[name].isChecked():
            self.preset_buttons[name].setChecked(True)  # re-enters through toggled
            return
        if name in PRESETS:
            preset = PRESETS[name]
            self._applying = True
            try:
                _select(self.contents, preset.mode)
                _select(self.dtype_box, preset.dtype or "")
                _select(self.format_box, preset.format)
                for edit in self._edits():
                    edit.clear()
            finally:
                self._applying = False
        self.refresh()

    def options(self) -> ExportOptions:
        """The options as set in the form; raises ``ValueError`` for an unreadable size."""
        shard = self.shard_edit.text().strip()
        return ExportOptions(
            mode=self.contents.currentData(),
            format=self.format_box.currentData(),
            dtype=self.dtype_box.currentData() or None,
            state_dict=self.state_dict_box.currentData(),
            include=_globs(self.include_edit.text()),
            exclude=_globs(self.exclude_edit.text()),
            strip_prefix=self.strip_edit.text(),
            add_prefix=self.add_edit.text(),
            shard_size=parse_size(shard) if shard else None,
            on_overflow=self.overflow_box.currentData(),
            numpy=self.numpy_box.currentData() or None,
        )

    def destination(self) -> Path:
        return Path(self.dest_edit.text().strip()).expanduser()

    def set_state_dicts(self, items: list[tuple[str, str]], selected: str | None) -> None:
        """Offer the candidate state dicts (text, key), ``selected`` chosen; no preset change."""
        self._applying = True
        for text, key in items:
            self.state_dict_box.addItem(text, key)
        if selected is not None:
            _select(self.state_dict_box, selected)
        self._applying = False

    def show_dequantize_choice(self, visible: bool) -> None:
        """The dequantize row matters only for a checkpoint with quantized weights."""
        self._form.setRowVisible(self.dequantize_box, visible)
        self._quantized = visible

    def dequantize(self) -> bool:
        """Whether the export writes the quantized weights dequantized."""
        return self._quantized and self.dequantize_box.isChecked()

    def show_numpy_choice(self, visible: bool) -> None:
        """The NumPy row matters only for a checkpoint that holds NumPy arrays."""
        self._form.setRowVisible(self.numpy_box, visible)

    def set_editable(self, editable: bool) -> None:
        """Lock the options while an export runs (``refresh()`` after unlocking)."""
        for widget in self._option_widgets:
            widget.setEnabled(editable)

    def refresh(self) -> None:
        """Enable the state dict box when it offers a choice, suggest a destination for the
        options unless the user chose one, and say that the options changed."""
        self.state_dict_box.setEnabled(
            self.contents.currentData() == "params" and self.state_dict_box.count() > 1
        )
        # Dequantized weights are cast from float32 to their own dtype even without a cast.
        self.overflow_box.setEnabled(bool(self.dtype_box.currentData()) or self.dequantize())
        self._suggest_destination()
        self.changed.emit()

    def _edits(self) -> tuple[QLineEdit, ...]:
        return self.include_edit, self.exclude_edit, self.strip_edit, self.add_edit, self.shard_edit

    def _on_option_changed(self) -> None:
        """The user changed an option: that makes the export Custom."""
        if self._applying:
            return
        if self.presets.checkedButton() not in (None, self.preset_buttons["custom"]):
            self.preset_buttons["custom"].setChecked(True)  # refreshes through apply_preset
        else:
            self.refresh()

    def _on_dest_edited(self) -> None:
        self._dest_edited = True
        self.changed.emit()

    def _suggest_destination(self) -> None:
        if self._dest_edited:
            return
        stem = self.path.stem if self.path.is_file() else self.path.name
        what = "params" if self.contents.currentData() == "params" else "cpu"
        ext = "safetensors" if self.format_box.currentData() == "safetensors" else "pt"
        name = f"{stem}-{what}" if self.shard_edit.text().strip() else f"{stem}.{what}.{ext}"
        self.dest_edit.setText(str(self.path.parent / name))

    def _browse(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Export to", self.dest_edit.text())
        if name:
            self.dest_edit.setText(name)
            self._on_dest_edited()


def _combo(items: list[tuple[str, Any]]) -> QComboBox:
    box = QComboBox()
    for text, data in items:
        box.addItem(text, data)
    return box


def _select(box: QComboBox, data: Any) -> None:
    index = box.findData(data)
    if index >= 0:
        box.setCurrentIndex(index)


def _globs(text: str) -> tuple[str, ...]:
    return tuple(g for g in text.replace(",", " ").split() if g)
