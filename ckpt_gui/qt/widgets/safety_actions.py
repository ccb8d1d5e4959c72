"""A checkpoint tab's safety dialogs (``SafetyActions``, part of ``CheckpointView``): the scan
report of the file, and the trust dialog, the one way from the structural view to a real load."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt

from ckpt_gui.qt.widgets.scan_dialog import ScanReportDialog
from ckpt_gui.qt.widgets.trust_dialog import TrustDialog

if TYPE_CHECKING:
    from ckpt_gui.core.checkpoint import Checkpoint
    from ckpt_gui.qt.page import Page

    _Base = Page
else:
    _Base = object


class SafetyActions(_Base):
    """The safety part of a ``CheckpointView`` (which has the attributes declared here)."""

    path: Path
    trust: bool
    checkpoint: Checkpoint | None
    scan_dialog: ScanReportDialog | None
    trust_dialog: TrustDialog | None
    # Why the last trusted load (from the trust dialog) failed; the tab then shows the
    # structural view again, and the banner says why trusting did not help.
    trust_failure: str
    _trust_retry: bool  # a trusted load is under way; if it fails, back to the structural view

    def show_scan_report(self) -> ScanReportDialog:
        """The scan report of this file in a non-modal dialog: the one made while opening, or a
        fresh scan on a worker (files with no pickle, files that failed to open)."""
        if self.scan_dialog is not None:
            self.scan_dialog.shutdown()
            self.scan_dialog.close()
        report = self.checkpoint.scan if self.checkpoint is not None else None
        self.scan_dialog = ScanReportDialog(self.path, report, self)
        self.scan_dialog.show()
        self.scan_dialog.raise_()
        return self.scan_dialog

    def ask_trust(self) -> TrustDialog | None:
        """The trust dialog (window-modal); only its destructive button reloads trusted."""
        if self.checkpoint is None or self.checkpoint.view != "structural":
            return None
        dialog = TrustDialog(self.path, self.checkpoint.scan, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(self._load_trusted)
        dialog.finished.connect(self._forget_trust_dialog)
        self.trust_dialog = dialog
        dialog.open()
        return dialog

    def _forget_trust_dialog(self) -> None:
        self.trust_dialog = None

    def _load_trusted(self) -> None:
        self.trust = True  # this tab's decision: Reload keeps it, other tabs never see it
        self.trust_failure = ""
        self._trust_retry = True
        self.start()
