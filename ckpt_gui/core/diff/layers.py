"""Relative change per layer, in model order: where training or fine-tuning moved the weights."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ckpt_gui.core.diff.compare import IDENTICAL, DiffEntry

MODEL_ROLES = ("parameter", "buffer")


@dataclass
class LayerChange:
    """‖A−B‖/‖A‖ over all the compared tensors of one layer (``None`` when A's layer is all
    zeros and B's is not). ``keys`` are A's keys of those tensors."""

    name: str
    rel_l2: float | None
    diff_l2: float
    norm_a: float
    keys: list[str] = field(default_factory=list)
    changed: int = 0  # tensors of the layer that are not identical


def layer_name(name: str) -> str:
    """The layer a tensor belongs to: its key without the last component."""
    return name.rsplit(".", 1)[0] if "." in name else name


def layer_changes(entries: Iterable[DiffEntry], model_only: bool = True) -> list[LayerChange]:
    """One ``LayerChange`` per layer, in the order its first tensor appears in A. With
    ``model_only``, optimizer state and other tensors are left out whenever the file has model
    parameters or buffers. Only floating-point (and complex) tensors count."""
    # Integer tensors are counters (num_batches_tracked), not weights: they would dwarf the rest.
    compared = [
        e for e in entries if e.kind == "tensor" and e.metrics is not None and _is_float(e.dtype_a)
    ]
    if model_only and any(e.role in MODEL_ROLES for e in compared):
        compared = [e for e in compared if e.role in MODEL_ROLES]
    groups: dict[str, list[DiffEntry]] = {}
    for entry in compared:
        groups.setdefault(layer_name(entry.name), []).append(entry)
    out = []
    for name, members in groups.items():
        diff_sq = sum(e.metrics.diff_l2**2 for e in members if e.metrics is not None)
        norm_sq = sum(e.metrics.norm_a**2 for e in members if e.metrics is not None)
        diff, norm = math.sqrt(diff_sq), math.sqrt(norm_sq)
        rel = 0.0 if diff == 0 else (diff / norm if norm > 0 else None)
        out.append(
            LayerChange(
                name=name,
                rel_l2=rel,
                diff_l2=diff,
                norm_a=norm,
                keys=[e.key for e in members],
                changed=sum(1 for e in members if e.category != IDENTICAL),
            )
        )
    return out


def _is_float(dtype: str | None) -> bool:
    return dtype is not None and dtype.startswith(("float", "bfloat", "complex"))


def by_block(layers: list[LayerChange], limit: int = 80) -> list[LayerChange]:
    """More than ``limit`` layers are grouped by block: the layers of ``model.blocks.12``
    (their name up to the first numbered component) make one ``LayerChange``, so that a
    400-block model reads as 400 bars, not 2,000. Layers without a number stay as they are."""
    if len(layers) <= limit:
        return layers
    groups: dict[str, list[LayerChange]] = {}
    for layer in layers:
        parts = layer.name.split(".")
        numbered = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        block = layer.name if numbered is None else ".".join(parts[: numbered + 1])
        groups.setdefault(block, []).append(layer)
    out = []
    for name, members in groups.items():
        if len(members) == 1:
            out.append(members[0])
            continue
        diff = math.sqrt(sum(m.diff_l2**2 for m in members))
        norm = math.sqrt(sum(m.norm_a**2 for m in members))
        out.append(
            LayerChange(
                name=name,
                rel_l2=0.0 if diff == 0 else (diff / norm if norm > 0 else None),
                diff_l2=diff,
                norm_a=norm,
                keys=[k for m in members for k in m.keys],
                changed=sum(m.changed for m in members),
            )
        )
    return out
