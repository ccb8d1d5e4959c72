"""A head start for an export from the command line: the tensor bytes a plain export of a
``torch.save`` file will write, copied into its temporary file while torch is still loading.

Every command pays ``import torch`` first (1.5-2 s on a small machine), and an export of a
large file is mostly the kernel copying bytes (``sink.copy_range``), which needs no torch. So
before the export proper, this module reads the source's zip directory and its pickle without
torch (``stub_pickle``), guesses what the export will write (the storages of the state_dict a
parameters-only export keeps, or of everything for a CPU copy, in the order torch's pickler
meets them, as ``torch_zip`` records; for safetensors the header and each tensor's bytes) and
a forked child copies it into the temporary file that the export then adopts
(``iter_export(head_start=)``), comparing each piece with the source as it goes
(``ahead_copy``). The export plans and pickles as it always does; its writer passes over each
piece that lies at its place already (the same source bytes at the same position:
``byte_ranges.Placed``) and writes everything else, over a wrong guess too; the verification
re-opens the result like any export's and compares every tensor with the source, reading only
what it has not seen compared since it was written (``byte_ranges.CheckedRange``). A guess can
only cost time, never change what is written.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ckpt_gui.core.export.ahead_copy import CopyChild, Piece, interrupts_held, place
from ckpt_gui.core.export.atomic import AtomicFile, check_destination
from ckpt_gui.core.export.byte_ranges import Placed
from ckpt_gui.core.export.layout import SAFETENSORS_DTYPES, safetensors_header
from ckpt_gui.core.export.options import ExportError, ExportOptions
from ckpt_gui.core.export.stub_pickle import (
    Tensor,
    Unreadable,
    is_state_dict,
    kept_object,
    read_pickle,
    storages_in_order,
)
from ckpt_gui.core.export.torch_zip import ARCHIVE, local_header, stored_records
from ckpt_gui.core.remote.location import RemotePath
from ckpt_gui.core.tree import itemsize

# Sources smaller than this are exported before torch would have finished importing anyway.
MIN_BYTES = 64 << 20
MAX_PICKLE = 16 << 20  # a state_dict's pickle is ~100 bytes a tensor


@dataclass
class HeadStart:
    """What a head start will copy (``pieces``, after ``header``) from ``source`` into a
    temporary file for ``destination``. Entering the ``with`` block creates the file and starts
    the copy; ``iter_export`` adopts the file (``placed``: the pieces copied, once the copy is
    over); leaving the block stops the copy and removes the file if nobody adopted it."""

    destination: Path | None = None
    source: Path | None = None
    fingerprint: tuple[int, ...] | None = None  # of the source, before it was read
    header: bytes = b""
    pieces: list[Piece] = field(default_factory=list)
    target: AtomicFile | None = None
    placed: list[Placed] = field(default_factory=list)
    copying: CopyChild | None = None
    started: bool = False

    def __enter__(self) -> HeadStart:
        if self.pieces and self.source and self.destination and not self.started:
            self.started = True
            try:
                self._start(self.source, self.destination)
            except OSError:
                self.__exit__(None, None, None)  # no head start: the export does it all
            except BaseException:  # an interrupt too: the temporary file goes
                self.__exit__(None, None, None)
                raise
        return self

    def _start(self, source: Path, destination: Path) -> None:
        """The copy started: by a child process where the system forks (the copy then never
        waits for this process's GIL, which the thread importing torch holds most of the
        time: with a thread, the copy took 2.4 s where it takes 0.9 s alone), else here."""
        fd = _open_regular(source, 0)
        if fd is None:
            return
        try:
            if fingerprint(fd) != self.fingerprint:
                return  # replaced or changed since it was read
            self.target = AtomicFile(destination)
            self.target.__enter__()
            assert self.target.file is not None
            if hasattr(os, "fork"):
                with interrupts_held():
                    self.copying = CopyChild.start(fd, self.target.file, self.header, self.pieces)
            else:
                self.placed = place(fd, self.target.file, self.header, self.pieces)[1]
        finally:
            os.close(fd)  # the child has its own

    def wait(self, finish_checks: bool = False) -> list[Placed]:
        """The pieces placed, once the copy is over; the child stops comparing them with the
        source now (those it compared are ``checked``), or, with ``finish_checks``, once it
        has compared them all."""
        if self.copying is not None:
            self.placed, self.copying = self.copying.wait(finish_checks), None
        return self.placed

    def adopt(self, destination: Path, fingerprint: tuple[int, ...] | None) -> AtomicFile | None:
        """The temporary file, its copy over, rewound for the writer, for an export to
        ``destination`` of the source this was made from (``fingerprint``: the source as the
        export opened it); ``None`` when it was made for another, or the source changed since:
        it is removed."""
        self.wait()
        target, self.target = self.target, None
        if target is None:
            return None
        if (
            self.destination is None
            or self.destination.resolve() != destination.resolve()
            or fingerprint is None
            or fingerprint != self.fingerprint
            or target.file is None
        ):
            target.__exit__(None, None, None)
            return None
        target.file.seek(0)
        return target

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.copying is not None:
            self.copying.stop()
            self.copying = None
        if self.target is not None:
            self.target.__exit__(kind, exc, tb)
            self.target = None


def fingerprint(file: str | os.PathLike[str] | int) -> tuple[int, ...] | None:
    """What changes when a file (a path, or an open descriptor) is written to or replaced:
    its identity, size and times."""
    try:
        st = os.stat(file)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def head_start(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    options: ExportOptions,
    *,
    overwrite: bool = False,
    min_bytes: int | None = None,
) -> HeadStart:
    """What an export of ``source`` to ``destination`` with ``options`` will write that can be
    copied into its temporary file without torch (the copy starts when the returned
    ``HeadStart`` is entered). An empty ``HeadStart`` (nothing to copy) where the export
    is of another kind (sharded, cast, filtered, renamed), the source is small (under
    ``min_bytes``, ``MIN_BYTES`` unless given) or not a torch zip file whose pickle
    ``stub_pickle`` reads, or anything fails: the export then does all of it, and reports what
    is wrong."""
    if (
        isinstance(source, RemotePath)
        or options.format not in ("pt", "safetensors")
        or options.shard_size is not None
        or options.dtype is not None
        or options.include
        or options.exclude
        or options.strip_prefix
        or options.add_prefix
        or options.mode not in ("params", "all")
    ):
        return HeadStart()
    src, dst = Path(source), Path(destination)
    try:
        check_destination(src, dst, False, [], overwrite=overwrite)
        fd = _open_regular(src, MIN_BYTES if min_bytes is None else min_bytes)
        if fd is None:
            return HeadStart()
        try:
            before = fingerprint(fd)
            kept, records = _read(fd, options)
        finally:
            os.close(fd)
        if options.format == "pt":
            header, pieces = b"", _pt_pieces(kept, records)
        else:
            header, pieces = _safetensors_pieces(kept, records)
        return HeadStart(dst, src, before, header, pieces)
    except (Unreadable, ExportError, OSError, ValueError):
        return HeadStart()


def _open_regular(path: Path, smallest: int) -> int | None:
    """A descriptor of ``path`` when it is a regular file of at least ``smallest`` bytes
    (opened without blocking: a FIFO would wait for a writer), else None."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_size >= smallest:
        return fd
    os.close(fd)
    return None


