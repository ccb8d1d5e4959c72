"""``ScanReportDialog``: every global a file's pickles name, with a verdict, in a non-modal window.

It shows a report already made while opening (``Checkpoint.scan``), or scans the path itself on a
worker: the scan reads opcodes only, so it works for any file, even one that failed to open.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QCloseEvent, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.qt import jobs, theme, workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.plain_text import plain_tooltip
from ckpt_gui.qt.widgets.safety_banner import qualname, verdict_colour

HEADERS = ("Global", "Verdict", "Where", "Count")
VERDICT_ORDER = {"unsafe": 0, "unknown": 1, "safe": 2}
VERDICT_TEXT = {
    "unsafe": "loading this file with torch.load(weights_only=False) or pickle would run code "
    "it names.",
    "unknown": "it names globals that are neither known to be safe nor known to be dangerous; "
    "a real load would import and call them.",
    "safe": "every global it names is one that torch's safe loader allows.",
}


def verdict_line(report: Any) -> str:
    """The overall verdict in one sentence."""
    if not report.globals and not report.pickles:
        return "Safe: this file holds no pickle, so nothing in it can run code."
    return f"{report.verdict.capitalize()}: {VERDICT_TEXT.get(report.verdict, '')}"


class ScanReportDialog(QDialog):
    """The scan report of one path; ``report_ready`` once it shows a report or an error."""

    report_ready = Signal()

    def __init__(self, path: str | Path, report: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.report = report
        self.error_message = ""
        self._work = workers.WorkerSlot()
        self.setWindowTitle(f"Scan report: {self.path.name or self.path}")
        self.setModal(False)
        self.resize(760, 420)
        self.verdict_label = QLabel()
        self.verdict_label.setTextFormat(Qt.TextFormat.RichText)
        self.verdict_label.setWordWrap(True)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        for column in (1, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.notes_label = QLabel()
        self.notes_label.setTextFormat(Qt.TextFormat.PlainText)  # notes quote the file
        self.notes_label.setWordWrap(True)
        self.notes_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        theme.style_secondary(self.notes_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setDefault(True)
        close.setFocus(Qt.FocusReason.OtherFocusReason)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>{escape(str(self.path))}</b>"))
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.notes_label)
        layout.addWidget(buttons)
        if report is not None:
            self.set_report(report)
        else:
            self.start_scan()

    # --- filling ----------------------------------------------------------------------------
    def start_scan(self) -> None:
        """Scan ``path`` on a worker; the dialog says so meanwhile."""
        grey = theme.colour("secondary")
        self.verdict_label.setText(f"<span style='color:{grey}'>Scanning…</span>")
        path = self.path
        self._work.call(
            lambda: jobs.scan(path), on_finish=self.set_report, on_error=self._on_failed
        )

    def _on_failed(self, exc: BaseException) -> None:
        line, _ = error_text(exc)
        self.error_message = line
        self.verdict_label.setText(
            f"<span style='color:{verdict_colour('unsafe')}'>Could not scan: {escape(line)}</span>"
        )
        self.report_ready.emit()

    def set_report(self, report: Any) -> None:
        self.report = report
        colour = verdict_colour(report.verdict)
        first, _, rest = verdict_line(report).partition(":")
        counts = Counter(r.verdict for r in report.globals)
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER if counts[v])
        total = len(report.globals)
        self.verdict_label.setText(
            f"<span style='color:{colour}; font-size:13pt'><b>{escape(first)}</b></span>"
            f"{escape(':' + rest) if rest else ''}"
            + (
                f"<br><span style='color:{theme.colour('secondary')}'>"
                f"{total} global{'s' * (total != 1)}: {tally}</span>"
                if total
                else ""
            )
        )
        refs = sorted(report.globals, key=lambda r: VERDICT_ORDER.get(r.verdict, 1))
        self.table.setRowCount(len(refs))
        bold = QFont(self.font())
        bold.setBold(True)
        for row, ref in enumerate(refs):
            cells = (qualname(ref), ref.verdict, ref.where, str(ref.count))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if ref.written:
                    item.setToolTip(plain_tooltip(f"written in the file as {ref.written}"))
                if column == 1:
                    item.setForeground(QBrush(QColor(verdict_colour(ref.verdict))))
                    item.setFont(bold)
                if column == 3:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(row, column, item)
        self.table.setCurrentCell(-1, -1)  # no cell outlined until the user picks one
        self.table.setVisible(bool(refs))
        notes = list(report.notes) + [f"skipped {s}" for s in report.skipped]
        self.notes_label.setText("\n".join(f"• {n}" for n in notes))
        self.notes_label.setVisible(bool(notes))
        self.report_ready.emit()

    # --- reading back -----------------------------------------------------------------------
    def rows(self) -> list[tuple[str, str, str, str]]:
        """The table as shown: (global, verdict, where, count) per row."""

        def text(row: int, column: int) -> str:
            item = self.table.item(row, column)
            return "" if item is None else item.text()

        return [
            (text(r, 0), text(r, 1), text(r, 2), text(r, 3)) for r in range(self.table.rowCount())
        ]

    def verdict_text(self) -> str:
        return self.verdict_label.text()

    def notes_text(self) -> str:
        return self.notes_label.text()

    def is_busy(self) -> bool:
        return self._work.busy()

    # --- closing ----------------------------------------------------------------------------
    def shutdown(self, wait_s: float = 5.0) -> None:
        self._work.shutdown(wait_s)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)
