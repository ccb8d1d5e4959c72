"""``ExportDialog``: export a clean copy of a checkpoint in two clicks, and see it verified.

Presets fill the options; changing any option switches to Custom. The preview lists every key
kept (with its new name and dtype) and dropped (with the reason) and the resulting size; it is
``plan_export`` of the core, the same plan the export then writes and verifies. Opening and
exporting run on workers (``ckpt_gui.qt.workers``); Cancel aborts at the next chunk and the core
removes its temporary file, so a cancelled export leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.export import (
    ExportOptions,
    ExportPlan,
    ExportProgress,
    ExportResult,
    check_destination,
    iter_export,
    plan_export,
)
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.qt import workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.export_form import ExportForm
from ckpt_gui.qt.export_preview import PreviewModel, plan_summary


class ExportDialog(QDialog):
    """Export ``checkpoint_path``: presets, options, live preview, progress, Cancel, result."""

    loaded = Signal()
    preview_changed = Signal()
    export_finished = Signal(object)  # ExportResult
    export_failed = Signal(str)
    export_cancelled = Signal()

    def __init__(
        self, checkpoint_path: str | Path, parent: QWidget | None = None, *, trust: bool = False
    ) -> None:
        """``trust=True`` only for a tab the user already trusted: it allows a real load."""
        super().__init__(parent)
        self.path = Path(checkpoint_path)
        self.checkpoint: Checkpoint | None = None
        self.plan: ExportPlan | None = None
        self.result: ExportResult | None = None
        self._open_worker: workers.Worker | None = None
        self._export_worker: workers.Worker | None = None
        self.setWindowTitle(f"Export {self.path.name}")
        self.resize(820, 640)
        self._preview_timer = QTimer(self, singleShot=True, interval=60)
        self._preview_timer.timeout.connect(self.update_preview)
        self._build()
        self.status_label.setText(f"Reading {self.path.name}…")
        path = self.path
        worker = workers.start_call(lambda: open_checkpoint(path, trust=trust), discard=_close)
        worker.finished.connect(self._on_loaded)
        worker.failed.connect(self._on_load_failed)
        self._open_worker = worker

    # --- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        self.form = form = ExportForm(self.path)
        form.changed.connect(self._preview_timer.start)
        # The options' widgets, under the names the dialog has always offered them by.
        self.presets, self.preset_buttons = form.presets, form.preset_buttons
        self.contents, self.state_dict_box = form.contents, form.state_dict_box
        self.dtype_box, self.format_box = form.dtype_box, form.format_box
        self.include_edit, self.exclude_edit = form.include_edit, form.exclude_edit
        self.strip_edit, self.add_edit = form.strip_edit, form.add_edit
        self.shard_edit, self.dest_edit = form.shard_edit, form.dest_edit
        self.browse_button = form.browse_button

        self.preview_model = PreviewModel(self)
        self.preview = QTableView()
        self.preview.setModel(self.preview_model)
        self.preview.verticalHeader().setVisible(False)
        self.preview.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.preview.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.preview.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #b71c1c;")
        self.progress_bar = QProgressBar(maximum=1000, textVisible=False)
        self.status_label = QLabel()
        self.result_label = QLabel()  # not word-wrapped: every line of the summary shows
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button.clicked.connect(self.cancel_export)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status_label, 1)
        for button in (self.export_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>{self.path.name}</b> — {self.path.parent}"))
        layout.addWidget(form)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.result_label)
        layout.addLayout(buttons)
        self._set_exporting(False)

    # --- options ----------------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        """Fill the options from a preset ("params", "cpu"); "custom" keeps them as they are."""
        self.form.apply_preset(name)

    def options(self) -> ExportOptions:
        """The options as set in the dialog; raises ``ValueError`` for an unreadable size."""
        return self.form.options()

    # --- preview ----------------------------------------------------------------------------
    def update_preview(self) -> None:
        """Plan with the current options and show what it keeps, drops and weighs."""
        if self.checkpoint is None:
            return
        problems: list[str] = []
        try:
            options = self.options()
        except ValueError as exc:
            self.plan = None
            problems.append(f"Shard size: {exc}")
        else:
            self.plan = plan_export(self.checkpoint, options)
            problems.extend(self.plan.problems)
        plan = self.plan
        self.preview_model.set_plan(plan)
        if plan is not None and plan.ok:
            try:
                check_destination(
                    self.checkpoint.path, self.destination(), bool(plan.files), plan.files
                )
            except CheckpointError as exc:
                problems.append(error_text(exc)[0])
            self.summary_label.setText(plan_summary(plan))
        else:
            self.summary_label.setText("")
        self.problem_label.setText("\n".join(problems[:3]))
        self.export_button.setEnabled(not problems and self._export_worker is None)
        self.preview_changed.emit()

    def destination(self) -> Path:
        return self.form.destination()

    # --- exporting --------------------------------------------------------------------------
    def export_steps(
        self, checkpoint: Checkpoint, destination: Path, options: ExportOptions,
        cancel: Callable[[], bool],
    ) -> Generator[ExportProgress, None, ExportResult]:  # fmt: skip
        """The generator the export worker runs (on the worker thread: no widgets here)."""
        return iter_export(checkpoint, destination, options, cancel)

    def start_export(self) -> None:
        if self.checkpoint is None or self._export_worker is not None:
            return
        self.update_preview()
        if self.plan is None or not self.export_button.isEnabled():
            return
        ckpt, dest, options = self.checkpoint, self.destination(), self.plan.options
        worker = workers.Worker(
            lambda cancel: self.export_steps(ckpt, dest, options, cancel), with_abort=True
        )
        worker.yielded.connect(self._on_progress)
        worker.finished.connect(self._on_exported)
        worker.failed.connect(self._on_export_failed)
        worker.aborted.connect(self._on_export_cancelled)
        self._export_worker = worker
        self.result = None
        self.result_label.setText("")
        self._set_exporting(True)
        self.status_label.setText("Writing…")
        worker.start()

    def cancel_export(self) -> None:
        if self._export_worker is not None:
            self.status_label.setText("Cancelling…")
            self._export_worker.abort()

    def is_exporting(self) -> bool:
        return self._export_worker is not None

    def _on_progress(self, batch: list[ExportProgress]) -> None:
        last = batch[-1]
        self.progress_bar.setValue(int(1000 * last.fraction))
        verb = "Verifying" if last.phase == "verifying" else "Writing"
        self.status_label.setText(f"{verb} {last.key}…" if last.key else f"{verb}…")

    def _on_exported(self, result: ExportResult) -> None:
        self._export_worker = None
        self.result = result
        self._set_exporting(False)
        self.progress_bar.setValue(1000)
        self.status_label.setText("Done")
        lines = result.describe()
        self.result_label.setText(f"<b>✔ {lines[-1]}</b><br>" + "<br>".join(lines[:-1]))
        self.export_finished.emit(result)

    def _on_export_failed(self, exc: BaseException) -> None:
        self._export_worker = None
        self._set_exporting(False)
        self.progress_bar.setValue(0)
        line, _ = error_text(exc)
        self.status_label.setText("Failed")
        self.result_label.setText(f"✘ Export failed: {line}. Nothing was written.")
        self.export_failed.emit(line)

    def _on_export_cancelled(self) -> None:
        self._export_worker = None
        self._set_exporting(False)
        self.progress_bar.setValue(0)
        self.status_label.setText("Cancelled")
        self.result_label.setText("Export cancelled. Nothing was written.")
        self.export_cancelled.emit()

    def _set_exporting(self, exporting: bool) -> None:
        self.form.set_editable(not exporting)
        self.cancel_button.setEnabled(exporting)
        self.export_button.setEnabled(False)
        if not exporting:
            self.form.refresh()
            self.update_preview()  # enables Export when the plan and destination allow it

    # --- opening ----------------------------------------------------------------------------
    def _on_loaded(self, ckpt: Checkpoint) -> None:
        self._open_worker = None
        self.checkpoint = ckpt
        plan = plan_export(ckpt, ExportOptions())
        items = []
        for key in plan.candidates:
            node = ckpt.find(key) if key else ckpt.root
            label = node.label if node is not None else ""
            count = len(node.children) if node is not None else 0
            items.append((f"{key or '(top level)'} — {label}, {count} keys", key))
        self.form.set_state_dicts(items, plan.state_dict)
        self.status_label.setText("")
        self.apply_preset("params" if plan.candidates else "cpu")
        self.update_preview()
        self.loaded.emit()

    def _on_load_failed(self, exc: BaseException) -> None:
        self._open_worker = None
        self.status_label.setText("")
        self.problem_label.setText(error_text(exc)[0])
        self.export_button.setEnabled(False)

    # --- closing ----------------------------------------------------------------------------
    def shutdown(self, wait_s: float = 10.0) -> None:
        """Abort the workers, wait for their threads (the export removes its temporary file)
        and close the checkpoint."""
        for worker in (self._open_worker, self._export_worker):
            if worker is not None:
                worker.abort()
        for worker in (self._open_worker, self._export_worker):
            if worker is not None:
                worker.wait(wait_s)
        self._open_worker = self._export_worker = None
        if self.checkpoint is not None:
            self.checkpoint.close()
            self.checkpoint = None

    def done(self, result: int) -> None:  # Qt override: accept, reject and close all end here
        self.shutdown()
        super().done(result)


def _close(result: object) -> None:
    if isinstance(result, Checkpoint):
        result.close()
