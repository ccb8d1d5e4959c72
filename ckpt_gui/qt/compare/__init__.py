"""Compare mode: checkpoint A against checkpoint B (``CompareView``) and its models and plots."""

from __future__ import annotations

from ckpt_gui.qt.compare.plots import LayerChart, PairHistogramPanel
from ckpt_gui.qt.compare.table import DiffFilterProxy
from ckpt_gui.qt.compare.table_model import DiffTableModel
from ckpt_gui.qt.compare.view import CompareView

__all__ = ["CompareView", "DiffFilterProxy", "DiffTableModel", "LayerChart", "PairHistogramPanel"]
