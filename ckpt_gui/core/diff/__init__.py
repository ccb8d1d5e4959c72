"""Compare two checkpoints: key matching, chunked per-tensor metrics, and the streaming diff."""

from __future__ import annotations

from ckpt_gui.core.diff.compare import (
    CATEGORIES,
    CATEGORY_TITLES,
    CHANGED,
    DTYPE,
    IDENTICAL,
    ONLY_A,
    ONLY_B,
    SHAPE,
    DiffEntry,
    DiffEvent,
    DiffFailed,
    DiffReport,
    DiffResult,
    MatchFound,
    diff_checkpoints,
    iter_diff,
    summary_line,
)
from ckpt_gui.core.diff.layers import LayerChange, layer_changes
from ckpt_gui.core.diff.matching import (
    MATCH_MODES,
    KeyMatch,
    Matching,
    match_checkpoints,
    match_leaves,
    parse_map,
)
from ckpt_gui.core.diff.metrics import TensorDiff, compare_dtype, paired_chunks, tensor_diff
from ckpt_gui.core.stats import Progress

__all__ = [
    "CATEGORIES",
    "CATEGORY_TITLES",
    "CHANGED",
    "DTYPE",
    "IDENTICAL",
    "MATCH_MODES",
    "ONLY_A",
    "ONLY_B",
    "SHAPE",
    "DiffEntry",
    "DiffEvent",
    "DiffFailed",
    "DiffReport",
    "DiffResult",
    "KeyMatch",
    "LayerChange",
    "MatchFound",
    "Matching",
    "Progress",
    "TensorDiff",
    "compare_dtype",
    "diff_checkpoints",
    "iter_diff",
    "layer_changes",
    "match_checkpoints",
    "match_leaves",
    "paired_chunks",
    "parse_map",
    "summary_line",
    "tensor_diff",
]
