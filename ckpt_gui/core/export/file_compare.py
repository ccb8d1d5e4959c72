"""Reading files rather than maps: two tensors whose bytes lie in files (``spans``) are
compared by reading both into buffers, each byte once, with no page fault per 4 KB of a map;
and the CRC-32 of a range, for the zip archive of a ``.pt`` export, the same way.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, wait

import torch

from ckpt_gui.core.chunks import submit
from ckpt_gui.core.export.spans import FileMaps, Files

_STEP = 8 << 20
_AHEAD = 4  # steps in flight
MIN_BYTES = 1 << 20  # smaller tensors are compared in memory, where that is cheaper


def iter_compare_in_files(
    maps: FileMaps, files: Files, a: torch.Tensor, b: torch.Tensor
) -> Generator[int, None, bool] | None:
    """None when ``a`` and ``b`` do not both lie whole in files; otherwise a generator that
    yields the bytes compared after each step and returns whether all of them are equal."""
    n = a.numel() * a.element_size()
    if a.dtype != b.dtype or a.shape != b.shape or n < MIN_BYTES:
        return None
    found_a, found_b = files.find(maps, a), files.find(maps, b)
    if found_a is None or found_b is None:
        return None
    return _compare(*found_a, *found_b, n)


def _compare(fd_a: int, at_a: int, fd_b: int, at_b: int, n: int) -> Generator[int, None, bool]:
    """Steps compared on the worker pool's threads, a few ahead (reading releases the GIL)."""
    pending: deque[tuple[Future[bool], int]] = deque()
    done = 0
    try:
        while done < n or pending:
            while done < n and len(pending) < _AHEAD:
                k = min(_STEP, n - done)
                pending.append((submit(_same, fd_a, at_a + done, fd_b, at_b + done, k), k))
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


_buffers = threading.local()


def _buffer(which: str) -> bytearray:
    """This thread's buffer ``which`` (a new one for every read would fault in every page)."""
    buffer = getattr(_buffers, which, None)
    if buffer is None:
        buffer = bytearray(_STEP)
        setattr(_buffers, which, buffer)
    return buffer


def _same(fd_a: int, at_a: int, fd_b: int, at_b: int, k: int) -> bool:
    """Whether ``k`` (at most ``_STEP``) bytes at ``at_a`` of ``fd_a`` equal those at ``at_b``
    of ``fd_b``."""
    buf_a, buf_b = _buffer("a"), _buffer("b")
    a, b = memoryview(buf_a)[:k], memoryview(buf_b)[:k]
    if os.preadv(fd_a, [a], at_a) != k or os.preadv(fd_b, [b], at_b) != k:
        return False  # a file became shorter
    if k == _STEP:
        return buf_a == buf_b  # memcmp (comparing memoryviews goes byte by byte)
    return a.tobytes() == b.tobytes()


def crc_of_range(fd: int, offset: int, nbytes: int) -> int:
    """CRC-32 of ``nbytes`` of the file ``fd`` from ``offset`` (zlib releases the GIL)."""
    buf = memoryview(_buffer("a"))
    crc, end = 0, offset + nbytes
    while offset < end:
        n = os.preadv(fd, [buf[: min(_STEP, end - offset)]], offset)
        if n == 0:
            return -1  # shorter than it should be: matches no checksum
        crc = zlib.crc32(buf[:n], crc)
        offset += n
    return crc
