"""Moments of 4-bit GPTQ weights taken from their packed words, with no dequantized value ever
written: the C kernel ``_nibbles.c`` (built with the package where a C compiler is at hand)
sums each group's codes and squared codes and finds its smallest and largest code; with 16-bit
scales that gives every group's exact count, mean, M2, extremes and zeros. Where the kernel is
missing, or a weight does not fit it, statistics dequantize row blocks as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_nibbles: ModuleType | None
try:
    import ckpt_gui.core.quant._nibbles as _nibbles
except ImportError:  # built without a C compiler: the dequantizing path serves
    _nibbles = None


@dataclass(frozen=True)
class BlockMoments:
    """What ``_Moments.merge`` takes, for one block of a weight's rows, plus its zeros."""

    count: int
    mean: float
    m2: float
    min: float
    max: float
    zeros: int

    def numel(self) -> int:  # what the chunk pool counts as done
        return self.count


def available() -> bool:
    return _nibbles is not None


def gptq_moments(
    words: torch.Tensor, zero_codes: torch.Tensor, scales: torch.Tensor, group_rows: int
) -> BlockMoments:
    """Moments of the values (q - z) * s of ``words`` (int32 (packed rows, n): eight 4-bit
    codes of consecutive inputs each, any row stride), ``zero_codes`` int32 and ``scales``
    (float32 holding 16-bit values) per group of ``group_rows`` packed rows and output,
    ``(groups, n)``. The kernel reads memory by address: every size is checked here."""
    import torch

    rows, n = words.shape
    groups = -(-rows // group_rows) if rows else 0
    if (
        _nibbles is None
        or words.dtype != torch.int32
        or words.stride(1) != 1
        or words.device.type != "cpu"
        or group_rows <= 0
        or tuple(zero_codes.shape) != (groups, n)
        or tuple(scales.shape) != (groups, n)
        or zero_codes.dtype != torch.int32
        or scales.dtype != torch.float32
        or not (zero_codes.is_contiguous() and scales.is_contiguous())
        or (rows > 1 and words.stride(0) < n)
    ):
        raise ValueError("gptq_moments: parts of the wrong kind or shape")
    stride = words.stride(0) * 4 if rows > 1 else 4 * n
    count, mean, m2, lo, hi, zeros = _nibbles.moments(
        words.data_ptr(), stride, rows, n, group_rows, zero_codes.data_ptr(), scales.data_ptr()
    )
    return BlockMoments(count, mean, m2, lo, hi, zeros)
