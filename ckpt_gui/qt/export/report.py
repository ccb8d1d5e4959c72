"""What an export dialog shows of a running export: the progress bar, the phase with the key
being written, and the result (the verified summary, or why nothing was written). Shared by the
export dialog and the adapter's merged export."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QLabel, QProgressBar

from ckpt_gui.core.export import ExportProgress, ExportResult
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
