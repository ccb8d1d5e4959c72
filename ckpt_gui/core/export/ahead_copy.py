"""The copy a head start makes (``head_start``), without torch: the pieces placed in the
export's temporary file (``place``), then compared with the source (``check``) until the export
asks for the file; in a forked child (``CopyChild``) where the system forks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ckpt_gui.core.export.byte_ranges import Placed, same_range
from ckpt_gui.core.export.sink import Sink
from ckpt_gui.core.export.torch_zip import ARCHIVE, file_identity, local_header


@dataclass(frozen=True)
class Piece:
    """Bytes the export will write at ``position``: ``nbytes`` from ``offset`` of the source,
    behind a zip record's local header when ``record`` names one."""

    position: int
    offset: int
    nbytes: int
    record: str | None = None
    crc: int = 0


# The child compares what it copied with the source, once it is done copying and until the
# export asks for the file (with torch imported): the verification then need not read those
# bytes again. On two cores the copy and the import take both; the comparing goes in the time
# left before torch is in (comparing them all first made the import slower by as much).
CHECK_AHEAD = True
_CHECK_STEP = 8 << 20  # bytes compared between two looks for the export's call


def place(fd: int, file: BinaryIO, header: bytes, pieces: list[Piece]) -> tuple[int, list[Placed]]:
    """Write ``header`` at the start of ``file`` and copy each piece of the source ``fd`` to its
    place; the descriptor written and the pieces placed."""
    sink = Sink(file)
    sink.write(header)
    identity = file_identity(fd)
    copied = []
    for piece in pieces:
        sink.skip(piece.position - sink.position)  # a tensor left to the export
        if piece.record is not None:
            record = f"{ARCHIVE}/{piece.record}".encode()
            sink.write(local_header(record, piece.nbytes, piece.position, piece.crc, piece.offset))
        data_at = sink.position
        sink.copy(fd, piece.offset, piece.nbytes)
        where = (piece.position, data_at, piece.record or "", identity)
        copied.append(Placed(*where, piece.offset, piece.nbytes, piece.crc))
    sink.flush()
    return sink.fd, copied


def check(fd: int, result: int, placed: list[Placed], stop: Callable[[], bool]) -> list[Placed]:
    """``placed``, the pieces compared equal to the source marked ``checked``, one after the
    other until ``stop()`` (asked between steps of ``_CHECK_STEP`` bytes); a piece found
    different is left out (the export writes it)."""
    out: list[Placed] = []
    for i, piece in enumerate(placed):
        done, same = 0, True
        while same and done < piece.nbytes:
            if stop():
                return out + placed[i:]
            k = min(_CHECK_STEP, piece.nbytes - done)
            same = same_range(result, piece.data_at + done, fd, piece.offset + done, k)
            done += k
        if same:
            out.append(dataclasses.replace(piece, checked=True))
    return out


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while the process forks: the ``KeyboardInterrupt`` they
    raise (``cli._interrupt_on_sigterm``) inside one of the fork's own hooks is swallowed there
    and leaves the lock that hook was to release taken (logging's: the thread importing torch
    then waited for it forever, seen). They are delivered once the child is known."""
    held = {signal.SIGINT, signal.SIGTERM}
    mask = getattr(signal, "pthread_sigmask", None)
    before = mask(signal.SIG_BLOCK, held) if mask is not None else None
    try:
        yield
    finally:
        if mask is not None and before is not None:
            mask(signal.SIG_SETMASK, before)


class CopyChild:
    """A forked process copying the pieces (``place``), then comparing them with the source
    (``check``) until asked to stop (a byte on the ``ask`` pipe); it reports what it placed
    through the ``report`` pipe as JSON and exits without running any of this process's exit
    handlers."""

    def __init__(self, pid: int, report: int, ask: int) -> None:
        self.pid, self.report, self.ask = pid, report, ask

    @classmethod
    def start(cls, fd: int, file: BinaryIO, header: bytes, pieces: list[Piece]) -> CopyChild:
        read, write = os.pipe()
        asked, ask = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: copy, compare, report, exit
            status = 1
            try:
                if hasattr(signal, "pthread_sigmask"):  # interrupts as usual (held in the parent)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
                os.close(read)
                os.close(ask)
                result, placed = place(fd, file, header, pieces)
                if CHECK_AHEAD:
                    placed = check(fd, result, placed, lambda: _readable(asked))
                data = json.dumps([dataclasses.astuple(p) for p in placed]).encode()
                view = memoryview(data)
                while view:
                    view = view[os.write(write, view) :]
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        os.close(asked)
        return cls(pid, read, ask)

    def wait(self, finish_checks: bool = False) -> list[Placed]:
        """What the child placed, once it is done (asked to stop comparing first, unless
        ``finish_checks``): nothing if it failed."""
        if not finish_checks:
            self._ask_to_stop()
        chunks = []
        try:
            while chunk := os.read(self.report, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self.report)
            self._close_ask()
            _, status = os.waitpid(self.pid, 0)
        if status != 0:
            return []
        try:
            rows = json.loads(b"".join(chunks))
            return [
                Placed(r[0], r[1], r[2], (r[3][0], r[3][1]), r[4], r[5], r[6], r[7]) for r in rows
            ]
        except (ValueError, TypeError):
            return []

    def stop(self) -> None:
        """End the child now (an export that failed or was interrupted before adopting)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(self.report)
        self._close_ask()
        os.waitpid(self.pid, 0)

    def _ask_to_stop(self) -> None:
        with contextlib.suppress(OSError):  # a child already gone has stopped anyway
            os.write(self.ask, b"x")

    def _close_ask(self) -> None:
        if self.ask >= 0:
            os.close(self.ask)
            self.ask = -1


def _readable(fd: int) -> bool:
    """Whether the pipe ``fd`` has something to read, or its writer is gone."""
    return bool(select.select([fd], [], [], 0)[0])
