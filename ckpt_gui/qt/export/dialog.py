"""``ExportDialog``: export a clean copy of a checkpoint in two clicks, and see it verified.

Presets fill the options; changing any option switches to Custom. The preview lists every key
kept (with its new name and dtype) and dropped (with the reason) and the resulting size; it is
``plan_export`` of the core, the same plan the export then writes and verifies. Opening and
exporting run on workers (``ckpt_gui.qt.workers``); Cancel aborts at the next chunk and the core
removes its temporary file, so a cancelled export leaves nothing behind.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Generator
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QProgressBar,
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
from ckpt_gui.core.export.casting import CastEffect
from ckpt_gui.core.export.check import cast_check_bytes, iter_cast_check
from ckpt_gui.core.export.dequantize import dequantized_checkpoint, iter_dequantize_export
from ckpt_gui.qt import jobs, theme, workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.export.form import ExportForm
from ckpt_gui.qt.export.preview import PreviewModel, cast_problems, cast_summary, plan_summary
from ckpt_gui.qt.export.report import ExportingDialog, ExportReport
from ckpt_gui.qt.widgets.row_menu import include_globs


class ExportDialog(ExportingDialog):
    """Export ``checkpoint_path``: presets, options, live preview, progress, Cancel, result."""

    loaded = Signal()
    preview_changed = Signal()
    cast_checked = Signal()  # the preview's cast check finished (its counts are shown)

    def __init__(
        self,
        checkpoint_path: str | Path,
        parent: QWidget | None = None,
        *,
        trust: bool = False,
        subtree: str = "",
    ) -> None:
        """``trust=True`` only for a tab the user already trusted: it allows a real load.
        ``subtree``: export only this key and what is below it (a row's Export This Subtree)."""
        super().__init__(parent)
        self.path = Path(checkpoint_path)
        self.subtree = subtree
        self.checkpoint: Checkpoint | None = None
        self._dequantized: Checkpoint | None = None  # its dequantized view, made when asked for
        self._dequantize_export = False  # what the export running now writes
        self.plan: ExportPlan | None = None
        # Not ``result``: that would hide QDialog.result(), the dialog's accept/reject code.
        self._opening = workers.WorkerSlot()
        self._checking = workers.WorkerSlot()  # the cast check of the preview's plan
        # The plan the cast counts belong to, and the counts (None while they are computed).
        self._checked_plan: ExportPlan | None = None
        self.cast_effects: dict[str, CastEffect] | None = None
        self.setWindowTitle(f"Export {self.path.name}")
        self.resize(820, 640)
        self._preview_timer = QTimer(self, singleShot=True, interval=60)
        self._preview_timer.timeout.connect(self.update_preview)
        self._build()
        self.status_label.setText(f"Reading {self.path.name}…")
        path = self.path
        self._opening.call(
            lambda: jobs.open_checkpoint(path, trust),
            on_finish=self._on_loaded,
            on_error=self._on_load_failed,
            discard=jobs.close_checkpoint,
        )

    # --- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        self.form = form = ExportForm(self.path)
        form.changed.connect(self._preview_timer.start)

        self.preview_model = PreviewModel(self)
        self.preview = QTableView()
        self.preview.setModel(self.preview_model)
        self.preview.verticalHeader().setVisible(False)
        self.preview.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.preview.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.preview.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        theme.style_text(self.problem_label, "red")
        self.problem_label.setTextFormat(Qt.TextFormat.PlainText)  # file keys are not markup
        self.cast_label = QLabel()  # what the cast does beyond rounding, tensor by tensor
        self.cast_label.setWordWrap(True)
        self.cast_label.setTextFormat(Qt.TextFormat.PlainText)
        self.progress_bar = QProgressBar(textVisible=False)
        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)  # it names the file and keys
        self.result_label = QLabel()  # not word-wrapped: every line of the summary shows
        self.result_label.setTextFormat(Qt.TextFormat.RichText)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report = ExportReport(self.progress_bar, self.status_label, self.result_label)

        buttons = self._button_row()

        layout = QVBoxLayout(self)
        name, folder = html.escape(self.path.name), html.escape(str(self.path.parent))
        layout.addWidget(QLabel(f"<b>{name}</b> — {folder}", textFormat=Qt.TextFormat.RichText))
        layout.addWidget(form)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.cast_label)
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

    def source(self) -> Checkpoint | None:
        """What the export plans from: the checkpoint, or with "dequantized" checked its view
        with the logical weights in place of their parts (what the dequantized export plans)."""
        if self.checkpoint is None or not self.form.dequantize():
            return self.checkpoint
        if self._dequantized is None:
            self._dequantized = dequantized_checkpoint(self.checkpoint)
        return self._dequantized

    # --- preview ----------------------------------------------------------------------------
    def update_preview(self) -> None:
        """Plan with the current options and show what it keeps, drops and weighs."""
        source = self.source()
        if self.checkpoint is None or source is None:
            return
        problems: list[str] = []
        try:
            options = self.options()
        except ValueError as exc:
            self.plan = None
            problems.append(f"Shard size: {exc}")
        else:
            self.plan = plan_export(source, options)
            problems.extend(self.plan.problems)
        plan = self.plan
        self.preview_model.set_plan(plan)
        if plan is not None and plan.ok:
            try:  # an existing destination is asked about when Export is pressed
                check_destination(
                    self.checkpoint.path,
                    self.destination(),
                    bool(plan.files),
                    plan.files,
                    overwrite=True,
                    source_files=self.checkpoint.files,
                )
            except CheckpointError as exc:
                problems.append(error_text(exc)[0])
            summary = plan_summary(plan)
            if self.existing_destination():
                summary += " It replaces the existing file."
            self.summary_label.setText(summary)
            self._check_cast(plan)
            problems.extend(cast_problems(plan, self.cast_effects))
        else:
            self.summary_label.setText("")
            self._check_cast(None)
        self.problem_label.setText("\n".join(problems[:3]))
        checking = self._checking.busy()
        self.export_button.setEnabled(not problems and not checking and not self.is_exporting())
        self.preview_changed.emit()

    def existing_destination(self) -> list[Path]:
        """The files the export would replace."""
        dest = self.destination()
        plan = self.plan
        paths = [dest / name for name in plan.files] if plan and plan.files else [dest]
        return [p for p in paths if p.exists() or p.is_symlink()]

    # --- the cast check ---------------------------------------------------------------------
    def _check_cast(self, plan: ExportPlan | None) -> None:
        """Count, on a worker, what the plan's cast does to each tensor (the same check the
        export makes before writing); nothing to do for plans that cast nothing down."""
        same = (
            plan is not None
            and self._checked_plan is not None
            and self._checked_plan.kept == plan.kept
            and (self.cast_effects is not None or self._checking.busy())
        )
        if same:
            self._checked_plan = plan
            return
        self._checking.abort()
        self._checked_plan, self.cast_effects = plan, None
        self.cast_label.setText("")
        ckpt = self.source()
        if plan is None or ckpt is None or not cast_check_bytes(plan):
            self.cast_effects = {}
            return
        self.cast_label.setText(f"Checking what the cast to {plan.options.dtype} does…")
        self._checking.start(
            lambda cancel: iter_cast_check(plan, ckpt, cancel),
            on_finish=self._on_cast_checked,
            on_error=self._on_cast_check_failed,
            with_abort=True,
        )

    def _on_cast_checked(self, effects: dict[str, CastEffect]) -> None:
        self.cast_effects = effects
        plan = self._checked_plan
        if plan is not None:
            text, colour = cast_summary(plan, effects)
            self.cast_label.setText(text)
            self.cast_label.setStyleSheet(f"color: {colour};")
        self.update_preview()
        self.cast_checked.emit()

    def _on_cast_check_failed(self, exc: BaseException) -> None:
        self.cast_effects = {}
        self.cast_label.setText(f"The cast could not be checked: {error_text(exc)[0]}")
        self.update_preview()

    def destination(self) -> Path:
        return self.form.destination()

    # --- exporting --------------------------------------------------------------------------
    def export_steps(
        self, checkpoint: Checkpoint, destination: Path, options: ExportOptions,
        cancel: Callable[[], bool], overwrite: bool = False,
    ) -> Generator[ExportProgress, None, ExportResult]:  # fmt: skip
        """The generator the export worker runs (on the worker thread: no widgets here)."""
        if self._dequantize_export:
            return iter_dequantize_export(
                checkpoint, destination, options, cancel, overwrite=overwrite
            )
        return iter_export(checkpoint, destination, options, cancel, overwrite=overwrite)

    def start_export(self) -> None:
        """Export as planned; an existing destination is replaced only once the user says so
        (the question opens as ``replace_box``)."""
        if self.checkpoint is None or self._exporting.busy():
            return
        self.update_preview()
        if self.plan is None or not self.export_button.isEnabled():
            return
        existing = self.existing_destination()
        if not existing:
            self._export(overwrite=False)
            return
        names = ", ".join(p.name for p in existing[:3]) + (" …" if len(existing) > 3 else "")
        self._ask_replace(names, existing[0].parent, "the export")

    def _export(self, overwrite: bool) -> None:
        assert self.checkpoint is not None and self.plan is not None
        ckpt, dest, options = self.checkpoint, self.destination(), self.plan.options
        self._dequantize_export = self.form.dequantize()
        self._run_export(
            lambda cancel: self.export_steps(ckpt, dest, options, cancel, overwrite), "Writing…"
        )

    def _set_exporting(self, exporting: bool) -> None:
        self.form.set_editable(not exporting)
        self.cancel_button.setEnabled(exporting)
        self.export_button.setEnabled(False)
        if not exporting:
            self.form.refresh()
            self.update_preview()  # enables Export when the plan and destination allow it

    # --- opening ----------------------------------------------------------------------------
    def _on_loaded(self, ckpt: Checkpoint) -> None:
        self.checkpoint = ckpt
        plan = plan_export(ckpt, ExportOptions())
        items = []
        for key in plan.candidates:
            node = ckpt.find(key) if key else ckpt.root
            label = node.label if node is not None else ""
            count = len(node.children) if node is not None else 0
            items.append((f"{key or '(top level)'} — {label}, {count} keys", key))
        self.form.set_state_dicts(items, plan.state_dict)
        self.form.show_dequantize_choice(bool(ckpt.logical))
        self.form.show_numpy_choice(
            any(n.tensor is not None and n.tensor.container == "numpy" for n in ckpt.tensors())
        )
        self.status_label.setText("")
        self.apply_preset("params" if plan.candidates and not self.subtree else "cpu")
        if self.subtree:  # everything, as saved, limited to the subtree
            self.form.include_edit.setText(include_globs(self.subtree))
        self.update_preview()
        self.loaded.emit()

    def _on_load_failed(self, exc: BaseException) -> None:
        self.status_label.setText("")
        self.problem_label.setText(error_text(exc)[0])
        self.export_button.setEnabled(False)

    # --- closing ----------------------------------------------------------------------------
    def shutdown(self, wait_s: float = 10.0) -> None:
        """Abort the workers, wait for their threads (the export removes its temporary file)
        and close the checkpoint."""
        slots = (self._opening, self._exporting, self._checking)
        for slot in slots:
            slot.abort()  # all three stop together, then each is waited for
        for slot in slots:
            slot.shutdown(wait_s)
        self._dequantized = None  # its loaders read the checkpoint's files
        if self.checkpoint is not None:
            self.checkpoint.close()
            self.checkpoint = None

    def done(self, result: int) -> None:  # Qt override: accept, reject and close all end here
        self.shutdown()
        super().done(result)
