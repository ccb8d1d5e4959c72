"""Cheap checks that run before any heavy work.

Only regular files are opened (a FIFO or a device is refused from ``stat`` alone, and files are
opened non-blocking and checked again, so a path swapped for a FIFO cannot hang us). Zip archives
are checked for the tricks that make two readers see different contents (duplicate names, two
``data.pkl``) and every size a header declares is checked against the file and against a limit,
so a lying header cannot make the app allocate or read gigabytes.
"""

from __future__ import annotations

import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from ckpt_gui.core.errors import CheckpointError, CorruptError, NotACheckpointError, NotFoundError

MiB = 2**20
MAX_PICKLE_BYTES = 256 * MiB  # one pickle read into memory
MAX_INFLATED_BYTES = 256 * MiB  # what one compressed zip record may declare
MAX_TOTAL_INFLATED_BYTES = 1024 * MiB  # all compressed records read from one archive
MAX_ZIP_ENTRIES = 500_000

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader


def printable(text: str, limit: int | None = 200) -> str:
    """Text from a file made safe for a terminal: control characters escaped (so a key cannot
    move the cursor or recolour the screen), cut to ``limit`` characters unless None."""
    if not text.isprintable():  # the usual text is printable whole: checked in one call
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def check_regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """``os.stat`` the path (never opens it) and refuse anything but a regular file."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"{path}: no such file") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise CheckpointError(f"{path}: cannot read: {reason}") from None
    _refuse_special(path, st.st_mode)
    return st


def _refuse_special(path: object, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        what = "a folder"
    elif stat.S_ISFIFO(mode):
        what = "a named pipe (FIFO)"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        what = "a device"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        what = "a special file"
    raise NotACheckpointError(f"{path} is {what}, not a regular file")


def open_regular_file(path: str | os.PathLike[str]) -> tuple[BinaryIO, int]:
    """Open a regular file for reading without ever blocking; returns the file and its size."""
    check_regular_file(path)
    flags = os.O_RDONLY
    for extra in ("O_NONBLOCK", "O_CLOEXEC", "O_BINARY", "O_NOCTTY"):
        flags |= getattr(os, extra, 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)  # the path may have been swapped since check_regular_file
        _refuse_special(path, st.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


_MAGICS = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ", "an xz file"),
    (b"7z\xbc\xaf", "a 7z archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x89HDF", "an HDF5 file"),
    (b"GGUF", "a GGUF model file"),
]


def describe_content(head: bytes) -> str:
    """What the first bytes of a file look like, for error messages."""
    if not head:
        return "an empty file"
    for magic, what in _MAGICS:
        if head.startswith(magic):
            return what
    if head.startswith(b"\x80") and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a plain Python pickle (not written by torch.save)"
    stripped = head.lstrip()
    if stripped.startswith((b"<?xml", b"<!DOCTYPE", b"<!doctype", b"<html")):
        return "an HTML or XML document (a download error page?)"
    if stripped.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the real file was never downloaded)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    shown = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return "a text file" if shown >= 0.95 * len(text) else "unrecognised binary data"


def sniff(head: bytes, size: int) -> str:
    """The container kind from the first bytes (at least 512 of them when the file has them).

    One of "empty", "zip", "safetensors", "tar", "pickle" (starts with a protocol 2+ header) or
    "unknown" (possibly a protocol 0/1 pickle, which has no header).
    """
    if size == 0:
        return "empty"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    # torch.load tries tarfile right after zip, whatever else the bytes look like.
    if is_tar_header(head):
        return "tar"
    if size >= 10 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= size - 8:
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "unknown"


def is_tar_header(block: bytes) -> bool:
    """Whether ``tarfile`` (which ``torch.load`` tries on every non-zip file) reads ``block`` as
    a tar header: recognised by its checksum, as tarfile does, not by a ``ustar`` magic that
    pre-POSIX (v7) archives do not have."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError, UnicodeError):
        return False
    return True


def open_sniffed(path: str | os.PathLike[str], label: str) -> tuple[BinaryIO, int, bytes, str]:
    """``open_regular_file``, then the first 512 bytes and their ``sniff`` kind; an empty file
    is refused here. The file is positioned after those bytes; the caller closes it."""
    fp, size = open_regular_file(path)
    try:
        head = fp.read(512)
        kind = sniff(head, size)
        if kind == "empty":
            raise NotACheckpointError(f"{label} is empty")
    except BaseException:
        fp.close()
        raise
    return fp, size, head, kind


