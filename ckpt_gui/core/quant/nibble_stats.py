"""Moments of 4-bit GPTQ and AWQ weights taken from their packed words, with no dequantized
value ever written: the C kernel ``_nibbles.c`` (built with the package where a C compiler is
at hand) sums each group's codes and squared codes and finds its smallest and largest code; with
16-bit scales that gives every group's exact count, mean, M2, extremes and zeros. Where the
kernel is missing, or a weight does not fit it, statistics dequantize row blocks as before.
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
    rows, n = words.shape
    stride = _checked(words, zero_codes, scales, group_rows, n)
    assert _nibbles is not None
    count, mean, m2, lo, hi, zeros = _nibbles.moments(
        words.data_ptr(), stride, rows, n, group_rows, zero_codes.data_ptr(), scales.data_ptr()
    )
    return BlockMoments(count, mean, m2, lo, hi, zeros)


def awq_moments(
    words: torch.Tensor,
    zero_codes: torch.Tensor,
    scales: torch.Tensor,
    group_rows: int,
    first: int,
    last: int,
) -> BlockMoments:
    """Moments of outputs [first, last) of AWQ ``words`` (int32 (inputs, n): eight 4-bit codes
    of outputs 8c + [0, 2, 4, 6, 1, 3, 5, 7] each, any row stride), counted from the first
    word's first output; ``zero_codes`` and ``scales`` ``(groups, 8 n)`` in output order, a
    group being ``group_rows`` inputs."""
    rows, n = words.shape
    stride = _checked(words, zero_codes, scales, group_rows, 8 * n)
    if not 0 <= first <= last <= 8 * n:
        raise ValueError("awq_moments: outputs outside the words")
    assert _nibbles is not None
    count, mean, m2, lo, hi, zeros = _nibbles.awq_moments(
        words.data_ptr(),
        stride,
        rows,
        n,
        group_rows,
        zero_codes.data_ptr(),
        scales.data_ptr(),
        first,
        last,
    )
    return BlockMoments(count, mean, m2, lo, hi, zeros)


def _checked(
    words: torch.Tensor,
    zero_codes: torch.Tensor,
    scales: torch.Tensor,
    group_rows: int,
    outputs: int,
) -> int:
    """The words' row stride in bytes, once every part is of the kind and shape the kernel
    reads (it reads memory by address); ``ValueError`` otherwise."""
    import torch

    rows, n = words.shape
    groups = -(-rows // group_rows) if rows and group_rows > 0 else 0
    if (
        _nibbles is None
        or words.dtype != torch.int32
        or words.stride(1) != 1
        or words.device.type != "cpu"
        or group_rows <= 0
        or tuple(zero_codes.shape) != (groups, outputs)
        or tuple(scales.shape) != (groups, outputs)
        or zero_codes.dtype != torch.int32
        or scales.dtype != torch.float32
        or not (zero_codes.is_contiguous() and scales.is_contiguous())
        or (rows > 1 and words.stride(0) < n)
    ):
        raise ValueError("packed-word moments: parts of the wrong kind or shape")
    return words.stride(0) * 4 if rows > 1 else 4 * n
