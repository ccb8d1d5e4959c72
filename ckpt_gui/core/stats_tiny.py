"""Statistics of tiny tensors, many at once: their values gathered per dtype into one array and
reduced segment by segment (``ckpt_gui.core.segments``), instead of a dozen torch calls and a
worker-pool check per tensor in the chunked path of ``ckpt_gui.core.stats``. A file of half a
million one-byte tensors is measured in seconds, not a minute. ``iter_stats`` hands batches of
consecutive tiny tensors here; the figures are the ones the chunked path gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ckpt_gui.core.chunks import TINY_ELEMS, CancelCheck, drain, plain_tiny, work_dtype
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.segments import segment_figures, segment_int_extremes
from ckpt_gui.core.stats import (
    _NATIVE_MINMAX,
    StatsEvent,
    StatsFailed,
    StatsResult,
    TensorStats,
    _stats_steps,
)
from ckpt_gui.core.tree import Node, TensorInfo, dtype_from_name, dtype_name

BATCH_ELEMS = 1 << 16  # a batch of tiny tensors holds at most this many elements
BATCH_TENSORS = 8192  # and this many tensors: a cancel or a progress report waits for no more
# The dtypes a batch takes: plain numbers whose chunks ``to_work`` converts (not packed float4,
# quantized or raw-bits dtypes, which keep their own handling in the chunked path).
_BATCHED_DTYPES = frozenset(
    dtype_name(d)
    for d in (
        getattr(torch, name, None)
        for name in (
            "float64 float32 float16 bfloat16 float8_e4m3fn float8_e5m2 float8_e4m3fnuz "
            "float8_e5m2fnuz float8_e8m0fnu int8 int16 int32 int64 uint8 uint16 uint32 uint64 "
            "bool complex32 complex64 complex128"
        ).split()
    )
    if d is not None
)


def is_tiny(info: TensorInfo | None) -> bool:
    return (
        info is not None
        and info.layout == "strided"
        and not info.no_data
        and info.quant is None
        and info.dtype in _BATCHED_DTYPES
        and info.numel <= TINY_ELEMS
    )


def tiny_batch(batch: list[Node], chunk_elems: int, cancel: CancelCheck | None) -> list[StatsEvent]:
    """The events of a batch of tiny tensors, in order. Their values are gathered per dtype
    into one array (straight from the file's bytes where the format allows, ``bytes_at``) and
    reduced segment by segment; a tensor that does not load as a plain CPU tensor of the size
    its description gave is measured on its own, as any other."""
    outcome: list[TensorStats | str | None] = [None] * len(batch)
    values: dict[torch.dtype, list[tuple[int, torch.Tensor]]] = {}
    spans: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    sources: dict[int, Any] = {}
    for index, node in enumerate(batch):
        info = node.tensor
        assert info is not None
        if info.bytes_at is not None:
            source, begin = info.bytes_at
            group = spans.get((id(source), info.dtype))
            if group is None:
                sources[id(source)] = source
                group = spans[(id(source), info.dtype)] = []
            group.append((index, begin, info.numel))
            continue
        _load_tiny(node, index, values, outcome, chunk_elems, cancel)
    for (source_id, dtype_text), entries in spans.items():
        dtype = dtype_from_name(dtype_text)
        flat = _from_bytes(sources[source_id], dtype, entries)
        if flat is None:  # misaligned, or the map is gone: each tensor as its loader reads it
            for index, _, _ in entries:
                _load_tiny(batch[index], index, values, outcome, chunk_elems, cancel)
        else:
            lengths = [n for _, _, n in entries]
            _measure_tiny(dtype, flat, lengths, [i for i, _, _ in entries], outcome)
    for dtype, parts in values.items():
        flat = parts[0][1] if len(parts) == 1 else torch.cat([t for _, t in parts])
        _measure_tiny(dtype, flat, [t.numel() for _, t in parts], [i for i, _ in parts], outcome)
    events: list[StatsEvent] = []
    for node, result in zip(batch, outcome):
        if isinstance(result, TensorStats):
            events.append(StatsResult(node.key, result))
        else:
            assert result is not None
            events.append(StatsFailed(node.key, result))
    return events


def _load_tiny(
    node: Node,
    index: int,
    values: dict[torch.dtype, list[tuple[int, torch.Tensor]]],
    outcome: list[TensorStats | str | None],
    chunk_elems: int,
    cancel: CancelCheck | None,
) -> None:
    """Load one tensor of a batch: its values join the batch, or, when it is not what its
    description promised (a plain CPU tensor of a batched dtype, tiny), it is measured alone."""
    try:
        t = node.load()
    except CheckpointError as exc:
        outcome[index] = str(exc)
        return
    if plain_tiny(t) and dtype_name(t.dtype) in _BATCHED_DTYPES:
        values.setdefault(t.dtype, []).append((index, t.reshape(-1)))
    else:
        outcome[index] = drain(_stats_steps(t, chunk_elems, cancel))


def _from_bytes(
    source: Any, dtype: torch.dtype, entries: list[tuple[int, int, int]]
) -> torch.Tensor | None:
    """The values of ``entries`` (index, byte offset, numel) end to end, read from one view of
    the source's bytes; None when an offset is not aligned to the dtype (the loader copies
    those) or the bytes are not all there."""
    size = dtype.itemsize
    begins = [begin for _, begin, _ in entries]
    lo = min(begins)
    hi = max(begin + n * size for _, begin, n in entries)
    if lo % size or any((begin - lo) % size for begin in begins):
        return None
    raw = source.byte_view(lo, hi)
    if raw.numel() != hi - lo:
        return None
    base = raw.view(dtype)
    lengths = np.array([n for _, _, n in entries], dtype=np.int64)
    offsets = (np.array(begins, dtype=np.int64) - lo) // size
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    total = int(lengths.sum())
    if np.array_equal(offsets, starts):  # back to back, in order: the view itself
        return base[:total]
    index = np.repeat(offsets - starts, lengths) + np.arange(total, dtype=np.int64)
    return base[torch.from_numpy(index)]


def _measure_tiny(
    dtype: torch.dtype,
    flat: torch.Tensor,
    lengths: list[int],
    indices: list[int],
    outcome: list[TensorStats | str | None],
) -> None:
    """Statistics of the tensors whose values lie end to end in ``flat`` (``lengths`` each),
    put at ``indices`` of ``outcome``: the figures ``_stats_steps`` gives, from the same
    working values (``to_work``: complex as magnitudes, small types as float32)."""
    wdtype = work_dtype(dtype)
    if flat.is_complex():
        w = torch.abs(flat.to(torch.complex64) if flat.dtype == torch.complex32 else flat)
    elif flat.dtype == wdtype:
        w = flat
    else:
        w = torch.empty(flat.numel(), dtype=wdtype).copy_(flat)
    figures = segment_figures(w.numpy(), np.array(lengths, dtype=np.int64))
    is_int = not (dtype.is_floating_point or dtype.is_complex)
    native = dtype in _NATIVE_MINMAX
    if native:  # exact integer extremes, even past 2**53
        int_lo, int_hi = segment_int_extremes(flat.numpy(), np.array(lengths, dtype=np.int64))
    name, is_complex = dtype_name(dtype), dtype.is_complex
    for k, index in enumerate(indices):
        n, numel = figures.n[k], lengths[k]
        lo: float | None = None
        hi: float | None = None
        mean: float | None = None
        std: float | None = None
        absmax: float | None = None
        if n:
            lo, hi = figures.lo[k], figures.hi[k]
            if is_int:
                lo, hi = (int_lo[k], int_hi[k]) if native else (int(lo), int(hi))
            mean = figures.mean[k]
            std = figures.std[k] if n > 1 else None
            l2: float | None = figures.l2[k]
            absmax = max(abs(lo), abs(hi))
        else:
            l2 = 0.0 if numel == 0 else None
        outcome[index] = TensorStats(
            dtype=name,
            numel=numel,
            min=lo,
            max=hi,
            mean=mean,
            std=std,
            l2=l2,
            absmax=absmax,
            zeros=figures.zeros[k],
            nan=figures.nan[k],
            posinf=figures.posinf[k],
            neginf=figures.neginf[k],
            complex_magnitude=is_complex,
        )