@dataclass(frozen=True)
class ZipRecord:
    """One record of a checked zip archive."""

    name: str
    size: int  # uncompressed, as declared
    compressed: bool
    info: zipfile.ZipInfo = field(repr=False, compare=False)


class TorchZip:
    """A zip archive that passed the sanity checks; reads its records within the limits.

    ``prefix`` is the folder holding ``data.pkl`` (``"archive"`` for ``archive/data.pkl``,
    ``""`` when it sits at the top, ``None`` when there is none).
    """

    def __init__(self, fp: BinaryIO, size: int, label: str, *, require_data_pkl: bool) -> None:
        self._fp, self.size, self.label = fp, size, label
        self.inflated = 0
        self.zf = _open_zipfile(fp, size, label)
        self.records: dict[str, ZipRecord] = {}
        folded: set[str] = set()
        for info in self.zf.infolist():
            name = info.filename
            # Python's zipfile cuts a name at a NUL and matches case-sensitively; torch's reader
            # (miniz) keeps the NUL and matches case-insensitively: refuse what they read apart.
            if "\0" in info.orig_filename:
                raise CorruptError(f"{label}: zip record {printable(name)!r} has a NUL in its name")
            if name in self.records or name.lower() in folded:
                raise CorruptError(f"{label}: the zip archive lists {printable(name)!r} twice")
            folded.add(name.lower())
            if info.header_offset < 0 or info.header_offset + 30 + info.compress_size > size:
                raise CorruptError(f"{label}: zip record {name!r} points past the end of the file")
            if info.flag_bits & 0x1:
                raise CorruptError(f"{label}: zip record {name!r} is encrypted")
            compressed = info.compress_type != zipfile.ZIP_STORED
            self.records[name] = ZipRecord(name, info.file_size, compressed, info)
        data_pkls = [n for n in self.records if _folded_is(n, "data.pkl")]
        if len(data_pkls) > 1:
            raise CorruptError(f"{label}: the zip archive holds {len(data_pkls)} data.pkl records")
        self.prefix = data_pkls[0].removesuffix("data.pkl").rstrip("/") if data_pkls else None
        if require_data_pkl and self.prefix is None:
            raise NotACheckpointError(
                f"{label} is a zip archive without a data.pkl, not a PyTorch checkpoint"
            )

    def full_name(self, name: str) -> str:
        """``data/0`` -> ``archive/data/0``."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def pickle_names(self) -> list[str]:
        """Every record holding a pickle: data.pkl, constants.pkl, TorchScript debug pickles
        (in any letter case: torch's reader finds ``DATA.PKL`` as ``data.pkl``)."""
        suffixes = (".pkl", ".debug_pkl", ".pickle")
        return [n for n in self.records if n.lower().endswith(suffixes)]

    def read(self, name: str, limit: int = MAX_PICKLE_BYTES) -> bytes:
        """The bytes of one record, refused before reading if it declares more than ``limit``."""
        record = self.records.get(name)
        if record is None:
            raise CorruptError(f"{self.label}: the archive has no record {name!r}")
        if record.size > limit:
            what = "would inflate to" if record.compressed else "holds"
            raise CorruptError(
                f"{self.label}: record {name!r} {what} {record.size / MiB:,.0f} MiB, over the "
                f"{limit / MiB:,.0f} MiB limit" + (" (a zip bomb?)" if record.compressed else "")
            )
        if record.compressed:
            if self.inflated + record.size > MAX_TOTAL_INFLATED_BYTES:
                raise CorruptError(
                    f"{self.label}: compressed records inflate to more than "
                    f"{MAX_TOTAL_INFLATED_BYTES / MiB:,.0f} MiB in all (a zip bomb?)"
                )
            self.inflated += record.size
        self.data_offset(name)  # checks the local header agrees with the directory
        try:
            with self.zf.open(record.info) as stream:
                data = stream.read(limit + 1)  # zipfile stops at the declared size
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError) as exc:
            message = f"{self.label}: record {name!r} is damaged: {printable(str(exc))}"
            raise CorruptError(message) from None
        if len(data) != record.size:
            raise CorruptError(f"{self.label}: record {name!r} is truncated")
        return data

    def data_offset(self, name: str) -> int:
        """Where the raw bytes of a record start in the file (checked to lie inside it)."""
        info = self.records[name].info
        self._fp.seek(info.header_offset)
        header = self._fp.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise CorruptError(f"{self.label}: zip record {name!r} has a damaged header")
        fields = _LOCAL_HEADER.unpack(header)
        name_len, extra_len = fields[10], fields[11]
        raw_name = self._fp.read(name_len)
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        if raw_name.decode(encoding, "replace") != info.orig_filename:
            raise CorruptError(f"{self.label}: zip record {name!r} disagrees with its header")
        offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if offset + info.compress_size > self.size:
            raise CorruptError(f"{self.label}: zip record {name!r} runs past the end of the file")
        if not self.records[name].compressed and info.compress_size != info.file_size:
            raise CorruptError(f"{self.label}: zip record {name!r} has inconsistent sizes")
        return offset

    def byteorder(self) -> str:
        """``"little"`` or ``"big"`` as recorded by torch (little when not recorded)."""
        name = self.full_name("byteorder")
        if name not in self.records:
            return "little"
        return self.read(name, limit=16).decode("ascii", "replace").strip() or "little"


