"""Two tensors whose bytes lie in files (``spans``) compared range by range in the files
(``byte_ranges.same_range``, on the worker pool's threads), each byte read once, rather than
through the tensors' own maps (a page fault per 4 KB); ranges already checked once written
(``CheckedRange``) are not read again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, wait

import torch

from ckpt_gui.core.chunks import submit
from ckpt_gui.core.export.byte_ranges import CheckedRange, same_range
from ckpt_gui.core.export.spans import FileMaps, Files

_STEP = 8 << 20  # bytes compared by one worker's task
_AHEAD = 4  # steps in flight
MIN_BYTES = 1 << 20  # smaller tensors are compared in memory, where that is cheaper


def iter_compare_in_files(
    maps: FileMaps,
    files: Files,
    a: torch.Tensor,
    b: torch.Tensor,
    checked: Sequence[CheckedRange] = (),
) -> Generator[int, None, bool] | None:
    """None when ``a`` and ``b`` do not both lie whole in files; otherwise a generator that
    yields the bytes compared after each step and returns whether all of them are equal
    (``b`` in the result, ``a`` in the source: bytes ``checked`` already are not read)."""
    n = a.numel() * a.element_size()
    if a.dtype != b.dtype or a.shape != b.shape or n < MIN_BYTES:
        return None
    span_a, span_b = maps.tensor(a), maps.tensor(b)
    if span_a is None or span_b is None:
        return None
    fd_a, fd_b = files.open(span_a), files.open(span_b)
    if fd_a is None or fd_b is None:
        return None
    result, source = (span_b.dev, span_b.ino), (span_a.dev, span_a.ino)
    if any(c.covers(result, span_b.offset, source, span_a.offset, n) for c in checked):
        return _already(n)
    return _compare(fd_a, span_a.offset, fd_b, span_b.offset, n)


def _already(n: int) -> Generator[int, None, bool]:
    yield n
    return True


def _compare(fd_a: int, at_a: int, fd_b: int, at_b: int, n: int) -> Generator[int, None, bool]:
    """Steps compared on the worker pool's threads, a few ahead (reading releases the GIL)."""
    pending: deque[tuple[Future[bool], int]] = deque()
    done = 0
    try:
        while done < n or pending:
            while done < n and len(pending) < _AHEAD:
                k = min(_STEP, n - done)
                pending.append((submit(same_range, fd_a, at_a + done, fd_b, at_b + done, k), k))
                done += k
            same, k = pending.popleft()
            if not same.result():
                return False
            yield k
    finally:
        for future, _ in pending:
            future.cancel()
        wait([f for f, _ in pending])
    return True
