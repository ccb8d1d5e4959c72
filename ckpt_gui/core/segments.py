"""Statistics of many small tensors at once: their values end to end in one array, reduced per
segment with NumPy's ``reduceat`` instead of a dozen torch calls per tensor.

A file of half a million one-byte tensors spends ~100 µs per tensor in the chunked path of
``ckpt_gui.core.stats`` (buffers, a worker-pool check, ten reductions each with its own call),
almost all of it fixed cost. Here the fixed cost is paid once per batch; the figures are the
same ones, taken in float64: counts and extremes exactly, and the mean and the sum of squared
deviations (M2) from values scaled by a power of two per segment (exact), so that squares
neither overflow nor underflow at any magnitude, as the chunked path does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class SegmentFigures:
    """Per segment: the finite values' count ``n``, ``mean``, ``m2`` (their sum of squared
    deviations), Bessel-corrected ``std`` and ``l2`` norm (0.0 where ``n`` is 0; ``std`` too
    where ``n`` is 1), their ``lo``/``hi`` (inf and -inf where ``n`` is 0), and the counts of
    zeros, NaN, +inf and -inf. Plain Python lists, one entry per segment, in order. ``std`` and
    ``l2`` are taken before unscaling, so they stay finite where ``m2`` overflows (float64
    values near 1e300)."""

    n: list[int]
    mean: list[float]
    m2: list[float]
    std: list[float]
    l2: list[float]
    lo: list[float]
    hi: list[float]
    zeros: list[int]
    nan: list[int]
    posinf: list[int]
    neginf: list[int]


def segment_figures(values: np.ndarray, lengths: np.ndarray) -> SegmentFigures:
    """The figures of each segment of ``values`` (1-D, real, float32 or float64), whose
    ``lengths`` (non-negative ints) add up to ``len(values)``. Empty segments are allowed."""
    x = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    k = len(lengths)
    if int(lengths.sum()) != len(x):
        raise ValueError("segment lengths do not add up to the number of values")
    # reduceat gives an empty segment the value at its start, not an identity: reduce over the
    # non-empty segments only and put the empty ones back at the end.
    full = lengths > 0
    counts = lengths[full]
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    if len(counts) == 0:
        return _spread(k, full, *([np.zeros(0)] * 11))
    finite = np.isfinite(x)
    if finite.all():  # the usual case: no masks
        n = counts
        lo = np.minimum.reduceat(x, starts)
        hi = np.maximum.reduceat(x, starts)
        nan = posinf = neginf = np.zeros(len(counts), dtype=np.int64)
        xf = x
    else:
        n = np.add.reduceat(finite.astype(np.int64), starts)
        nan = np.add.reduceat(np.isnan(x).astype(np.int64), starts)
        posinf = np.add.reduceat((x == np.inf).astype(np.int64), starts)
        neginf = np.add.reduceat((x == -np.inf).astype(np.int64), starts)
        lo = np.minimum.reduceat(np.where(finite, x, np.inf), starts)
        hi = np.maximum.reduceat(np.where(finite, x, -np.inf), starts)
        xf = np.where(finite, x, 0.0)
    zeros = np.add.reduceat((x == 0).astype(np.int64), starts)
    has = n > 0
    absmax = np.maximum(np.abs(np.where(has, lo, 0.0)), np.abs(np.where(has, hi, 0.0)))
    # Each segment scaled by 2**-e with absmax < 2**e: exact, and every square lands below 1.
    _, e = np.frexp(absmax)
    e_each = np.repeat(e, counts)
    scaled = np.ldexp(xf, -e_each)
    mean_scaled = np.add.reduceat(scaled, starts) / np.maximum(n, 1)
    dev = scaled - np.repeat(mean_scaled, counts)
    dev *= dev
    if xf is not x:
        dev[~finite] = 0.0
    m2_scaled = np.add.reduceat(dev, starts)
    # A segment of one repeated value has that value as its mean and no spread, exactly (a sum
    # of n copies divided by n can be off in the last bit).
    same = has & (lo == hi)
    mean_scaled = np.where(same, np.ldexp(np.where(has, lo, 0.0), -e), mean_scaled)
    m2_scaled = np.where(has & ~same, m2_scaled, 0.0)
    std_scaled = np.sqrt(m2_scaled / np.maximum(n - 1, 1))
    l2_scaled = np.sqrt(m2_scaled + n * mean_scaled * mean_scaled)
    with np.errstate(over="ignore"):  # m2 of values near 1e300 is past float64: inf
        mean = np.where(has, np.ldexp(mean_scaled, e), 0.0)
        m2 = np.ldexp(m2_scaled, 2 * e)
        std = np.where(n > 1, np.ldexp(std_scaled, e), 0.0)
        l2 = np.ldexp(l2_scaled, e)
    return _spread(k, full, n, mean, m2, std, l2, lo, hi, zeros, nan, posinf, neginf)


def _spread(k: int, full: np.ndarray, *columns: np.ndarray) -> SegmentFigures:
    """Figures of the non-empty segments back in place among all ``k`` segments."""
    if full.all():
        return SegmentFigures(*(c.tolist() for c in columns))
    empty = (0, 0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, 0, 0, 0, 0)
    out: list[list[Any]] = []  # ints or floats, per column
    for column, fill in zip(columns, empty):
        spread = np.full(k, fill, dtype=np.float64 if isinstance(fill, float) else np.int64)
        spread[full] = column
        out.append(spread.tolist())
    return SegmentFigures(*out)


def segment_int_extremes(values: np.ndarray, lengths: np.ndarray) -> tuple[list[int], list[int]]:
    """Per non-empty segment of an integer array, its exact min and max (Python ints); empty
    segments get 0 and 0 (they have no extremes to show)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    full = lengths > 0
    counts = lengths[full]
    lo = np.zeros(len(lengths), dtype=values.dtype)
    hi = np.zeros(len(lengths), dtype=values.dtype)
    if len(counts):
        starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        lo[full] = np.minimum.reduceat(values, starts)
        hi[full] = np.maximum.reduceat(values, starts)
    return lo.tolist(), hi.tolist()
