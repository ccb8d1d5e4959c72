"""``AdapterPanel``: what a LoRA adapter changes, module by module, in the adapter's tab.

The adapter's tensors are sorted into modules on a worker (``find_adapters``), then
``iter_report`` fills in each module's numbers on the same ``WorkerSlot`` (cancellable, the
window never waits for it). "Open with base model…" opens a base on the worker and runs the
report again with it: ‖W‖, ‖ΔW‖/‖W‖ per module and per layer (``RatioChart``), and a warning
line for config targets that match no base weight. "Export merged…" opens
``MergeExportDialog``. The panel shows the tab's checkpoint; the base is its own, closed when
the panel lets go of the adapter (``release``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.adapters import (
    Adapter,
    AdapterReport,
    AdapterSet,
    ModuleReport,
    find_adapters,
    iter_report,
)
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.qt import jobs, theme, workers
from ckpt_gui.qt.adapter import texts
from ckpt_gui.qt.adapter.base_choice import ask_base_file, ask_base_folder, start_folder
from ckpt_gui.qt.adapter.chart import RatioChart
from ckpt_gui.qt.adapter.lines import ReportLines
from ckpt_gui.qt.adapter.merge_dialog import MergeExportDialog
from ckpt_gui.qt.adapter.model import AdapterModel
from ckpt_gui.qt.adapter.table import ModuleTable
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.widgets.progress import set_progress


class AdapterPanel(QWidget):
    """The Adapter tab of a checkpoint tab that holds a LoRA adapter."""

    reveal_key = Signal(str)  # show this tensor in the Tensors tab
    report_finished = Signal(object)  # AdapterReport
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.checkpoint: Checkpoint | None = None
        self.found: AdapterSet | None = None
        self.adapter: Adapter | None = None
        self.base: Checkpoint | None = None
        self.report: AdapterReport | None = None
        self.model: AdapterModel | None = None
        self.merge_dialog: MergeExportDialog | None = None
        self._work = workers.WorkerSlot()  # sorting the tensors, opening a base, the report
        self._done = 0  # modules reported so far
        self._job = ""  # what the slot runs: "find", "base" or "report"
        self._build()

    # --- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.PlainText)  # names come from the files
        self.header.setStyleSheet("font-weight: bold;")
        self.adapter_box = QComboBox()
        self.adapter_box.setToolTip("PEFT saved several adapters here: the one shown")
        self.adapter_box.currentIndexChanged.connect(self._on_adapter_chosen)
        self.adapter_box.setVisible(False)

        self.base_button = QToolButton()
        self.base_button.setText("Open with base model…")
        self.base_button.setToolTip(
            "Pair each module with the base weight it changes: ‖ΔW‖/‖W‖ per module and per "
            "layer, and the config's targets that match nothing"
        )
        self.base_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.base_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        menu = QMenu(self.base_button)
        menu.addAction("Base model file…", self.choose_base_file)
        menu.addAction("Base model folder…", self.choose_base_folder)
        self.base_button.setMenu(menu)
        self.base_button.clicked.connect(self.choose_base_file)
        self.export_button = QPushButton("Export merged…")
        self.export_button.setToolTip("Write the base with this adapter merged into it")
        self.export_button.clicked.connect(self.export_merged)
        self.base_label = QLabel()
        self.base_label.setTextFormat(Qt.TextFormat.PlainText)
        theme.style_secondary(self.base_label)

        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        theme.style_secondary(self.status_label)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(200)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)

        self.lines = ReportLines()

        self.view = ModuleTable()
        self.view.reveal_key.connect(self.reveal_key)
        self.proxy = self.view.proxy
        self.chart = RatioChart()
        self.chart.module_clicked.connect(self.select_module)
        self.chart.setVisible(False)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.chart)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([440, 360])
        self.splitter.setChildrenCollapsible(False)

        top = QHBoxLayout()
        top.addWidget(self.header)
        top.addWidget(self.adapter_box)
        top.addStretch(1)
        top.addWidget(self.base_button)
        top.addWidget(self.export_button)
        second = QHBoxLayout()
        second.addWidget(self.base_label, 1)
        second.addWidget(self.status_label)
        second.addWidget(self.progress_bar)
        second.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 2)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(second)
        layout.addWidget(self.lines)
        layout.addWidget(self.splitter, 1)
        self._show_lines()
        self._set_busy(False)

    # --- public -----------------------------------------------------------------------------
    def set_checkpoint(self, ckpt: Checkpoint) -> None:
        """Show the adapters of ``ckpt`` (the tab's, opened): sorted and reported on a worker.
        A base chosen before is kept (a reload shows the adapter with it again)."""
        self.release(keep_base=True)
        self.checkpoint = ckpt
        self.header.setText("LoRA adapter")
        self._status("Reading adapter_config.json…", 0, 0)
        self._job = "find"
        self._work.call(
            lambda: find_adapters(ckpt),
            on_finish=self._on_found,
            on_error=self._on_failed,
            discard=_close_set,
        )

    def open_base(self, path: str | Path) -> None:
        """Pair the adapter with the base model at ``path`` (opened on a worker)."""
        path = Path(path)
        self._status(f"Opening the base model {path.name}…", 0, 0)
        self._job = "base"
        self._work.call(
            lambda: jobs.open_checkpoint(path, False),
            on_finish=self._on_base_opened,
            on_error=self._on_base_failed,
            discard=jobs.close_checkpoint,
        )

    def choose_base_file(self) -> None:
        """Open with base model…: a file (safetensors, a torch.save file, an index)."""
        path = ask_base_file(self, start_folder(self.base, self.checkpoint))
        if path:
            self.open_base(path)

    def choose_base_folder(self) -> None:
        """Open with base model…: a folder (a Hugging Face model folder, shards, DCP)."""
        path = ask_base_folder(self, start_folder(self.base, self.checkpoint))
        if path:
            self.open_base(path)

    def export_merged(self) -> MergeExportDialog | None:
        """Export merged…: the dialog, for the adapter shown and the base chosen."""
        if self.adapter is None or self.base is None:
            self._status("Open the base model first, then export the merge", 0, 0, busy=False)
            return None
        if self.merge_dialog is not None:
            if self.merge_dialog.is_exporting():  # never cut a running export short
                self.merge_dialog.raise_()
                return self.merge_dialog
            self.merge_dialog.close()
        dialog = MergeExportDialog(
            self.merge_source(), self.base.path, self.window(), adapter_name=self.adapter.name
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(self._forget_dialog)
        self.merge_dialog = dialog
        dialog.open()
        return dialog

    def merge_source(self) -> Path:
        """What the merge opens for the adapter shown: the tab's file for the adapter at its top,
        else that adapter's own folder (a sub-folder adapter, one of a folder of adapters)."""
        assert self.adapter is not None and self.checkpoint is not None
        if self.adapter.prefix == "" and self.adapter.checkpoint is self.checkpoint:
            return self.checkpoint.path
        return self.adapter.folder

    def select_module(self, module: str) -> bool:
        """Select and reveal the row of ``module`` (the adapter's module path)."""
        return self.view.select_module(module)

    def is_busy(self) -> bool:
        return self._work.busy()

    def copy_text(self) -> str:
        """Edit > Copy: the table's selected rows, tab-separated."""
        return self.view.copy_text()

    def show_tab(self) -> None:
        """Bring the panel to the front of the tabs it is in."""
        tabs = self.parentWidget()
        tabs = tabs.parentWidget() if tabs is not None else None  # a QTabWidget's stack's
        if isinstance(tabs, QTabWidget):
            tabs.setCurrentWidget(self)

    def cancel(self) -> None:
        """Stop what runs: the numbers so far stay; a base being opened is not opened."""
        if not self._work.busy():
            return
        self._work.abort()
        if self._job == "base":
            text = "Cancelled: the base model was not opened"
        elif self._job == "report":
            total = len(self.model.by_module) if self.model is not None else 0
            text = f"Cancelled: {self._done} of {total} modules computed"
        else:
            text = "Cancelled"
        self._status(text, 0, 0, busy=False)

    def release(self, wait_s: float = 5.0, keep_base: bool = False) -> None:
        """Stop the work, wait for its thread and let go of the adapter (and of the base unless
        ``keep_base``): the tab is about to close its checkpoint."""
        self._work.shutdown(wait_s)  # an export goes on: its dialog reads files of its own
        self.view.set_adapter_model(None)
        if self.model is not None:
            self.model.deleteLater()
            self.model = None
        self.adapter, self.report = None, None
        self.chart.set_rows([])
        if self.found is not None:
            self.found.close()
            self.found = None
        self.checkpoint = None
        if not keep_base and self.base is not None:
            self.base.close()
            self.base = None
        self.adapter_box.blockSignals(True)
        self.adapter_box.clear()
        self.adapter_box.blockSignals(False)
        self._show_lines()
        self._set_busy(False)

    # --- finding the adapters ---------------------------------------------------------------
    def _on_found(self, found: AdapterSet) -> None:
        self.found = found
        self.adapter_box.blockSignals(True)
        self.adapter_box.clear()
        for adapter in found.adapters:
            self.adapter_box.addItem(printable(adapter.name, 80))
        self.adapter_box.blockSignals(False)
        self.adapter_box.setVisible(len(found.adapters) > 1)
        self._use_adapter(found.adapters[0])

    def _on_adapter_chosen(self, index: int) -> None:
        if self.found is not None and 0 <= index < len(self.found.adapters):
            self._use_adapter(self.found.adapters[index])

    def _use_adapter(self, adapter: Adapter) -> None:
        self._work.shutdown()  # nothing may still read the old adapter's model rows
        self.adapter = adapter
        old = self.model
        self.model = AdapterModel(adapter, self)
        self.view.set_adapter_model(self.model)
        if old is not None:
            old.deleteLater()
        self.header.setText(texts.describe_adapter(adapter))
        self._start_report()

    # --- the report -------------------------------------------------------------------------
    def _start_report(self) -> None:
        adapter, base, model = self.adapter, self.base, self.model
        assert adapter is not None and model is not None
        self.report = None
        self._done = 0
        model.clear_reports(base is not None)
        self.view.show_base_columns(base is not None)
        self.chart.setVisible(base is not None)
        self.chart.set_rows([])
        self._show_lines()
        self._show_base()
        total = len(model.by_module)
        what = "‖ΔW‖/‖W‖" if base is not None else "‖ΔW‖"
        self._status(f"Computing {what}… 0 of {total} modules", 0, max(total, 1))
        self._job = "report"
        self._work.start(
            lambda cancel: iter_report(adapter, base, cancel),
            on_yield=self._on_reports,
            on_finish=self._on_report_done,
            on_error=self._on_failed,
            with_abort=True,
        )
        self.view.fit_columns()

    def _on_reports(self, batch: list[ModuleReport]) -> None:
        if self.model is None:
            return
        self.model.set_reports(batch)
        self._done += len(batch)
        total = len(self.model.by_module)
        what = "‖ΔW‖/‖W‖" if self.base is not None else "‖ΔW‖"
        self._status(f"Computing {what}… {self._done} of {total} modules", self._done, total)
        if self.base is not None:
            self._draw_chart()

    def _on_report_done(self, report: AdapterReport) -> None:
        if self.model is None:
            return
        self.report = report
        self.model.set_adapter_report(report)
        self._done = len(report.modules)
        self._status("", 0, 0, busy=False)
        self._show_lines()
        if self.base is not None:
            self._draw_chart()
        self.view.fit_columns()
        self.report_finished.emit(report)

    def _on_failed(self, exc: BaseException) -> None:
        line, _ = error_text(exc)
        self._status("", 0, 0, busy=False)
        self.lines.show_failure(line)
        self.failed.emit(line)

    def _draw_chart(self) -> None:
        assert self.model is not None
        rows = [(r.module, r.name, r.relative) for r in self.model.reports()]
        self.chart.set_rows(rows)

    # --- the base ---------------------------------------------------------------------------
    def _on_base_opened(self, base: Checkpoint) -> None:
        self._work.shutdown()  # the report it replaced may still be reading the old base
        if self.base is not None:
            self.base.close()
        self.base = base
        if self.adapter is not None:
            self._start_report()
        else:
            self._status("", 0, 0, busy=False)
            self._show_base()

    def _on_base_failed(self, exc: BaseException) -> None:
        line, _ = error_text(exc)
        self._status("", 0, 0, busy=False)
        self.lines.show_failure(f"The base model was not opened: {line}")
        self.failed.emit(line)

    def _show_base(self) -> None:
        base = self.base
        self.export_button.setEnabled(base is not None and self.adapter is not None)
        modules = len(self.model.by_module) if self.model is not None else 0
        self.base_label.setText(texts.base_line(base.path if base else None, self.report, modules))
        self.base_label.setToolTip(str(base.path) if base is not None else "")

    # --- what the lines say -----------------------------------------------------------------
    def _show_lines(self) -> None:
        self.lines.show_report(self.found.notes if self.found is not None else [], self.report)
        self._show_base()

    def _status(self, text: str, done: int, total: int, busy: bool = True) -> None:
        self.status_label.setText(text)
        set_progress(self.progress_bar, done, total)
        self._set_busy(busy and bool(text))

    def _set_busy(self, busy: bool) -> None:
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.base_button.setEnabled(self.checkpoint is not None)

    # --- interaction ------------------------------------------------------------------------
    def _forget_dialog(self) -> None:
        self.merge_dialog = None


def _close_set(result: object) -> None:
    if isinstance(result, AdapterSet):
        result.close()