_Records = dict[str, tuple[int, int, int]]  # data/<key> -> (data offset, size, CRC-32)


def _read(fd: int, options: ExportOptions) -> tuple[Any, _Records]:
    """What the export keeps of the source (``stub_pickle.kept_object``) and its storage
    records by key."""
    records = stored_records(fd)
    pickles = [name for name in records if name.count("/") == 1 and name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise Unreadable("not one data.pkl")
    prefix = pickles[0][: -len("data.pkl")]
    offset, size, _ = records[pickles[0]]
    if size > MAX_PICKLE:
        raise Unreadable("a large pickle")
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise Unreadable("a short pickle")
    storages = {
        name[len(prefix) + len("data/") :]: record
        for name, record in records.items()
        if name.startswith(prefix + "data/")
    }
    return kept_object(read_pickle(data), options), storages


def _pt_pieces(kept: Any, records: _Records) -> list[Piece]:
    """The storage records ``torch_zip`` will write first, each behind its local header, as
    long as the guess holds."""
    pieces, position = [], 0
    for i, storage in enumerate(storages_in_order(kept)):
        record = records.get(storage.key)
        if record is None or record[1] != storage.nbytes:
            break
        offset, size, crc = record
        name = f"data/{i}"
        header = local_header(f"{ARCHIVE}/{name}".encode(), size, position, 0, offset)
        pieces.append(Piece(position, offset, size, name, crc))
        position += len(header) + size
    return pieces


def _safetensors_pieces(kept: Any, records: _Records) -> tuple[bytes, list[Piece]]:
    """The header a flat state_dict's safetensors file starts with, and the bytes of each of
    its tensors that lie in one run of the source (the others are left to the export)."""
    if not is_state_dict(kept) or not all(isinstance(k, str) for k in kept):
        raise Unreadable("not a flat state_dict")
    tensors: list[tuple[str, Tensor]] = list(kept.items())
    if any(t.storage.dtype not in SAFETENSORS_DTYPES for _, t in tensors):
        raise Unreadable("a dtype safetensors does not hold")
    header = safetensors_header([(k, t.storage.dtype, t.size) for k, t in tensors])
    pieces, position = [], len(header)
    for _, t in tensors:
        nbytes = t.nbytes()
        record = records.get(t.storage.key)
        if record is not None and record[1] == t.storage.nbytes and t.contiguous() and nbytes:
            offset = record[0] + t.offset * itemsize(t.storage.dtype)
            pieces.append(Piece(position, offset, nbytes))
        position += nbytes
    return header, pieces
