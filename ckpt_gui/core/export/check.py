"""Before a cast is written: how many finite values of each kept tensor would become ±inf, and
how many non-zero ones would flush to zero. The dialog's preview and the command line show these
counts; an export refuses overflow unless the user chose ``clamp`` or ``inf``.
"""

from __future__ import annotations

from collections.abc import Generator

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.chunks import compact, flat_chunks
from ckpt_gui.core.export.casting import CastEffect, cast_effect, narrows
from ckpt_gui.core.export.options import ExportError, ExportPlan, KeptTensor
from ckpt_gui.core.export.writers import CHUNK_ELEMENTS, CancelCheck, check_cancel
from ckpt_gui.core.tree import dtype_from_name


def _narrowed(plan: ExportPlan) -> list[KeptTensor]:
    """The kept tensors whose cast can overflow or underflow. Dequantized weights (source
    container "quantized") are measured as they are written, from the values the writer
    casts (``writers.Streamed``): a pass of their own would dequantize them twice."""
    return [
        k
        for k in plan.kept
        if k.source_container != "quantized"
        and narrows(dtype_from_name(k.source_dtype), dtype_from_name(k.dtype))
    ]


def cast_check_bytes(plan: ExportPlan) -> int:
    """Bytes the check reads (0 when the export casts nothing down)."""
    return sum(k.nbytes for k in _narrowed(plan))


def iter_cast_check(
    plan: ExportPlan, ckpt: Checkpoint, cancel: CancelCheck | None = None
) -> Generator[tuple[str, int], None, dict[str, CastEffect]]:
    """Yields ``(key, bytes read)``; returns the effect of the cast on every tensor it changes,
    by source key, in the plan's order (tensors the cast leaves intact are left out)."""
    effects: dict[str, CastEffect] = {}
    for kept in _narrowed(plan):
        node = ckpt.find(kept.key)
        assert node is not None
        target = dtype_from_name(kept.dtype)
        view, repeat = compact(node.load())  # a broadcast view: each value counts repeat times
        effect = CastEffect()
        for chunk in flat_chunks(view, CHUNK_ELEMENTS):
            check_cancel(cancel)
            effect.add(cast_effect(chunk, target))
            yield kept.key, chunk.numel() * target.itemsize * repeat
        if effect.overflow or effect.underflow:
            effects[kept.key] = CastEffect(effect.overflow * repeat, effect.underflow * repeat)
    return effects


def refuse_overflow(plan: ExportPlan, effects: dict[str, CastEffect]) -> None:
    """With ``on_overflow="error"``, refuse when any finite value would become ±inf."""
    if plan.options.on_overflow != "error":
        return
    for kept in plan.kept:
        effect = effects.get(kept.key)
        if effect is not None and effect.overflow:
            more = sum(1 for e in effects.values() if e.overflow) - 1
            others = f" (and {more} more tensors)" if more else ""
            raise ExportError(
                f"{kept.key}: {effect.overflow:,} finite values would become ±inf in "
                f"{kept.dtype}{others}; choose --on-overflow clamp or inf to proceed"
            )


def describe_effects(plan: ExportPlan, effects: dict[str, CastEffect]) -> list[str]:
    """One line per tensor the cast changes beyond rounding, for the preview and the CLI."""
    names = {k.key: k for k in plan.kept}
    lines = []
    for key, effect in effects.items():
        parts = []
        if effect.overflow:
            parts.append(f"{effect.overflow:,} finite values become ±inf")
        if effect.underflow:
            parts.append(f"{effect.underflow:,} non-zero values flush to zero")
        lines.append(f"{key}: " + " and ".join(parts) + f" in {names[key].dtype}")
    return lines
