"""What every export dialog shares: running the export on its ``WorkerSlot`` (progress, cancel,
outcome) and showing it (``ExportReport``: the progress bar, the phase with the key being
written, the verified summary or why nothing was written). The export dialog and the adapter's
merged export are ``ExportingDialog``s."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from ckpt_gui.core.export import ExportProgress, ExportResult
from ckpt_gui.qt import workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.workers import PROGRESS_STEPS


class ExportReport:
    """Writes an export's progress and outcome into a dialog's own widgets. ``writing`` names
    the writing phase ("Writing", "Merging and writing")."""

    def __init__(
        self, bar: QProgressBar, status: QLabel, result: QLabel, writing: str = "Writing"
    ) -> None:
        self.bar, self.status, self.result, self.writing = bar, status, result, writing
        bar.setRange(0, PROGRESS_STEPS)

    def progress(self, batch: list[ExportProgress]) -> None:
        last = batch[-1]
        self.bar.setValue(int(PROGRESS_STEPS * last.fraction))
        verb = {"checking": "Checking the cast of", "verifying": "Verifying"}.get(
            last.phase, self.writing
        )
        self.status.setText(f"{verb} {last.key}…" if last.key else f"{verb}…")

    def done(self, result: ExportResult) -> None:
        self.bar.setValue(PROGRESS_STEPS)
        self.status.setText("Done")
        lines = [html.escape(line) for line in result.describe()]  # keys come from the files
        self.result.setText(f"<b>✔ {lines[-1]}</b><br>" + "<br>".join(lines[:-1]))

    def failed(self, exc: BaseException) -> str:
        """Shows why the export failed; returns that one line."""
        self.bar.setValue(0)
        line, _ = error_text(exc)
        self.status.setText("Failed")
        self.result.setText(f"✘ Export failed: {html.escape(line)}. Nothing was written.")
        return line

    def cancelled(self) -> None:
        self.bar.setValue(0)
        self.status.setText("Cancelled")
        self.result.setText("Export cancelled. Nothing was written.")


class ExportingDialog(QDialog):
    """A dialog that runs one export at a time. Subclasses build ``report`` (an
    ``ExportReport`` over their widgets) and implement ``_set_exporting``."""

    export_finished = Signal(object)  # ExportResult
    export_failed = Signal(str)
    export_cancelled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._exporting = workers.WorkerSlot()
        self.export_result: ExportResult | None = None
        self.replace_box: QMessageBox | None = None  # "Replace existing file?" while open
        self.report: ExportReport

    def _button_row(self) -> QHBoxLayout:
        """The status line, then Export (``start_export``), Cancel and Close."""
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button.clicked.connect(self.cancel_export)
        self.close_button.clicked.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.report.status, 1)
        for button in (self.export_button, self.cancel_button, self.close_button):
            row.addWidget(button)
        return row

    def start_export(self) -> None:
        raise NotImplementedError

    def _run_export(self, make_iter: Callable[[Any], Iterable[Any]], first: str) -> None:
        """Start the export ``make_iter(cancel)``; ``first`` is the status until progress."""
        self._exporting.start(
            make_iter,
            on_yield=self.report.progress,
            on_finish=self._on_exported,
            on_error=self._on_export_failed,
            on_abort=self._on_export_cancelled,
            with_abort=True,
        )
        self.export_result = None
        self.report.result.setText("")
        self.report.bar.setValue(0)
        self._set_exporting(True)
        self.report.status.setText(first)

    def cancel_export(self) -> None:
        """Stop at the next chunk; the dialog says so once the thread has ended (and the core
        has removed its temporary file)."""
        if self._exporting.busy():
            self.report.status.setText("Cancelling…")
            self._exporting.cancel()

    def is_exporting(self) -> bool:
        return self._exporting.busy()

    def _set_exporting(self, exporting: bool) -> None:
        raise NotImplementedError

    def _export(self, overwrite: bool) -> None:
        raise NotImplementedError

    def _ask_replace(self, names: str, folder: Path, what: str) -> None:
        """The destination exists: ask before replacing it (Cancel is the default); Replace
        exports with ``overwrite``. The question is ``replace_box`` while it is open."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Replace existing file?")
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setText(f"{names} already exists in {folder}.")
        box.setInformativeText(f"Replace it with {what}? The old file is lost.")
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda _: self._on_replace_answered(box.clickedButton() is replace))
        self.replace_box = box
        box.open()

    def _on_replace_answered(self, replace: bool) -> None:
        self.replace_box = None
        if replace:
            self._export(overwrite=True)

    def _on_exported(self, result: ExportResult) -> None:
        self.export_result = result
        self._set_exporting(False)
        self.report.done(result)
        self.export_finished.emit(result)

    def _on_export_failed(self, exc: BaseException) -> None:
        self._set_exporting(False)
        self.export_failed.emit(self.report.failed(exc))

    def _on_export_cancelled(self) -> None:
        self._set_exporting(False)
        self.report.cancelled()
        self.export_cancelled.emit()
