"""Reading every copy of one tensor at the same chunk positions: aligned 1-D chunks by
position, views of the memory-mapped files wherever the layouts allow, and a kernel read-ahead
so that a cold page cache does not stall the arithmetic at every page."""

from __future__ import annotations

import math
import mmap
import threading
from collections.abc import Sequence
from typing import Any

import torch

from ckpt_gui.core import libc
from ckpt_gui.core.chunks import compact


def prepared(t: torch.Tensor) -> torch.Tensor:
    """``t`` as the pass reads it: quantized tensors dequantized (the only whole copy made, of
    a rare kind of tensor); views that overlap their storage beyond reason refused."""
    if t.device.type != "cpu":
        raise ValueError("trajectories need CPU tensors")
    if t.is_quantized:
        return t.dequantize()
    compact(t)  # raises CorruptError for a view of a few bytes posing as a huge tensor
    return t


class AlignedChunks:
    """The aligned chunks of every copy (``chunks.paired_chunks`` for any number of tensors) at
    each chunk position: element j of every chunk is the same index in each copy. Slices of
    flat views where every layout allows one (all contiguous, or one permuted layout), else
    slices along the leading dimensions (as ``chunks.row_pieces`` cuts), reshaped: chunk-sized
    copies, never a copy of a whole tensor."""

    def __init__(self, tensors: Sequence[torch.Tensor], chunk_elems: int) -> None:
        self.chunk_elems = chunk_elems
        self.flats = _aligned_flats(tensors)
        self.tensors = tensors
        self.numel = numel = tensors[0].numel() if tensors else 0
        if self.flats is not None:
            self.index: list[Any] = []
            self.count = -(-numel // chunk_elems)
        else:
            self.index = _row_index(tuple(tensors[0].shape), chunk_elems)
            self.count = len(self.index)

    def chunks(self, pos: int) -> list[torch.Tensor]:
        if self.flats is not None:
            start = pos * self.chunk_elems
            return [f[start : start + self.chunk_elems] for f in self.flats]
        return [t[self.index[pos]].reshape(-1) for t in self.tensors]


def _aligned_flats(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor] | None:
    if all(t.is_contiguous() for t in tensors):
        return [t.reshape(-1) for t in tensors]
    strides = tensors[0].stride()
    if all(t.stride() == strides for t in tensors):  # one permuted layout (a transposed weight)
        order = sorted(range(tensors[0].dim()), key=lambda d: strides[d], reverse=True)
        permuted = [t.permute(order) for t in tensors]
        if all(p.is_contiguous() for p in permuted):
            return [p.reshape(-1) for p in permuted]
    return None


def _row_index(shape: tuple[int, ...], chunk_elems: int) -> list[Any]:
    """Indexes into a tensor of ``shape`` whose pieces hold at most ``chunk_elems`` elements
    and cover it once, in order (``chunks.row_pieces``'s cut)."""
    if not shape:
        return [()]
    if math.prod(shape) == 0:
        return []
    row = math.prod(shape[1:])
    if row <= chunk_elems:
        step = chunk_elems // row
        return [(slice(i, i + step),) for i in range(0, shape[0], step)]
    inner = _row_index(shape[1:], chunk_elems)
    return [(i, *rest) for i in range(shape[0]) for rest in inner]


class Readahead:
    """Asks the kernel to start reading what the next positions need from each memory-mapped
    copy (``madvise(MADV_WILLNEED)``: asynchronous, it returns at once), so that on a cold page
    cache the disk works while the arithmetic runs instead of stalling it at every page. Only
    for copies read through flat views; a no-op where ``madvise`` is not at hand."""

    AHEAD = 16 << 20  # bytes of each copy asked for ahead of the position being read
    BLOCK = 4 << 20  # asked for this much at a time

    def __init__(self, reader: AlignedChunks) -> None:
        self.spans: list[tuple[int, int]] = []
        self.step = 0
        if reader.flats is not None and libc.madvise is not None:
            self.spans = [(f.data_ptr(), f.numel() * f.element_size()) for f in reader.flats]
            self.step = reader.chunk_elems * reader.flats[0].element_size()
        self.end = max((n for _, n in self.spans), default=0)
        self.frontier = 0
        self.lock = threading.Lock()

    def advance(self, pos: int) -> None:
        """Position ``pos`` is about to be read (by any of the pass's threads)."""
        if not self.spans or libc.madvise is None:
            return
        want = pos * self.step + self.AHEAD
        with self.lock:
            while self.frontier < want and self.frontier < self.end:
                for start, nbytes in self.spans:
                    if self.frontier < nbytes:
                        begin = start + self.frontier
                        aligned = begin - begin % _PAGE
                        length = min(self.BLOCK, nbytes - self.frontier) + (begin - aligned)
                        libc.madvise(aligned, length, libc.MADV_WILLNEED)
                self.frontier += self.BLOCK


_PAGE = mmap.PAGESIZE
