"""The copy a head start makes (``head_start``), without torch: the pieces placed in the
export's temporary file (``place``), then compared with the source (``check``) until the export
asks for the file; in a forked child (``CopyChild``) where the system forks. A child still
copying when the export asks is waited for, and what it has placed meanwhile is compared here,
as it comes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
from collections.abc import Callable, Container, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

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
# export asks for the file (with torch imported); a child still copying then is waited for, and
# what it places meanwhile is compared by the export's process as it comes: the verification
# need not read those bytes again. On two cores the copy and the import take both; the
# comparing goes in the time left (comparing them all first made the import slower by as much).
CHECK_AHEAD = True
_CHECK_STEP = 8 << 20  # bytes compared between two looks for the export's call


def place(
    fd: int,
    file: BinaryIO,
    header: bytes,
    pieces: list[Piece],
    placed: Callable[[Placed], object] | None = None,
) -> tuple[int, list[Placed]]:
    """Write ``header`` at the start of ``file`` and copy each piece of the source ``fd`` to its
    place (``placed`` is told of each once it is there); the descriptor written and the pieces
    placed."""
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
        if placed is not None:
            placed(copied[-1])
    sink.flush()
    return sink.fd, copied


def check(
    fd: int,
    result: int,
    placed: list[Placed],
    stop: Callable[[], bool],
    checked: Callable[[int, bool], object],
) -> None:
    """Compare the ``placed`` pieces with the source one after the other until ``stop()``
    (asked between steps of ``_CHECK_STEP`` bytes), telling ``checked`` of each (its index,
    and whether it was equal; ``_Report`` marks them)."""
    for i, piece in enumerate(placed):
        done, same = 0, True
        while same and done < piece.nbytes:
            if stop():
                return
            k = min(_CHECK_STEP, piece.nbytes - done)
            same = same_range(result, piece.data_at + done, fd, piece.offset + done, k)
            done += k
        checked(i, same)


def _same_piece(result: int, source: int, piece: Placed) -> bool:
    return same_range(result, piece.data_at, source, piece.offset, piece.nbytes)


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
    (``check``) until asked to stop (a byte on the ``ask`` pipe); it reports each piece placed
    and each compared through the ``report`` pipe as it goes, a JSON line each, and exits
    without running any of this process's exit handlers. ``source`` (this process's own
    descriptor of the source) and ``result`` (the file written) are what ``wait`` compares
    pieces with, while the child still copies."""

    def __init__(self, pid: int, report: int, ask: int, source: int, result: int) -> None:
        self.pid, self.report, self.ask = pid, report, ask
        self.source, self.result = source, result

    @classmethod
    def start(cls, fd: int, file: BinaryIO, header: bytes, pieces: list[Piece]) -> CopyChild:
        read, write = os.pipe()
        asked, ask = os.pipe()
        source = os.dup(fd)
        pid = os.fork()
        if pid == 0:  # the child: copy, compare, report, exit
            status = 1
            try:
                if hasattr(signal, "pthread_sigmask"):  # interrupts as usual (held in the parent)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
                for mine in (read, ask, source):
                    os.close(mine)
                say = _Lines(write)
                result, placed = place(fd, file, header, pieces, lambda p: say("p", *p.row()))
                if CHECK_AHEAD:
                    check(
                        fd, result, placed, lambda: _readable(asked), lambda i, eq: say("c", i, eq)
                    )
                say("end")
                say.flush()
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        os.close(asked)
        return cls(pid, read, ask, source, file.fileno())

    def wait(self, finish_checks: bool = False) -> list[Placed]:
        """What the child placed, once it is done (asked to stop comparing first, unless
        ``finish_checks``), the pieces found equal marked ``checked`` and those found different
        left out; nothing if it failed. Asked to stop, a child still copying goes on, and each
        piece it places meanwhile is compared here (on two threads) while it copies the next."""
        if not finish_checks:
            self._ask_to_stop()
        report = _Report()
        comparing: dict[int, Future[bool]] = {}
        ahead = CHECK_AHEAD and not finish_checks
        pool = ThreadPoolExecutor(2, "ckpt-head-start") if ahead else None
        try:
            pending = b""
            while chunk := os.read(self.report, 1 << 20):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    report.take(json.loads(line))
                if pool is not None and not report.ended:  # (ended: its own comparing is over)
                    for i in report.unchecked(exclude=comparing):
                        comparing[i] = pool.submit(
                            _same_piece, self.result, self.source, report.placed[i]
                        )
        except (ValueError, TypeError, IndexError):
            report.ended = False  # a line that is no report: nothing is taken from the child
        finally:
            os.close(self.report)
            self._close_ask()
            _, status = os.waitpid(self.pid, 0)
            found = _outcomes(comparing)
            if pool is not None:
                pool.shutdown()
            os.close(self.source)
        if status != 0 or not report.ended:
            return []
        report.same.update(found)
        return report.pieces()

    def stop(self) -> None:
        """End the child now (an export that failed or was interrupted before adopting)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(self.report)
        self._close_ask()
        os.waitpid(self.pid, 0)
        os.close(self.source)

    def _ask_to_stop(self) -> None:
        with contextlib.suppress(OSError):  # a child already gone has stopped anyway
            os.write(self.ask, b"x")

    def _close_ask(self) -> None:
        if self.ask >= 0:
            os.close(self.ask)
            self.ask = -1


class _Lines:
    """A child's report: JSON lines written to the pipe ``fd`` as far as it takes them without
    waiting, the rest kept until it does (a parent still importing torch reads nothing yet, and
    a pipe holds 64 KB: the reports of a few hundred pieces); ``flush`` writes the rest."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, bytearray()
        os.set_blocking(fd, False)

    def __call__(self, *message: object) -> None:
        self.pending += json.dumps(message).encode() + b"\n"
        with contextlib.suppress(BlockingIOError):
            while self.pending:
                del self.pending[: os.write(self.fd, self.pending)]

    def flush(self) -> None:
        os.set_blocking(self.fd, True)
        while self.pending:
            del self.pending[: os.write(self.fd, self.pending)]


def _outcomes(comparing: dict[int, Future[bool]]) -> dict[int, bool]:
    """Whether each piece compared was equal; one whose comparing failed counts as unchecked
    (the verification reads it)."""
    out = {}
    for i, future in comparing.items():
        with contextlib.suppress(Exception):
            out[i] = future.result()
    return out


class _Report:
    """What a ``CopyChild`` said: the pieces it placed, in order, and which it compared (equal
    or not); ``ended`` once it said all."""

    def __init__(self) -> None:
        self.placed: list[Placed] = []
        self.same: dict[int, bool] = {}
        self.ended = False

    def take(self, message: list[Any]) -> None:
        kind, *rest = message
        if kind == "p":
            self.placed.append(Placed.from_row(rest))
        elif kind == "c":
            self.same[int(rest[0])] = bool(rest[1])
        elif kind == "end":
            self.ended = True

    def unchecked(self, exclude: Container[int]) -> list[int]:
        return [i for i in range(len(self.placed)) if i not in self.same and i not in exclude]

    def pieces(self) -> list[Placed]:
        """The pieces placed: those compared equal ``checked``, those found different left out."""
        out = []
        for i, piece in enumerate(self.placed):
            same = self.same.get(i)
            if same is None:
                out.append(piece)
            elif same:
                out.append(dataclasses.replace(piece, checked=True))
        return out


def _readable(fd: int) -> bool:
    """Whether the pipe ``fd`` has something to read, or its writer is gone."""
    return bool(select.select([fd], [], [], 0)[0])
