"""Every global a file's pickles reference, found without unpickling anything.

``pickletools.genops`` walks the opcodes; a small stack-and-memo simulation resolves names that
protocol 4 builds with ``STACK_GLOBAL`` (from string pushes or memo lookups), follows ``EXT``
codes through copyreg's registry (read only), and looks inside byte strings handed to
``pickle.loads`` and friends. Covers zip archives (every pickle in them), legacy torch files (the
pickles before the raw storages), the pre-1.0 tar format, plain pickles, safetensors and folders.
Never imports torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from ckpt_gui.core.errors import CheckpointError, CorruptError, NotACheckpointError
from ckpt_gui.core.safety import filecheck
from ckpt_gui.core.safety.globals import UNKNOWN, classify, normalize, worst
from ckpt_gui.core.safety.opcodes import simulate

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
MAX_NESTED = 4
MAX_FOLDER_FILES = 10_000
# Extensions of files that hold pickles; in a folder, a damaged one is an error, not a skip.
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".metadata")
_STORAGE_ITEMSIZE = {  # element sizes of torch's legacy storage types, without importing torch
    name: int(size)
    for name, size in (
        item.split(":")
        for item in "Double:8 Float:4 Half:2 BFloat16:2 Long:8 Int:4 Short:2 Char:1 Byte:1 "
        "Bool:1 ComplexDouble:16 ComplexFloat:8 QInt8:1 QUInt8:1 QInt32:4 QUInt4x2:1 "
        "QUInt2x4:1".split()
    )
}


@dataclass
class GlobalRef:
    """One global named by a pickle. ``where`` says which pickle; ``count`` how often."""

    module: str  # as Python 3 would import it ("builtins", not a protocol 2 "__builtin__")
    name: str
    verdict: str
    where: str
    count: int = 1
    written: str | None = None  # "module.name" as the file spells it, when that differs


@dataclass
class ScanReport:
    path: str
    format: str  # "torch-zip" | "torchscript" | "torch-legacy" | "torch-tar" | "pickle" | ...
    globals: list[GlobalRef] = field(default_factory=list)
    pickles: list[str] = field(default_factory=list)  # every pickle that was scanned
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # folder entries that hold no pickle
    # Deepest nesting of tuples/frozensets built. Hashing one recurses in C without a depth
    # check, so any unpickler (torch's weights_only one too) can crash on a deep one.
    max_tuple_depth: int = 0
    # Calls that allocate memory the file does not hold, (what, bytes, where): bytearray(n),
    # and torch's legacy constructors with sizes, whose memory is uninitialised.
    allocations: list[tuple[str, int, str]] = field(default_factory=list)
    # Bytes of storage the pickles declare, by storage key (a legacy file must hold them).
    declared_storage: dict[str, int] = field(default_factory=dict)

    @property
    def uninitialised(self) -> list[tuple[str, int, str]]:
        """The allocations that make tensors or storages (rather than byte arrays)."""
        return [a for a in self.allocations if a[0].startswith("torch")]

    @property
    def allocated_bytes(self) -> int:
        return sum(a[1] for a in self.allocations)

    @property
    def verdict(self) -> str:
        return worst(g.verdict for g in self.globals)

    def to_json(self) -> dict[str, Any]:
        """The ``scan --json`` object of docs/cli.md (with a few extra fields)."""
        return {
            "path": self.path,
            "verdict": self.verdict,
            "globals": [asdict(g) for g in self.globals],
            "format": self.format,
            "pickles": list(self.pickles),
            "notes": list(self.notes),
            "skipped": list(self.skipped),
            "max_tuple_depth": self.max_tuple_depth,
            "allocations": [
                {"call": what, "bytes": n, "where": where} for what, n, where in self.allocations
            ],
        }


MAX_SAFE_TUPLE_DEPTH = 100
_NOTED_ALLOCATION = 1 << 20  # byte strings smaller than this are ordinary values


class _Scanner:
    """Walks every pickle of one file into a report (the ``opcodes.Sink``)."""

    def __init__(self, report: ScanReport) -> None:
        self.report = report
        self._seen: dict[tuple[str, str, str], GlobalRef] = {}
        self._depth = 0

    def add(self, module: str, name: str, where: str, protocol: int = 0) -> None:
        written = None
        if protocol < 3 and module != "?":  # what pickle's fix_imports would import
            resolved = normalize(module, name)
            if resolved != (module, name):
                written, (module, name) = f"{module}.{name}", resolved
        key = (module, name, where)
        if key in self._seen:
            self._seen[key].count += 1
            return
        verdict = classify(module, name) if module != "?" else UNKNOWN
        self._seen[key] = ref = GlobalRef(module, name, verdict, where, written=written)
        self.report.globals.append(ref)

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def tuple_depth(self, depth: int) -> None:
        if depth > self.report.max_tuple_depth:
            self.report.max_tuple_depth = depth
            if depth == MAX_SAFE_TUPLE_DEPTH + 1:
                self.note(
                    f"tuples nested more than {MAX_SAFE_TUPLE_DEPTH} deep: unpickling this file "
                    "with pickle or torch.load can crash Python"
                )

    def allocation(self, what: str, nbytes: int, where: str) -> None:
        self.report.allocations.append((what, nbytes, where))
        if what.startswith("torch"):
            self.note(f"{where}: {what} makes an uninitialised tensor (no data in the file)")
        elif nbytes > _NOTED_ALLOCATION:
            self.note(f"{where}: {what} allocates {nbytes:,} bytes")

    def storage(self, pid: Any, where: str) -> None:
        """A storage reference ``("storage", type, key, location, numel)``: what it declares."""
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            return
        kind, key, numel = pid[1], pid[2], pid[4]
        item = _STORAGE_ITEMSIZE.get(getattr(kind, "name", "").removesuffix("Storage"))
        if item is None and getattr(kind, "name", "") in ("UntypedStorage", "TypedStorage"):
            item = 1
        if item is not None and isinstance(key, str) and type(numel) is int:
            self.report.declared_storage[key] = max(0, numel) * item

    def pickle(self, stream: Any, where: str, label: str) -> Any:
        """Scan one pickle (bytes or a file positioned at it); returns its value when simple."""
        self.report.pickles.append(where)
        try:
            return simulate(stream, where, self)
        except CheckpointError:
            raise
        except (
            ValueError,
            EOFError,
            struct.error,
            OverflowError,
            KeyError,
            IndexError,
            TypeError,
            UnicodeError,
            MemoryError,
        ) as exc:
            message = filecheck.printable(str(exc)) or type(exc).__name__
            raise CorruptError(f"{label}: {where} is not a valid pickle ({message})") from None

    def rename(self, old: str, new: str) -> None:
        self.report.pickles = [new if p == old else p for p in self.report.pickles]
        for ref in self.report.globals:
            if ref.where == old:
                ref.where = new

    def nested(self, data: bytes, where: str, torch_file: bool) -> None:
        if torch_file:
            self.embedded(io.BytesIO(data), len(data), where)
            return
        if self._enter(where):
            try:
                self.pickle(bytes(data), where, where)
            except CheckpointError as exc:
                self.unreadable(where, exc)
            finally:
                self._depth -= 1

    def embedded(self, fp: BinaryIO, size: int, where: str) -> None:
        """A whole torch.save file inside another (bytes a pickle loads, a DCP data range):
        every pickle in it; what cannot be read makes the verdict "unknown", never "safe"."""
        if not self._enter(where):
            return
        try:
            fp.seek(0)
            if fp.read(4) == b"PK\x03\x04":
                self.zip(fp, size, where, where)
            else:  # torch.save's legacy format: every pickle in it
                self.sequence(fp, size, where, where)
        except CheckpointError as exc:
            self.unreadable(where, exc)
        finally:
            self._depth -= 1

    def _enter(self, where: str) -> bool:
        if self._depth >= MAX_NESTED:
            self.add("?", "?", where)
            self.note(f"{where}: nested more than {MAX_NESTED} deep, not scanned")
            return False
        self._depth += 1
        return True

    def unreadable(self, where: str, reason: object) -> None:
        """Something that may hold pickles could not be read: its verdict is "unknown"."""
        self.add("?", "?", where)
        self.note(f"{where}: could not be scanned: {reason}")

    def zip(self, fp: BinaryIO, size: int, label: str, prefix: str = "") -> str:
        """Every pickle in a zip archive (data.pkl, constants.pkl, TorchScript debug pickles)."""
        archive = filecheck.open_zip(fp, size, label, require_data_pkl=False)
        names = archive.pickle_names()
        if not names:
            raise NotACheckpointError(f"{label} is a zip archive without any pickle in it")
        for name in names:
            data = archive.read(name)
            self.pickle(data, f"{prefix} > {name}" if prefix else name, label)
        code = archive.full_name("code/") if archive.prefix is not None else "code/"
        return "torchscript" if any(n.startswith(code) for n in archive.records) else "torch-zip"

    def sequence(self, fp: BinaryIO, size: int, label: str, prefix: str = "") -> str:
        """A legacy torch file (magic, protocol, sys_info, object, storage keys, raw storages),
        or a file of one or more plain pickles."""

        def next_pickle(name: str) -> Any:
            reader = filecheck.BoundedReader(fp, size, filecheck.MAX_PICKLE_BYTES, label)
            return self.pickle(reader, f"{prefix} > {name}" if prefix else name, label)

        def where(name: str) -> str:
            return f"{prefix} > {name}" if prefix else name

        fp.seek(0)
        first = next_pickle("pickle #1")
        if type(first) is int and first == LEGACY_MAGIC:
            self.rename(where("pickle #1"), where("legacy pickle #1"))
            for i in range(2, 6):
                next_pickle(f"legacy pickle #{i}")
            return "torch-legacy"
        count = 1
        while fp.tell() < size:  # more pickles may follow; a loader could read them too
            start = fp.tell()
            try:
                next_pickle(f"pickle #{count + 1}")
            except CorruptError:
                self.report.pickles.pop()
                self.note(f"{size - start} bytes after pickle #{count} are not a pickle")
                break
            count += 1
        if count == 1:
            self.rename(where("pickle #1"), where("pickle"))
        return "pickle"

    def tar(self, fp: BinaryIO, label: str) -> str:
        """The pre-1.0 tar format: members sys_info, pickle, storages and tensors."""
        try:
            fp.seek(0)
            with tarfile.open(fileobj=fp, mode="r:") as tar:
                members: dict[str, tarfile.TarInfo] = {}
                for member in tar:
                    if len(members) >= 16:
                        raise CorruptError(f"{label}: a tar archive with too many members")
                    members[member.name] = member
                if "pickle" not in members:
                    raise NotACheckpointError(f"{label} is a tar archive, not a PyTorch checkpoint")
                for name in ("sys_info", "pickle", "storages", "tensors"):
                    if name not in members or not members[name].isfile():
                        continue
                    stream = tar.extractfile(members[name])
                    assert stream is not None
                    self._tar_member(stream, members[name].size, name, label)
        except tarfile.TarError as exc:
            message = f"{label}: damaged tar archive ({filecheck.printable(str(exc))})"
            raise CorruptError(message) from None
        return "torch-tar"

    def _tar_member(self, stream: IO[bytes], size: int, name: str, label: str) -> None:
        def next_pickle(where: str) -> Any:
            reader = filecheck.BoundedReader(stream, size, filecheck.MAX_PICKLE_BYTES, label)
            return self.pickle(reader, where, label)

        def skip(n: int) -> bytes:
            if n < 0 or stream.tell() + n > size:
                raise CorruptError(f"{label}: tar/{name} is truncated")
            return stream.read(n)

        if name in ("sys_info", "pickle"):
            next_pickle(f"tar/{name}")
            return
        count = next_pickle(f"tar/{name} #0")
        if not isinstance(count, int) or not 0 <= count <= size:
            raise CorruptError(f"{label}: tar/{name} has a damaged header")
        for i in range(1, count + 1):
            args = next_pickle(f"tar/{name} #{i}")
            if name == "storages":  # (key, location, storage type), then numel and raw bytes
                kind = args[2] if isinstance(args, tuple) and len(args) == 3 else None
                item = _STORAGE_ITEMSIZE.get(getattr(kind, "name", "").removesuffix("Storage"))
                if item is None:
                    raise CorruptError(f"{label}: tar/storages #{i} has no storage type")
                (numel,) = struct.unpack("<q", skip(8))
                skip(numel * item)
            else:  # (key, storage id, type), then ndim, sizes, strides and offset
                ndim = struct.unpack("<i", skip(4))[0]
                skip(4 + 16 * ndim + 8)


def scan_file(
    path: str | os.PathLike[str],
    label: str | None = None,
    opened: tuple[BinaryIO, int] | None = None,
) -> ScanReport:
    """Scan one file. Raises a ``CheckpointError`` subclass when it cannot be scanned.
    ``opened``: the file already open (``(file, size)``, as ``detect_and_open`` left it), read
    from its start and left open for its owner to close."""
    label = label or str(path)
    report = ScanReport(path=str(path), format="unknown")
    scanner = _Scanner(report)
    if opened is None:
        fp, size, head, kind = filecheck.open_sniffed(path, label)
        owned: contextlib.AbstractContextManager[object] = fp
    else:
        fp, size = opened
        fp.seek(0)
        head = fp.read(512)
        kind = filecheck.sniff(head, size)
        owned = contextlib.nullcontext()
    with owned:
        if kind == "zip":
            report.format = scanner.zip(fp, size, label)
        elif kind == "safetensors":
            report.format = "safetensors"
            report.notes.append("safetensors files hold no pickle")
        elif kind == "tar":
            report.format = scanner.tar(fp, label)
        else:
            try:
                report.format = scanner.sequence(fp, size, label)
            except CorruptError:
                if kind == "pickle":
                    raise
                what = filecheck.describe_content(head)
                message = f"{label} is not a checkpoint: it looks like {what}"
                raise NotACheckpointError(message) from None
    return report


def scan_path(path: str | os.PathLike[str]) -> ScanReport:
    """Scan a file, or every pickle-bearing file in a folder (sharded .bin, DCP .metadata, ...)."""
    if os.path.isdir(path):
        return scan_folder(path)
    return scan_file(path)


class _Window(io.RawIOBase):
    """A read-only view of ``length`` bytes of ``fp`` from ``start``, as a file of its own."""

    def __init__(self, fp: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._fp, self._start, self._length, self._pos = fp, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._length - self._pos))
        self._fp.seek(self._start + self._pos)
        data = self._fp.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def scan_distcp(path: Path, label: str) -> ScanReport:
    """A DCP data file: every item in it is a ``torch.save`` file (tensors, which torch loads
    with ``weights_only=True``, and other objects, which it loads with ``weights_only=False``),
    at ranges only the folder's ``.metadata`` knows. Each range is scanned; without readable
    metadata the file's verdict is "unknown"."""
    report = ScanReport(path=str(path), format="dcp-data")
    scanner = _Scanner(report)
    try:
        ranges = _dcp_ranges(path)
    except CheckpointError as exc:
        scanner.unreadable(label, f"the folder's .metadata cannot be read ({exc})")
        return report
    fp, size = filecheck.open_regular_file(path)
    with fp:
        for key, start, length, transformed in ranges:
            where = f"item {printable_key(key)}"
            if transformed:
                scanner.unreadable(where, "stored with a transform (compression) ckpt-gui lacks")
            elif start < 0 or length < 0 or start + length > size:
                scanner.unreadable(where, "its range runs past the end of the file")
            else:
                scanner.embedded(_Window(fp, start, length), length, where)  # type: ignore[arg-type]
    return report


