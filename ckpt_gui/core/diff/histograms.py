"""Histograms for a compared pair: A and B on common bins, and the histogram of A − B.

Big tensors are sampled the same way on both sides (the same element positions), so the A − B
histogram is the histogram of real differences, not of two unrelated samples. ``entry_histograms``
is what the compare view shows for a row of the diff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ckpt_gui.core.diff.compare import DiffEntry
from ckpt_gui.core.diff.metrics import compare_dtype
from ckpt_gui.core.histogram import DEFAULT_BINS, Histogram, histogram
from ckpt_gui.core.tree import Node

DEFAULT_SAMPLE = 1 << 20
_BLOCK = 1024  # consecutive elements read together: few page faults on a memory-mapped file


@dataclass(frozen=True)
class PairHistograms:
    """``a`` and ``b`` share their edges; ``diff`` is of a − b (of |a − b| for complex)."""

    a: Histogram
    b: Histogram
    diff: Histogram


@dataclass(frozen=True)
class EntryHistograms:
    """What a diff entry's histograms show: each side's (``None`` for a side without a tensor)
    and, for two tensors of one shape, that of A − B on bins of its own (``None`` otherwise)."""

    a: Histogram | None
    b: Histogram | None
    diff: Histogram | None

    def sides(self) -> tuple[Histogram | None, Histogram | None, Histogram | None]:
        return self.a, self.b, self.diff


def bins_for(numel: int) -> int:
    """Fewer bins for small tensors, so 64 values do not scatter over 128 bins."""
    return int(min(128, max(16, 2 * math.sqrt(max(numel, 1)))))


def entry_histograms(entry: DiffEntry) -> EntryHistograms:
    """The histograms of one compared key (reads its tensors: the window runs it on a worker).
    A pair of the same shape gets common bins and a real A − B; otherwise each side alone."""
    na, nb = entry.node_a, entry.node_b
    rows = _sample_rows(na, nb)
    ta, tb = _side(na, rows), _side(nb, rows)
    if ta is None and tb is None:
        return EntryHistograms(None, None, None)
    bins = bins_for(max(t.numel() for t in (ta, tb) if t is not None))
    if ta is not None and tb is not None and ta.shape == tb.shape:
        pair = pair_histograms(ta, tb, bins=bins)
        return EntryHistograms(pair.a, pair.b, pair.diff)
    return EntryHistograms(
        a=histogram(ta, bins=bins) if ta is not None else None,
        b=histogram(tb, bins=bins) if tb is not None else None,
        diff=None,
    )


def _sample_rows(na: Node | None, nb: Node | None) -> list[int] | None:
    """For a large quantized weight's logical tensor (either side): about ``DEFAULT_SAMPLE``
    values' worth of evenly spaced rows, the same on both sides, so that its histogram and its
    difference never need the whole weight dequantized. None otherwise."""
    infos = [n.tensor for n in (na, nb) if n is not None and n.tensor is not None]
    lts = [i.quant for i in infos if i.quant is not None]
    if not lts or lts[0].numel() <= DEFAULT_SAMPLE or len({i.shape for i in infos}) > 1:
        return None
    lt = lts[0]
    picks = torch.linspace(0, lt.rows - 1, max(1, DEFAULT_SAMPLE // lt.cols)).round().long()
    return picks.unique().tolist()


def _side(node: Node | None, rows: list[int] | None) -> torch.Tensor | None:
    """A side's tensor, or its ``rows`` (of the tensor seen as (rows, last dimension)); a
    quantized weight's logical tensor dequantized."""
    if node is None or node.tensor is None:
        return None
    lt = node.tensor.quant
    if rows is None:
        return (
            node.load() if lt is None or lt.numel() <= DEFAULT_SAMPLE else lt.sample(DEFAULT_SAMPLE)
        )
    if lt is not None:
        return lt.rows_at(rows)
    t = node.load()
    return t.reshape(-1, t.shape[-1])[rows] if t.dim() else t


def paired_sample(
    a: torch.Tensor, b: torch.Tensor, target: int = DEFAULT_SAMPLE
) -> tuple[torch.Tensor, torch.Tensor]:
    """About ``target`` elements of two same-shaped tensors, from the same positions, as 1-D
    tensors (all of them when the tensors are that small)."""
    if a.shape != b.shape:
        raise ValueError("paired samples need tensors of the same shape")
    a = a.dequantize() if a.is_quantized else a
    b = b.dequantize() if b.is_quantized else b
    if a.numel() <= target:
        return a.reshape(-1), b.reshape(-1)
    if a.is_contiguous() and b.is_contiguous():
        return _blocks(a.reshape(-1), target), _blocks(b.reshape(-1), target)
    return _rows(a, target).reshape(-1), _rows(b, target).reshape(-1)


def _blocks(flat: torch.Tensor, target: int) -> torch.Tensor:
    n = flat.numel()
    block = min(_BLOCK, target)
    count = max(1, target // block)
    step = max((n - block) // max(count - 1, 1), 1)
    return flat.unfold(0, block, step)[:count].reshape(-1)


def _rows(t: torch.Tensor, target: int) -> torch.Tensor:
    """Evenly spaced slices along the first dimension (picked from the shape alone, so two
    tensors of one shape give the same positions)."""
    if t.dim() == 0 or t.numel() <= target:
        return t.reshape(-1)
    row = t.numel() // t.shape[0]
    if row <= target:
        picks = torch.linspace(0, t.shape[0] - 1, max(1, target // row)).round().long().unique()
        return t.index_select(0, picks).reshape(-1)
    picks = torch.linspace(0, t.shape[0] - 1, min(t.shape[0], 16)).round().long().unique()
    return torch.cat([_rows(t[int(i)], target // len(picks)) for i in picks])


def pair_histograms(
    a: torch.Tensor, b: torch.Tensor, bins: int = DEFAULT_BINS, sample: int = DEFAULT_SAMPLE
) -> PairHistograms:
    """Histograms of A and B over their common finite range, and of A − B."""
    numel = a.numel()
    sa, sb = paired_sample(a, b, sample)
    work = compare_dtype(sa.dtype, sb.dtype)
    wa, wb = sa.to(work), sb.to(work)
    diff = wa - wb
    if work.is_complex:
        wa, wb, diff = wa.abs(), wb.abs(), diff.abs()
    sampled = numel > sample
    lo, hi = _finite_range(torch.cat([wa, wb]))
    return PairHistograms(
        a=_count(wa, lo, hi, bins, numel, sampled),
        b=_count(wb, lo, hi, bins, numel, sampled),
        diff=_count(diff, *_finite_range(diff), bins, numel, sampled),
    )


def _finite_range(x: torch.Tensor) -> tuple[float, float]:
    finite = x[torch.isfinite(x)]
    if finite.numel() == 0:
        return math.nan, math.nan
    lo, hi = (float(v) for v in torch.aminmax(finite))
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def _count(
    x: torch.Tensor, lo: float, hi: float, bins: int, numel: int, sampled: bool
) -> Histogram:
    nan = int(torch.isnan(x).sum())
    posinf = int((x == math.inf).sum())
    neginf = int((x == -math.inf).sum())
    if math.isnan(lo):
        edges, counts = np.zeros(0), np.zeros(0, np.int64)
    else:
        finite = x[torch.isfinite(x)].double()
        counts = torch.histc(finite, bins=bins, min=lo, max=hi).long().numpy()
        edges = np.linspace(lo, hi, bins + 1)
    return Histogram(
        edges=edges,
        counts=counts,
        sampled=sampled,
        numel=numel,
        elements=x.numel(),
        nan=nan,
        posinf=posinf,
        neginf=neginf,
    )