class BoundedReader:
    """A file view for pickle readers that refuses to read past ``limit`` bytes from where it
    starts, and never asks for more than the file still holds: a length field declaring gigabytes
    fails here instead of allocating them."""

    def __init__(self, fp: IO[bytes], end: int, limit: int, label: str) -> None:
        self._fp, self._end, self._label, self._limit = fp, end, label, limit
        self._stop = fp.tell() + limit

    def _over_limit(self, pos: int, n: int) -> bool:
        return pos + n > self._stop and self._stop < self._end

    def _refuse(self) -> CorruptError:
        return CorruptError(
            f"{self._label}: a pickle (or a length inside it) over the "
            f"{self._limit / MiB:,.0f} MiB limit"
        )

    def read(self, n: int = -1) -> bytes:
        pos = self._fp.tell()
        if n is None or n < 0:
            n = self._end - pos
        if self._over_limit(pos, n):
            raise self._refuse()
        return self._fp.read(max(0, min(n, self._end - pos)))

    def readline(self, size: int = -1) -> bytes:
        pos = self._fp.tell()
        room = max(0, min(self._stop, self._end) - pos)
        line = self._fp.readline(room)
        if len(line) == room and not line.endswith(b"\n") and self._over_limit(pos, room + 1):
            raise self._refuse()
        return line

    def tell(self) -> int:
        return self._fp.tell()


def _folded_is(name: str, base: str) -> bool:
    folded = name.lower()
    return folded == base or folded.endswith("/" + base)


def _open_zipfile(fp: BinaryIO, size: int, label: str) -> zipfile.ZipFile:
    end_record = getattr(zipfile, "_EndRecData", None)
    try:
        if end_record is not None:
            endrec = end_record(fp)
            if endrec is None:
                raise CorruptError(f"{label}: truncated or damaged zip archive (no end record)")
            if endrec[4] > MAX_ZIP_ENTRIES:  # _ECD_ENTRIES_TOTAL
                raise CorruptError(
                    f"{label}: the zip archive declares {endrec[4]:,} records "
                    f"(limit {MAX_ZIP_ENTRIES:,})"
                )
        zf = zipfile.ZipFile(fp)
        declared = endrec[getattr(zipfile, "_ECD_OFFSET", 6)] if endrec is not None else None
        start = getattr(zf, "start_dir", declared)
        if declared is not None and start != declared:
            # Python shifts every offset to where it found the central directory (concatenated
            # archives); torch's reader uses the declared offsets: the two would read different
            # records.
            zf.close()
            raise CorruptError(
                f"{label}: the zip central directory is not where the archive says it is"
            )
        return zf
    except CheckpointError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        ValueError,
        struct.error,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        RuntimeError,  # NotImplementedError for unknown zip versions among them
    ) as exc:
        message = f"{label}: truncated or damaged zip archive ({printable(str(exc))})"
        raise CorruptError(message) from None


def open_zip(
    fp: BinaryIO, size: int, path: str | Path, *, require_data_pkl: bool = True
) -> TorchZip:
    """Check a zip archive (duplicates, one data.pkl, records inside the file) and open it."""
    return TorchZip(fp, size, str(path), require_data_pkl=require_data_pkl)
