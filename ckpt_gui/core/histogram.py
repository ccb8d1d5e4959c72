"""Histograms of any tensor: a fast sampled mode for instant display and an exact streamed mode.

Bins are equal-width over the finite range, ``bins`` of them (128 by default); integer and bool
tensors get integer-aligned bins (edges at half-integers, every bin holding the same number of
integer values). Counting avoids ``torch.histc``: each chunk, on the worker threads of
``ckpt_gui.core.chunks``, maps to bin indices with an in-place ``(x - lo) * scale`` and a
``bincount`` of uint8 indices, several times faster. The few values within rounding of an edge
are re-binned exactly, so counts match the float64 edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ckpt_gui.core.chunks import (
    DEFAULT_CHUNK_ELEMS,
    CancelCheck,
    compact,
    dense_flat,
    drain,
    map_chunks,
    to_work,
    work_dtype,
)
from ckpt_gui.core.stats import TensorStats

DEFAULT_BINS = 128
# A few million elements: enough for a faithful shape, small enough for well under 50 ms.
DEFAULT_SAMPLE = 1 << 21
_SAMPLE_BLOCK = 1024  # elements read together: one page of float32, so few page faults


@dataclass(frozen=True)
class Histogram:
    """``counts[i]`` values fell in ``[edges[i], edges[i+1])`` (the last bin is closed).

    NaN and ±Inf are left out and counted apart. ``sampled`` says the counts come from
    ``elements`` values spread evenly over the tensor rather than from all ``numel``.
    ``edges`` and ``counts`` are empty when there is no finite value to count.
    """

    edges: np.ndarray  # float64, len(counts) + 1
    counts: np.ndarray  # int64
    sampled: bool
    numel: int  # elements in the tensor
    elements: int  # elements looked at: numel, or the sample size
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    integer: bool = False  # bins are integer-aligned
    complex_magnitude: bool = False

    @property
    def finite(self) -> int:
        """Finite values counted: the sum of ``counts``."""
        return int(self.counts.sum())

    @property
    def is_empty(self) -> bool:
        return self.counts.size == 0


def histogram(
    t: torch.Tensor | Any,
    bins: int = DEFAULT_BINS,
    *,
    exact: bool = False,
    stats: TensorStats | None = None,
    sample: int = DEFAULT_SAMPLE,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
) -> Histogram:
    """Histogram of the finite values of CPU tensor ``t`` (complex: of the magnitude), or of
    a quantized weight's dequantized values (``t`` its ``LogicalTensor``).

    ``exact=False`` counts a deterministic sample of about ``sample`` elements (the whole tensor
    when it is that small) and returns at once; ``exact=True`` streams every element in chunks,
    calling ``cancel`` between them (a true result stops with ``Cancelled``). ``stats`` from
    ``tensor_stats`` supplies the range and saves the exact mode its first pass.
    """
    if not isinstance(t, torch.Tensor):  # a quantized weight's LogicalTensor: row blocks
        return _histogram(t, bins, exact, stats, sample, chunk_elems, cancel)
    t, repeat = compact(t)
    result = _histogram(t, bins, exact, stats, sample, chunk_elems, cancel)
    if repeat == 1:
        return result
    # A broadcast view: every element of the compact view stands ``repeat`` times.
    if result.sampled:
        return replace(result, numel=result.numel * repeat)
    return replace(
        result,
        counts=result.counts * repeat,
        numel=result.numel * repeat,
        elements=result.elements * repeat,
        nan=result.nan * repeat,
        posinf=result.posinf * repeat,
        neginf=result.neginf * repeat,
    )


def _histogram(
    t: torch.Tensor | Any,
    bins: int,
    exact: bool,
    stats: TensorStats | None,
    sample: int,
    chunk_elems: int,
    cancel: CancelCheck | None,
) -> Histogram:
    if bins < 1:
        raise ValueError("bins must be at least 1")
    numel = t.numel()
    sampled = not exact and numel > sample
    lazy = not isinstance(t, torch.Tensor)
    source = t
    if sampled:
        source = _sample(t, sample) if isinstance(t, torch.Tensor) else t.sample(sample)
    dtype = _work(source) if lazy else torch.float32 if source.is_quantized else source.dtype
    integer = not (dtype.is_floating_point or dtype.is_complex)
    nonfinite = (0, 0, 0)
    if stats is not None and stats.min is not None and stats.max is not None:
        lo_hi: tuple[float, float] | None = (float(stats.min), float(stats.max))
    else:
        lo_hi, nonfinite = _range(source, chunk_elems, cancel)
    result = dict(
        sampled=sampled,
        numel=numel,
        elements=source.numel(),
        integer=integer,
        complex_magnitude=not lazy and t.is_complex(),
    )
    if lo_hi is None:
        return _make(np.zeros(0), np.zeros(0, np.int64), nonfinite, result)
    lo, hi = lo_hi
    if integer:
        if dtype == torch.bool:
            lo, hi = 0.0, 1.0
        edges, counts = _count_integers(source, int(lo), int(hi), bins, chunk_elems, cancel)
        return _make(edges, counts, (0, 0, 0), result)
    if lo == hi:  # a constant: bins centred on it, one unit wide in all (as numpy does)
        lo, hi = lo - 0.5, hi + 0.5
    # Exact stats that found no NaN/Inf spare the count pass its per-chunk finiteness check.
    check = sampled or stats is None or stats.nonfinite > 0
    edges, counts, nonfinite = _count_floats(source, lo, hi, bins, check, chunk_elems, cancel)
    return _make(edges, counts, nonfinite, result)


def _make(
    edges: np.ndarray, counts: np.ndarray, nonfinite: tuple[int, int, int], result: dict[str, Any]
) -> Histogram:
    nan, posinf, neginf = nonfinite
    return Histogram(edges=edges, counts=counts, nan=nan, posinf=posinf, neginf=neginf, **result)


def _range(
    t: torch.Tensor, chunk_elems: int, cancel: CancelCheck | None
) -> tuple[tuple[float, float] | None, tuple[int, int, int]]:
    """The finite (min, max) of ``t`` (``None`` if nothing is finite) and its NaN/+Inf/-Inf
    counts, in one pass on the worker threads."""
    size = min(chunk_elems, max(t.numel(), 1))
    parts = drain(map_chunks(t, size, lambda n: _Range(_work(t), n), _Range.add, cancel))
    lo, hi = min(p.lo for p in parts), max(p.hi for p in parts)
    return ((lo, hi) if lo <= hi else None), _total_bad(p.bad for p in parts)


class _Range:
    def __init__(self, wdtype: torch.dtype, size: int) -> None:
        self.buf = torch.empty(size, dtype=wdtype)
        self.lo, self.hi = math.inf, -math.inf
        self.bad = [0, 0, 0]

    def add(self, chunk: torch.Tensor) -> None:
        w = to_work(chunk, self.buf)
        if w.numel() == 0:
            return
        a, b = (float(v) for v in torch.aminmax(w))
        if not (math.isfinite(a) and math.isfinite(b)):  # NaN propagates through aminmax
            w = _drop_nonfinite(w, self.bad)
            if w.numel() == 0:
                return
            a, b = (float(v) for v in torch.aminmax(w))
        self.lo, self.hi = min(self.lo, a), max(self.hi, b)


def _count_floats(
    t: torch.Tensor,
    lo: float,
    hi: float,
    bins: int,
    check: bool,
    chunk_elems: int,
    cancel: CancelCheck | None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Edges, and counts of the finite values of ``t`` in ``bins`` equal bins over ``[lo, hi]``,
    and the NaN/+Inf/-Inf counts (looked for only when ``check``)."""
    wdtype = _work(t)
    if wdtype == torch.float32 and not math.isfinite(np.float32(hi) - np.float32(lo)):
        wdtype = torch.float64  # hi - lo overflows float32: map indices in float64
    edges = np.linspace(lo, hi, bins + 1)
    inner = torch.from_numpy(_edges_above(edges[1:-1], wdtype))
    size = min(chunk_elems, max(t.numel(), 1))

    def make(n: int) -> _FloatCounter:
        return _FloatCounter(wdtype, n, lo, hi, bins, inner, check)

    parts = drain(map_chunks(t, size, make, _FloatCounter.add, cancel))
    counts = torch.stack([p.total for p in parts]).sum(0).numpy()
    counts[bins - 1] += counts[bins]  # the last bin is closed: it holds values equal to hi
    return edges, counts[:bins].copy(), _total_bad(p.bad for p in parts)


