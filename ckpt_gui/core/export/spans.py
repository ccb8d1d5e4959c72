"""Where a tensor's bytes lie in a file: the kernel's own record of this process's file mappings
(``/proc/self/maps``), so that bytes a tensor views unchanged in a memory-mapped source can be
copied file to file by the kernel and compared by reading the files, without a page fault per
4 KB of a map.

The answer comes from the kernel, never from the file being read: a span names the file by its
device and inode, and ``Files.open`` checks that the file it opens is that very file.
"""

from __future__ import annotations

import bisect
import mmap
import os
from dataclasses import dataclass

import torch

from ckpt_gui.core import libc

MAPS = "/proc/self/maps"


@dataclass(frozen=True)
class Span:
    """``nbytes`` bytes at ``offset`` in the file ``(dev, ino)``, found at ``path``."""

    path: str
    dev: int
    ino: int
    offset: int
    nbytes: int


@dataclass
class _Mapping:
    start: int
    end: int
    offset: int  # the file offset of ``start``
    dev: int
    ino: int
    path: str


class FileMaps:
    """A snapshot of this process's file mappings. Take it after the tensors were loaded."""

    def __init__(self) -> None:
        self._maps: list[_Mapping] = []
        try:
            with open(MAPS, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError:  # not Linux: every tensor takes the ordinary path
            return
        for line in lines:
            mapping = _parse(line)
            if mapping is None:
                continue
            last = self._maps[-1] if self._maps else None
            if (  # one mmap the kernel split in two (madvise, a guard page): one mapping
                last is not None
                and (last.dev, last.ino) == (mapping.dev, mapping.ino)
                and last.end == mapping.start
                and last.offset + (last.end - last.start) == mapping.offset
            ):
                last.end = mapping.end
            else:
                self._maps.append(mapping)
        self._starts = [m.start for m in self._maps]

    def find(self, address: int, nbytes: int) -> Span | None:
        """The file span of memory ``[address, address + nbytes)``, if one file mapping holds
        all of it."""
        if nbytes <= 0 or not self._maps:
            return None
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        m = self._maps[i]
        if not (m.start <= address and address + nbytes <= m.end):
            return None
        return Span(m.path, m.dev, m.ino, m.offset + address - m.start, nbytes)

    def tensor(self, t: torch.Tensor) -> Span | None:
        """The span of a dense, contiguous tensor's bytes, as they are in a file."""
        if t.layout != torch.strided or t.is_nested or t.is_quantized:
            return None
        if t.is_conj() or t.is_neg() or not t.is_contiguous() or t.device.type != "cpu":
            return None
        return self.find(t.data_ptr(), t.numel() * t.element_size())

    def storage(self, storage: torch.UntypedStorage) -> Span | None:
        if storage.device.type != "cpu":
            return None
        return self.find(storage.data_ptr(), storage.nbytes())


def advise_sequential(t: torch.Tensor) -> None:
    """Tell the kernel that ``t``'s pages will be read once, in order (``madvise``): reading
    a tensor through its memory map then faults in large runs and lets pages behind go. A
    no-op where the call is missing or the tensor is not in a map."""
    if libc.madvise is None or t.device.type != "cpu" or t.numel() == 0:
        return
    page = mmap.PAGESIZE
    start = t.untyped_storage().data_ptr() // page * page
    end = t.untyped_storage().data_ptr() + t.untyped_storage().nbytes()
    libc.madvise(start, end - start, libc.MADV_SEQUENTIAL)


def _parse(line: str) -> _Mapping | None:
    # 7f3a1c000000-7f3a1c800000 r--p 00001000 fd:01 1234567   /path/to/file with spaces
    fields = line.split(maxsplit=5)
    if len(fields) < 6 or not fields[5].startswith("/") or fields[4] == "0":
        return None
    try:
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        major, minor = (int(x, 16) for x in fields[3].split(":"))
        dev, offset = os.makedev(major, minor), int(fields[2], 16)
        return _Mapping(lo, hi, offset, dev, int(fields[4]), fields[5])
    except ValueError:
        return None


class Files:
    """Source files opened for reading by span, each checked to be the file the span names."""

    def __init__(self) -> None:
        self._fds: dict[tuple[int, int], int | None] = {}

    def open(self, span: Span) -> int | None:
        """A descriptor of the span's file, or None when the file at its path is another one
        now (replaced, deleted) or too short to hold the span."""
        key = (span.dev, span.ino)
        if key not in self._fds:
            self._fds[key] = _open_same(span)
        fd = self._fds[key]
        if fd is None or os.fstat(fd).st_size < span.offset + span.nbytes:
            return None
        return fd

    def find(self, maps: FileMaps, t: torch.Tensor) -> tuple[int, int] | None:
        """``(descriptor, offset)`` of where ``t``'s bytes lie unchanged in a file (``maps``
        says where; the file opened is checked to be that file), or None."""
        span = maps.tensor(t)
        fd = self.open(span) if span is not None else None
        return None if fd is None or span is None else (fd, span.offset)

    def close(self) -> None:
        for fd in self._fds.values():
            if fd is not None:
                os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Files:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_same(span: Span) -> int | None:
    try:
        fd = os.open(span.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (span.dev, span.ino):
        os.close(fd)
        return None
    return fd