def printable_key(key: str) -> str:
    return filecheck.printable(key, 80)


def _dcp_ranges(path: Path) -> list[tuple[str, int, int, bool]]:
    """``(key, offset, length, transformed)`` of every item the metadata stores in ``path``."""
    from ckpt_gui.core.formats.dcp import read_metadata  # imports torch: only for DCP folders

    meta = read_metadata(path.parent)
    ranges = []
    storage = getattr(meta, "storage_data", None)
    if not isinstance(storage, dict):
        raise CorruptError(f"{path.parent}: DCP metadata without storage information")
    for index, info in storage.items():
        if getattr(info, "relative_path", None) != path.name:
            continue
        offset, length = getattr(info, "offset", None), getattr(info, "length", None)
        if type(offset) is not int or type(length) is not int:
            raise CorruptError(f"{path.parent}: DCP metadata with a damaged storage range")
        transformed = bool(getattr(info, "transform_descriptors", None))
        ranges.append((str(getattr(index, "fqn", "?")), offset, length, transformed))
    return ranges


def scan_folder(folder: str | os.PathLike[str]) -> ScanReport:
    root = Path(folder)
    report = ScanReport(path=str(folder), format="folder")
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed
        dirnames.sort()
        files.extend(Path(dirpath) / f for f in sorted(filenames))
        if len(files) > MAX_FOLDER_FILES:
            raise NotACheckpointError(f"{folder} holds more than {MAX_FOLDER_FILES:,} files")
    scanned = 0
    for file in files:
        rel = file.relative_to(root).as_posix()
        try:
            fp, size = filecheck.open_regular_file(file)
        except NotACheckpointError as exc:
            report.skipped.append(f"{rel}: {exc}")
            continue
        with fp:
            kind = filecheck.sniff(fp.read(512), size)
        if kind in ("empty", "unknown") and not file.name.endswith(PICKLE_SUFFIXES):
            report.skipped.append(rel)
            continue
        if file.name.endswith(".distcp"):
            sub = scan_distcp(file, rel)
        else:
            sub = scan_file(file, label=rel)
        scanned += 1
        report.pickles.extend(f"{rel}:{p}" for p in sub.pickles)
        report.notes.extend(f"{rel}: {n}" for n in sub.notes)
        report.max_tuple_depth = max(report.max_tuple_depth, sub.max_tuple_depth)
        for ref in sub.globals:
            ref.where = f"{rel}:{ref.where}"
            report.globals.append(ref)
    if not scanned:
        raise NotACheckpointError(f"{folder}: no checkpoint file in this folder")
    return report