class _FloatCounter:
    """One worker's bin counts. Each chunk is mapped to bin indices in the work dtype, shifted
    up by ``delta`` bins, far more than the rounding error; only values whose shifted position
    lies within ``2 * delta`` of an integer can be in the wrong bin, and those few are re-binned
    exactly by ``bucketize`` against the edges, so counts agree with the float64 edges exactly.
    """

    def __init__(
        self,
        wdtype: torch.dtype,
        size: int,
        lo: float,
        hi: float,
        bins: int,
        inner: torch.Tensor,
        check: bool,
    ) -> None:
        self.buf = torch.empty(size, dtype=wdtype)
        self.scratch = torch.empty(size, dtype=wdtype)
        # Indices reach ``bins`` (values at the top edge, folded into the last bin at the end);
        # uint8 keeps the index array, and bincount's pass over it, small.
        self.index = torch.empty(size, dtype=torch.uint8 if bins < 255 else torch.int64)
        self.scale = bins / (hi - lo)
        self.delta = 1e-6 * (bins + 1)
        self.origin = lo - self.delta / self.scale
        self.bins, self.inner, self.check = bins, inner, check
        self.total = torch.zeros(bins + 1, dtype=torch.int64)
        self.bad = [0, 0, 0]

    def add(self, chunk: torch.Tensor) -> None:
        w = to_work(chunk, self.buf)
        if w.numel() == 0:
            return
        if self.check and not all(math.isfinite(v) for v in torch.aminmax(w)):
            w = _drop_nonfinite(w, self.bad)
        n, bins = w.numel(), self.bins
        # (w - lo) * scale + delta in two in-place passes; the clamp keeps values outside
        # [lo, hi] (a stale ``stats``) at the ends instead of wrapping round the uint8 range.
        x = torch.sub(w, self.origin, out=self.scratch[:n]).mul_(self.scale).clamp_(0, bins)
        idx = self.index[:n].copy_(x)
        self.total += torch.bincount(idx, minlength=bins + 1)
        near = torch.nonzero(x.frac_() < 2 * self.delta).squeeze(1)
        if near.numel():
            self.total -= torch.bincount(idx[near].long(), minlength=bins + 1)
            exact = torch.bucketize(w[near], self.inner, right=True)
            self.total += torch.bincount(exact, minlength=bins + 1)


