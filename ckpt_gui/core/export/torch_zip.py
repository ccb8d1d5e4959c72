"""The zip archive of a ``torch.save`` file, written here so that a storage whose bytes lie
unchanged in the source file is copied by the kernel (``Sink.copy``), its CRC-32 taken from the
source archive (a whole record copied) or computed from the source file on another thread.

The records are those torch's own pickler produced (``data.pkl``, ``.format_version``,
``.storage_alignment``, ``byteorder``, one ``data/<key>`` per storage), then ``version`` and
``.data/serialization_id`` as torch's writer adds them, all under ``archive/``, stored
uncompressed with their data at 64-byte aligned offsets (the alignment torch pads to with an
``FB`` extra field, which memory-mapped loading relies on). Zip64 fields are written where a
size, an offset or the number of records needs them.

Records that ``head_start`` already copied into the file (``byte_ranges.Placed``: the same
name, source bytes and position) are passed over instead of written again. Nothing here imports
torch, so that the head start can write records while torch is still being imported.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ckpt_gui.core.export.byte_ranges import Ledger, Placed, crc_of_range
from ckpt_gui.core.export.options import ExportError
from ckpt_gui.core.export.sink import Sink

ARCHIVE = "archive"
ALIGN = 64
# Records of at least this many bytes that lie unchanged in a file are copied by the kernel;
# smaller ones are gathered from memory into one write.
MIN_COPY = 64 << 10
# A record copied from a file starts at the same place within a page as its bytes in that file:
# the kernel then copies whole pages (2.3 GB in 0.63-0.80 s here, against 0.81-1.03 s shifted).
PAGE = 4096
VERSION = b"3\n"  # the file format version torch.save writes
_LIMIT = 0xFFFFFFFF  # the 32-bit fields' "see the zip64 field" value
# Sizes and offsets from this on, and this many records, take zip64 fields (the format's limits;
# a test lowers it to write every field the zip64 way).
ZIP64_FROM = _LIMIT
_DOS_DATE = (1 << 5) | 1  # 1980-01-01 (torch writes 0, which no calendar has)


@dataclass
class _Record:
    name: bytes
    offset: int  # of its local header
    size: int
    crc: int = 0


class TorchZip:
    """Writes records to ``sink`` one at a time; ``finish()`` writes the central directory.
    ``ledger``: records already in the file, each passed over where it lies at its place."""

    def __init__(self, sink: Sink, ledger: Ledger | None = None) -> None:
        self.sink = sink
        self.records: list[_Record] = []
        self._known: dict[int, dict[tuple[int, int], int]] = {}  # stored_checksums by source
        self.ledger = ledger or Ledger([])

    def write(self, name: str, data: Any) -> None:
        """A record from memory (bytes, a str, or anything with the buffer protocol)."""
        for _ in self.write_steps(name, data.encode() if isinstance(data, str) else data, 1 << 62):
            pass

    def write_steps(self, name: str, data: Any, step: int) -> Iterator[int]:
        """A record from memory; yields the bytes written after each ``step``."""
        view = memoryview(data).cast("B")
        record = self._header(name, view.nbytes)
        for i in range(0, view.nbytes, step):
            piece = view[i : i + step]
            record.crc = zlib.crc32(piece, record.crc)
            self.sink.write(piece)
            yield piece.nbytes
        self._patch_crc(record)

    def write_pieces(self, name: str, nbytes: int, pieces: Iterator[Any]) -> Iterator[int]:
        """A record of ``nbytes`` from ``pieces`` (buffers, in order) as they come; yields the
        bytes of each. Pieces that do not add up to ``nbytes`` raise ``ExportError``."""
        record = self._header(name, nbytes)
        done = 0
        for data in pieces:
            piece = memoryview(data).cast("B")
            record.crc = zlib.crc32(piece, record.crc)
            self.sink.write(piece)
            done += piece.nbytes
            yield piece.nbytes
        if done != nbytes:
            raise ExportError(f"{name}: {done:,} bytes written where {nbytes:,} were planned")
        self._patch_crc(record)

    def copy(self, name: str, fd: int, offset: int, nbytes: int, step: int) -> Iterator[int]:
        """A record copied from the file ``fd``; yields the bytes copied after each ``step``.
        Its CRC-32 is the one the source archive gives for exactly these bytes, if they are a
        whole record of it, else computed on a worker while the kernel copies."""
        placed = self.ledger.find(self.sink.position, file_identity(fd), offset, nbytes, name)
        if placed is not None:
            self._pass(placed)
            yield nbytes
            return
        record = self._header(name, nbytes, offset)
        if fd not in self._known:
            self._known[fd] = stored_checksums(fd)
        known = self._known[fd].get((offset, nbytes))
        crc = _crc_of_range(fd, offset, nbytes) if known is None else _done(known)
        try:
            done = 0
            while done < nbytes:
                n = min(step, nbytes - done)
                self.sink.copy(fd, offset + done, n)
                done += n
                yield n
        finally:
            record.crc = crc.result()  # never leave the thread reading after a cancel
        self._patch_crc(record)

    def finish(self) -> None:
        self.write("version", VERSION)
        self.write(".data/serialization_id", f"{secrets.randbits(128):040d}")
        start = self.sink.position
        for r in self.records:
            self.sink.write(_central(r))
        _end(self.sink, len(self.records), start, self.sink.position - start)
        self.sink.flush()
        self.sink.truncate()  # placed records past the end (a plan that kept fewer) go

    def _header(self, name: str, size: int, copied_from: int | None = None) -> _Record:
        record = _Record(f"{ARCHIVE}/{name}".encode(), self.sink.position, size)
        self.sink.write(local_header(record.name, size, record.offset, 0, copied_from))
        self.records.append(record)
        return record

    def _pass(self, placed: Placed) -> None:
        """Take a placed record as written: the sink moves past its header and bytes."""
        record = _Record(f"{ARCHIVE}/{placed.name}".encode(), placed.position, placed.nbytes)
        header = local_header(record.name, record.size, placed.position, 0, placed.offset)
        if placed.data_at != placed.position + len(header):
            raise ExportError(f"{placed.name}: placed with another header")  # never: a bug
        record.crc = placed.crc
        self.records.append(record)
        self.sink.skip(placed.data_at + placed.nbytes - self.sink.position)
        self.ledger.passed.append(placed)

    def _patch_crc(self, record: _Record) -> None:
        self.sink.write_at(struct.pack("<I", record.crc), record.offset + 14)


def local_header(
    name: bytes, size: int, offset: int, crc: int = 0, copied_from: int | None = None
) -> bytes:
    """The local header of a stored record of ``size`` bytes at ``offset``, padded so that its
    data starts on an ``ALIGN`` boundary, and, for bytes the kernel copies (``MIN_COPY`` or
    more) from ``copied_from`` in a file (itself on such a boundary), at the same place within
    a ``PAGE``; ``crc`` 0 until the CRC-32 is patched in."""
    big = size >= ZIP64_FROM
    zip64 = struct.pack("<HHQQ", 1, 16, size, size) if big else b""
    fixed = 30 + len(name) + len(zip64) + 4
    if copied_from is not None and size >= MIN_COPY and copied_from % ALIGN == 0:
        pad = (copied_from - offset - fixed) % PAGE
    else:
        pad = -(offset + fixed) % ALIGN
    shown = _LIMIT if big else size
    header = struct.pack(
        "<IHHHHHIIIHH",
        0x04034B50,
        45 if big else 20,
        0,
        0,  # stored
        0,
        _DOS_DATE,
        crc,
        shown,
        shown,
        len(name),
        len(zip64) + 4 + pad,
    )
    return header + name + zip64 + b"FB" + struct.pack("<H", pad) + bytes(pad)


def file_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _crc_of_range(fd: int, offset: int, nbytes: int) -> Future[int]:
    """The CRC-32 of bytes of ``fd``, computed on a chunk worker (imported here: the module
    stays free of torch for ``head_start``, which only copies records whose CRC is known)."""
    from ckpt_gui.core.chunks import submit

    return submit(crc_of_range, fd, offset, nbytes)


def stored_records(fd: int) -> dict[str, tuple[int, int, int]]:
    """``{name: (data offset, size, CRC-32)}`` of the stored (uncompressed) records of the zip
    archive ``fd``, empty when it is not one."""
    found: dict[str, tuple[int, int, int]] = {}
    try:
        with zipfile.ZipFile(io.FileIO(fd, closefd=False)) as archive:
            for info in archive.infolist():
                local = os.pread(fd, 30, info.header_offset)
                if info.compress_type != zipfile.ZIP_STORED or local[:4] != b"PK\x03\x04":
                    continue
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                start = info.header_offset + 30 + name_len + extra_len
                found[info.filename] = (start, info.file_size, info.CRC)
    except (zipfile.BadZipFile, OSError, ValueError, struct.error):
        return {}
    return found


def stored_checksums(fd: int) -> dict[tuple[int, int], int]:
    """``{(data offset, size): CRC-32}`` of the stored records of the zip archive ``fd`` (empty
    when it is not one): what a copy of a whole record can take instead of reading it."""
    return {(start, size): crc for start, size, crc in stored_records(fd).values()}


def _done(value: int) -> Future[int]:
    future: Future[int] = Future()
    future.set_result(value)
    return future


def _central(r: _Record) -> bytes:
    fields = []
    size = r.size
    if r.size >= ZIP64_FROM:
        fields += [r.size, r.size]
        size = _LIMIT
    offset = r.offset
    if r.offset >= ZIP64_FROM:
        fields.append(r.offset)
        offset = _LIMIT
    extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
    version = 45 if fields else 20
    return (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            version,
            version,
            0,
            0,
            0,
            _DOS_DATE,
            r.crc,
            size,
            size,
            len(r.name),
            len(extra),
            0,
            0,
            0,
            0,
            offset,
        )
        + r.name
        + extra
    )


def _end(sink: Sink, count: int, start: int, size: int) -> None:
    if count >= min(0xFFFF, ZIP64_FROM) or start >= ZIP64_FROM or size >= ZIP64_FROM:
        where = sink.position
        sink.write(
            struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start)
        )
        sink.write(struct.pack("<IIQI", 0x07064B50, 0, where, 1))
        count, start, size = 0xFFFF, _LIMIT, _LIMIT
    sink.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, start, 0))
