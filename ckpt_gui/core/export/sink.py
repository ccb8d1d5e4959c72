"""The file an export writes, by its descriptor: small writes gathered into one system call,
large ones written straight from the caller's buffer, and bytes that lie unchanged in a source
file copied file to file by the kernel (``copy_file_range``; ``sendfile`` or a read-and-write
loop where that is not available), so they never pass through this process's memory.

Every ``_KICK`` bytes written, the kernel is asked to start writing them to the disk
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``, Linux): the fsync that ends an export then finds
most of the file on disk already, instead of starting on a gigabyte once the last byte is
written (measured: the fsync of a 1 GB export, 0.52 s, was the last half second of it). The
request waits when the disk's queue is full, so it is made on a thread of its own, with a
duplicate of the descriptor that the thread closes: the writer never waits for the disk. Asked
every 16 MB, the disk here kept up with a 2.3 GB export (its fsync found nothing left to write,
in 8 of 8 runs); every 32 MB it was 0.3-0.4 s behind at the end, every 128 MB 1.0-1.4 s.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from ckpt_gui.core import libc
from ckpt_gui.core.export.options import ExportError

_GATHER = 1 << 20  # writes smaller than this are gathered
_COPY_STEP = 1 << 30  # what one copy_file_range call is asked for (the kernel may do less)
_BUFFER = 16 << 20  # the read-and-write fallback's buffer
_KICK = 16 << 20  # bytes written between two requests to start writing them to the disk
# What copy_file_range raises where the kernel or file system cannot do it: try the next way.
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


class Sink:
    """Writes to ``file`` from its current position. The file object must not be written
    through while a sink is in use (the sink flushes it first and writes by its descriptor)."""

    def __init__(self, file: BinaryIO) -> None:
        file.flush()
        self.fd = file.fileno()
        self.position = os.lseek(self.fd, 0, os.SEEK_CUR)
        self._gathered = bytearray()
        self._kicked = self.position  # written out up to here (asked to be)

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        if view.nbytes < _GATHER:
            self._gathered += view
            if len(self._gathered) >= _GATHER:
                self.flush()
        else:
            self.flush()
            _write_all(self.fd, view)
        self.position += view.nbytes
        self._kick()

    def copy(self, source_fd: int, offset: int, nbytes: int) -> None:
        """Append ``nbytes`` bytes of the file ``source_fd`` from ``offset``."""
        self.flush()
        copy_range(source_fd, offset, self.fd, nbytes)
        self.position += nbytes
        self._kick()

    def skip(self, nbytes: int) -> None:
        """Move past ``nbytes`` bytes the file already holds (``head_start`` copied them)."""
        self.flush()
        os.lseek(self.fd, nbytes, os.SEEK_CUR)
        self.position += nbytes
        self._kicked = max(self._kicked, self.position)

    def truncate(self) -> None:
        """End the file here (bytes past the position, left by an earlier writer, go)."""
        self.flush()
        os.ftruncate(self.fd, self.position)

    def write_at(self, data: bytes, position: int) -> None:
        """Overwrite bytes already written (a header whose checksum is known only now)."""
        self.flush()
        if os.pwrite(self.fd, data, position) != len(data):
            raise OSError(errno.EIO, "short write")

    def flush(self) -> None:
        if self._gathered:
            _write_all(self.fd, memoryview(self._gathered))
            self._gathered = bytearray()

    def _kick(self) -> None:
        """Ask the kernel to start writing what was written since the last time, once that is
        ``_KICK`` bytes (what is still gathered in memory is not in the file yet)."""
        written = self.position - len(self._gathered)
        if written - self._kicked >= _KICK:
            _writeback().put(self.fd, self._kicked, written - self._kicked)
            self._kicked = written


def _write_all(fd: int, view: memoryview) -> None:
    while view.nbytes:
        n = os.write(fd, view)
        view = view[n:]


def copy_range(source_fd: int, offset: int, dest_fd: int, nbytes: int) -> None:
    """Copy ``nbytes`` of ``source_fd`` from ``offset`` to ``dest_fd`` at its position, the
    fastest way this system and these files allow."""
    end = offset + nbytes
    ways = _ways()
    for way in ways:
        try:
            while offset < end:
                n = way(source_fd, dest_fd, offset, end - offset)
                if n == 0:
                    raise _shorter()
                offset += n
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED or way is ways[-1]:
                raise


def _ways() -> list[Callable[[int, int, int, int], int]]:
    """Each ``(source, dest, offset, at most) -> bytes copied``, kernel copies first."""
    ways: list[Callable[[int, int, int, int], int]] = []
    if hasattr(os, "copy_file_range"):
        ways.append(lambda s, d, at, n: os.copy_file_range(s, d, min(n, _COPY_STEP), at))
    if hasattr(os, "sendfile"):
        ways.append(lambda s, d, at, n: os.sendfile(d, s, at, min(n, _COPY_STEP)))
    ways.append(_read_and_write)
    return ways


def _read_and_write(source_fd: int, dest_fd: int, offset: int, most: int) -> int:
    data = os.pread(source_fd, min(most, _BUFFER), offset)
    _write_all(dest_fd, memoryview(data))
    return len(data)


def _shorter() -> ExportError:
    return ExportError("the source file became shorter while it was being exported")


class _Writeback:
    """The thread that asks the kernel to start writing ranges of files to the disk (a hint:
    the export's fsync still makes them durable). Each request holds a duplicate of the file's
    descriptor, closed once asked, so a file closed meanwhile is never mistaken for another."""

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="export-writeback", daemon=True).start()

    def put(self, fd: int, offset: int, nbytes: int) -> None:
        if libc.sync_file_range is None:
            return  # not Linux: the fsync does it all
        try:
            self.requests.put((os.dup(fd), offset, nbytes))
        except OSError:
            pass  # out of descriptors: it was only a hint

    def _run(self) -> None:
        while True:
            fd, offset, nbytes = self.requests.get()
            try:
                libc.sync_file_range(fd, offset, nbytes, libc.SYNC_FILE_RANGE_WRITE)
            finally:
                os.close(fd)


_writeback_lock = threading.Lock()
_writeback_thread: tuple[_Writeback, int] | None = None


def _writeback() -> _Writeback:
    """The process's writeback thread (a forked child makes its own)."""
    global _writeback_thread
    with _writeback_lock:
        if _writeback_thread is None or _writeback_thread[1] != os.getpid():
            _writeback_thread = (_Writeback(), os.getpid())
        return _writeback_thread[0]