def _edges_above(edges: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """The least ``dtype`` value at or above each edge: for a value ``x`` of that dtype,
    ``x >= edge`` exactly when ``x >= result``, so comparisons agree with the float64 edges."""
    if dtype == torch.float64:
        return edges.copy()
    rounded = edges.astype(np.float32)
    low = rounded.astype(np.float64) < edges
    rounded[low] = np.nextafter(rounded[low], np.float32(np.inf))
    return rounded


def _count_integers(
    t: torch.Tensor,
    lo: int,
    hi: int,
    bins: int,
    chunk_elems: int,
    cancel: CancelCheck | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer-aligned bins: each bin holds ``width`` consecutive integers, edges at halves."""
    width = -(-(hi - lo + 1) // bins)  # ceil: at most ``bins`` bins
    nbins = -(-(hi - lo + 1) // width)

    def make(n: int) -> list[torch.Tensor]:
        return [torch.zeros(nbins, dtype=torch.int64)]

    def add(total: list[torch.Tensor], chunk: torch.Tensor) -> None:
        idx = chunk.to(torch.int64) - lo
        if width > 1:
            idx = idx.div_(width, rounding_mode="floor")
        total[0] += torch.bincount(idx.clamp_(0, nbins - 1), minlength=nbins)

    size = min(chunk_elems, max(t.numel(), 1))
    parts = drain(map_chunks(t, size, make, add, cancel))
    edges = lo - 0.5 + width * np.arange(nbins + 1, dtype=np.float64)
    return edges, torch.stack([p[0] for p in parts]).sum(0).numpy()


def _sample(t: torch.Tensor, target: int) -> torch.Tensor:
    """About ``target`` elements of ``t`` as a 1-D copy: evenly spaced blocks of consecutive
    elements, the first at the start and the last at the end. Deterministic, and it touches
    only the pages it reads, so it is fast on a memory-mapped tensor of any size."""
    if t.is_quantized:
        t = t.dequantize() if t.numel() <= 4 * target else _rows(t, 4 * target).dequantize()
    flat = dense_flat(t)
    if flat is None:
        return _rows(t, target).reshape(-1)
    n = flat.numel()
    if n <= target:
        return flat.clone()
    block = min(_SAMPLE_BLOCK, target)
    count = max(1, target // block)
    step = (n - block) // max(count - 1, 1)
    blocks = flat.unfold(0, block, max(step, 1))[:count]
    return blocks.reshape(-1)  # unfolded windows do not overlap here: one copy of the sample


def _rows(t: torch.Tensor, target: int) -> torch.Tensor:
    """Evenly spaced slices along the first dimension, about ``target`` elements (a copy)."""
    if t.dim() == 0 or t.numel() <= target:
        return t.reshape(-1)
    row = t.numel() // t.shape[0]
    if row <= target:
        picks = torch.linspace(0, t.shape[0] - 1, max(1, target // row)).round().long()
        return t.index_select(0, picks.unique()).reshape(-1)
    picks = torch.linspace(0, t.shape[0] - 1, min(t.shape[0], 16)).round().long().unique()
    return torch.cat([_rows(t[int(i)], target // len(picks)) for i in picks])


def _total_bad(parts: Iterable[list[int]]) -> tuple[int, int, int]:
    nan = posinf = neginf = 0
    for a, b, c in parts:
        nan, posinf, neginf = nan + a, posinf + b, neginf + c
    return nan, posinf, neginf


def _drop_nonfinite(w: torch.Tensor, bad: list[int]) -> torch.Tensor:
    """The finite values of ``w``, counting NaN, +Inf and -Inf into ``bad``."""
    bad[0] += int(torch.isnan(w).sum())
    bad[1] += int((w == math.inf).sum())
    bad[2] += int((w == -math.inf).sum())
    return w[torch.isfinite(w)]


def _work(t: torch.Tensor | Any) -> torch.dtype:
    if not isinstance(t, torch.Tensor):  # a LogicalTensor's chunks are float32
        return torch.float32
    return work_dtype(torch.float32 if t.is_quantized else t.dtype)
