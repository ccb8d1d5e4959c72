"""``MergeExportDialog``: write the base model with a LoRA adapter merged into it
(``core.export.merge.iter_merge_export``) on a worker, with progress and Cancel; an existing
destination is replaced only once the user confirms, and the result ends with the export's
``verified:`` line. The dialog opens both sources itself, so closing or reloading the tab it came
from never pulls a file from under the export; a cancelled export leaves no file behind."""

from __future__ import annotations

import html
from collections.abc import Callable, Generator
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.export import CASTS, ExportOptions, ExportProgress, ExportResult, parse_size
from ckpt_gui.core.export.merge import iter_merge_export
from ckpt_gui.qt import theme
from ckpt_gui.qt.export.report import ExportingDialog, ExportReport

FORMATS = (("safetensors", "safetensors"), ("PyTorch (torch.save)", "pt"))


class MergeExportDialog(ExportingDialog):
    """Merge the adapter at ``adapter_path`` into ``base_path`` and save the result."""

    def __init__(
        self,
        adapter_path: Path,
        base_path: Path,
        parent: QWidget | None = None,
        *,
        adapter_name: str = "",
    ) -> None:
        super().__init__(parent)
        self.adapter_path = Path(adapter_path)
        self.base_path = Path(base_path)
        self._dest_edited = False
        name = adapter_name if adapter_name and adapter_name != "default" else ""
        self._stem = (_stem(self.base_path) + "-merged" + (f"-{name}" if name else "")).replace(
            "/", "_"
        )
        self.setWindowTitle("Export merged model")
        self.resize(780, 520)
        self._build()
        self._suggest_destination()

    # --- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        self.format_box = QComboBox()
        for text, data in FORMATS:
            self.format_box.addItem(text, data)
        self.dtype_box = QComboBox()
        self.dtype_box.addItem("Keep the base's dtypes", "")
        for cast in CASTS:
            self.dtype_box.addItem(cast, cast)
        self.shard_edit = QLineEdit(placeholderText="one file; or a size such as 5GB")
        self.dest_edit = QLineEdit()
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        self.dest_edit.textEdited.connect(self._on_dest_edited)
        self.format_box.currentIndexChanged.connect(self._suggest_destination)
        self.shard_edit.textChanged.connect(self._suggest_destination)

        sources = QLabel(
            f"<b>{html.escape(_name(self.adapter_path))}</b> merged into "
            f"<b>{html.escape(_name(self.base_path))}</b><br>"
            f"<span>W + scale·B·A for every target module; saved modules replace the base's; "
            "every other tensor as the base has it. Neither source is changed.</span>"
        )
        sources.setTextFormat(Qt.TextFormat.RichText)
        sources.setWordWrap(True)
        sources.setToolTip(f"adapter: {self.adapter_path}\nbase: {self.base_path}")
        form = QFormLayout()
        form.addRow("Format:", self.format_box)
        form.addRow("Data type:", self.dtype_box)
        form.addRow("Shard size:", self.shard_edit)
        dest = QHBoxLayout()
        dest.addWidget(self.dest_edit, 1)
        dest.addWidget(self.browse_button)
        form.addRow("Save to:", dest)
        self._option_widgets = [
            self.format_box,
            self.dtype_box,
            self.shard_edit,
            self.dest_edit,
            self.browse_button,
        ]

        self.progress_bar = QProgressBar(textVisible=False)
        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)  # it names keys
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextFormat(Qt.TextFormat.PlainText)
        theme.style_text(self.problem_label, "red")
        self.result_label = QLabel()
        self.result_label.setTextFormat(Qt.TextFormat.RichText)  # every piece escaped
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.report = ExportReport(
            self.progress_bar, self.status_label, self.result_label, "Merging and writing"
        )

        buttons = self._button_row()

        layout = QVBoxLayout(self)
        layout.addWidget(sources)
        layout.addLayout(form)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.progress_bar)
        result = QScrollArea()
        result.setWidgetResizable(True)
        result.setFrameShape(QFrame.Shape.NoFrame)
        result.setWidget(self.result_label)
        layout.addWidget(result, 1)
        layout.addLayout(buttons)
        self._set_exporting(False)

    # --- options ----------------------------------------------------------------------------
    def options(self) -> ExportOptions:
        """The options as set; raises ``ValueError`` for an unreadable shard size."""
        shard = self.shard_edit.text().strip()
        return ExportOptions(
            mode="params",
            format=self.format_box.currentData(),
            dtype=self.dtype_box.currentData() or None,
            shard_size=parse_size(shard) if shard else None,
        )

    def destination(self) -> Path:
        return Path(self.dest_edit.text().strip()).expanduser()

    def set_destination(self, path: str | Path) -> None:
        self.dest_edit.setText(str(path))
        self._on_dest_edited()

    def _on_dest_edited(self) -> None:
        self._dest_edited = True

    def _suggest_destination(self) -> None:
        if self._dest_edited:
            return
        ext = "safetensors" if self.format_box.currentData() == "safetensors" else "pt"
        sharded = bool(self.shard_edit.text().strip())
        name = self._stem if sharded else f"{self._stem}.{ext}"
        self.dest_edit.setText(str(self.base_path.parent / name))

    def _browse(self) -> None:
        if self.shard_edit.text().strip():
            name = QFileDialog.getExistingDirectory(
                self, "Save the shards in", self.dest_edit.text()
            )
        else:
            name, _ = QFileDialog.getSaveFileName(
                self, "Save merged model as", self.dest_edit.text()
            )
        if name:
            self.set_destination(name)

    # --- exporting --------------------------------------------------------------------------
    def export_steps(
        self, destination: Path, options: ExportOptions, overwrite: bool
    ) -> Callable[[Callable[[], bool]], Generator[ExportProgress, None, ExportResult]]:
        """What the worker runs (on the worker thread: it holds paths, never a widget)."""
        adapter, base = self.adapter_path, self.base_path
        return lambda cancel: iter_merge_export(
            adapter, base, destination, options, cancel, overwrite=overwrite
        )

    def start_export(self) -> None:
        """Export; an existing destination is replaced only once the user says so (the question
        opens as ``replace_box``)."""
        if self._exporting.busy():
            return
        try:
            self.options()
        except ValueError as exc:
            self.problem_label.setText(f"Shard size: {exc}")
            return
        if not self.dest_edit.text().strip():
            self.problem_label.setText("Choose where to save the merged model.")
            return
        self.problem_label.setText("")
        dest = self.destination()
        if not (dest.exists() or dest.is_symlink()):
            self._export(overwrite=False)
            return
        self._ask_replace(dest.name, dest.parent, "the merged model")

    def _export(self, overwrite: bool) -> None:
        dest, options = self.destination(), self.options()
        self._run_export(self.export_steps(dest, options, overwrite), "Merging…")

    def _set_exporting(self, exporting: bool) -> None:
        for widget in self._option_widgets:
            widget.setEnabled(not exporting)
        self.export_button.setEnabled(not exporting)
        self.cancel_button.setEnabled(exporting)

    # --- closing ----------------------------------------------------------------------------
    def shutdown(self, wait_s: float = 10.0) -> None:
        """Abort the export and wait for its thread (the core removes its temporary file)."""
        self._exporting.shutdown(wait_s)

    def done(self, result: int) -> None:  # Qt override: accept, reject and close all end here
        self.shutdown()
        super().done(result)


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _stem(path: Path) -> str:
    if path.is_dir():
        return path.name
    name = path.name
    for suffix in (".safetensors.index.json", ".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
