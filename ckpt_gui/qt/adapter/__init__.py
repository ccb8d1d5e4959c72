"""The window's side of LoRA/PEFT adapters: the Adapter tab of an adapter's checkpoint tab
(``AdapterPanel``: per-module numbers, the base model's ‖ΔW‖/‖W‖ and its per-layer chart) and
the merged export (``MergeExportDialog``)."""

from __future__ import annotations

from ckpt_gui.qt.adapter.merge_dialog import MergeExportDialog
from ckpt_gui.qt.adapter.panel import AdapterPanel

__all__ = ["AdapterPanel", "MergeExportDialog"]
