"""Export mode: the dialog (``ExportDialog``), its options form and the plan's preview."""

from __future__ import annotations

from ckpt_gui.qt.export.dialog import ExportDialog
from ckpt_gui.qt.export.form import ExportForm
from ckpt_gui.qt.export.preview import PreviewModel, plan_summary

__all__ = ["ExportDialog", "ExportForm", "PreviewModel", "plan_summary"]
