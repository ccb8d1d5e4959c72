"""Export a clean copy of a checkpoint: the model's parameters only, or a CPU-loadable copy of the
whole file, optionally cast, filtered, renamed, as safetensors or sharded; written atomically and
verified against the source before it takes the destination's name.

``plan_export`` says what an export will keep, drop and weigh (the dialog's live preview);
``iter_export`` does it, yielding progress, and returns the verified ``ExportResult``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ckpt_gui.core.export.atomic import check_destination
from ckpt_gui.core.export.options import (
    CASTS,
    FORMATS,
    MODES,
    PRESETS,
    Dropped,
    ExportError,
    ExportOptions,
    ExportPlan,
    KeptTensor,
    parse_size,
)

if TYPE_CHECKING:
    from ckpt_gui.core.export.plan import (
        default_state_dict,
        plan_export,
        state_dict_candidates,
    )
    from ckpt_gui.core.export.run import (
        ExportProgress,
        ExportResult,
        dropped_summary,
        iter_export,
    )
    from ckpt_gui.core.export.verify import Verification

# What needs torch is imported when first asked for: the package's torch-free modules (the
# options, atomic files, ``head_start``) are then importable while torch is still loading.
_LAZY = {
    "default_state_dict": "plan",
    "plan_export": "plan",
    "state_dict_candidates": "plan",
    "ExportProgress": "run",
    "ExportResult": "run",
    "dropped_summary": "run",
    "iter_export": "run",
    "Verification": "verify",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CASTS",
    "FORMATS",
    "MODES",
    "PRESETS",
    "Dropped",
    "ExportError",
    "ExportOptions",
    "ExportPlan",
    "ExportProgress",
    "ExportResult",
    "KeptTensor",
    "Verification",
    "check_destination",
    "default_state_dict",
    "dropped_summary",
    "iter_export",
    "parse_size",
    "plan_export",
    "state_dict_candidates",
]
