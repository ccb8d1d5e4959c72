"""Casting floating tensors to a narrower dtype without hiding what the cast does.

A cast can turn finite values into ±inf (1e5 in float16) or flush tiny ones to zero (1e-8 in
float16). ``cast_effect`` counts both for a chunk, so an export can refuse or warn before it
writes; ``cast`` applies the user's choice for the overflowing values: keep them as ±inf
("inf") or saturate them at the target's largest finite value ("clamp"). "error" refuses the
export before anything is written (``run.iter_export``), so it casts like "inf".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CastEffect:
    """What casting one tensor does to its finite values."""

    overflow: int = 0  # finite values that become ±inf (or are clamped)
    underflow: int = 0  # non-zero values that become zero

    def add(self, other: CastEffect) -> None:
        self.overflow += other.overflow
        self.underflow += other.underflow


def cast(chunk: torch.Tensor, dtype: torch.dtype, on_overflow: str = "inf") -> torch.Tensor:
    """``chunk.to(dtype)``; with ``on_overflow="clamp"`` finite values beyond the target's range
    become its largest finite value, with their sign (source ±inf and NaN stay as they are)."""
    if chunk.dtype == dtype:
        return chunk
    out = chunk.to(dtype)
    if on_overflow == "clamp" and dtype.is_floating_point:
        over = out.isinf() & chunk.isfinite()
        if bool(over.any()):
            largest = torch.full_like(out, torch.finfo(dtype).max).copysign(out)
            out = torch.where(over, largest, out)
    return out


# Counting runs over blocks this long: the handful of passes over each stay in the cache
# (over a 16 MB chunk, each pass went to memory; measured 5x slower).
BLOCK = 1 << 15


def cast_effect(chunk: torch.Tensor, dtype: torch.dtype) -> CastEffect:
    """How many finite values of ``chunk`` (1-D) overflow, and how many non-zero ones flush to
    zero, when cast to ``dtype``."""
    if chunk.dtype == dtype or not (chunk.is_floating_point() and dtype.is_floating_point):
        return CastEffect()
    overflow = underflow = 0
    for start in range(0, chunk.numel(), BLOCK):
        a = chunk[start : start + BLOCK]
        out = a.to(dtype)
        overflow += int((out.isinf() & a.isfinite()).count_nonzero())
        underflow += int(((out == 0) & (a != 0)).count_nonzero())
    return CastEffect(overflow, underflow)


def narrows(source: torch.dtype, target: torch.dtype) -> bool:
    """Whether casting can overflow or underflow (float32 -> float16 can, float16 -> float32
    cannot)."""
    if source == target or not (source.is_floating_point and target.is_floating_point):
        return False
    a, b = torch.finfo(source), torch.finfo(target)
    # tiny * eps: the smallest subnormal, below which a value rounds to zero.
    return b.max < a.max or b.tiny * b.eps > a.tiny * a.eps
