"""``torch.distributed.checkpoint`` folders.

The ``.metadata`` file gives every key, dtype and shape without touching the shards. torch reads
it with a plain ``pickle.load``; we read it with an unpickler that only builds DCP's own metadata
classes, so a hostile ``.metadata`` cannot run code. Tensor data is read on demand through torch's
own DCP reader, whose file access is limited to regular files named directly in the folder: a
``.metadata`` cannot point it at ``../elsewhere`` or at a FIFO.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import FileSystem

from ckpt_gui.core.errors import CheckpointError, CorruptError, UnsafeError, first_line
from ckpt_gui.core.formats.detect import is_plain_name, read_small_file
from ckpt_gui.core.safety.filecheck import check_regular_file, open_regular_file, printable
from ckpt_gui.core.safety.scan import MAX_SAFE_TUPLE_DEPTH, scan_file
from ckpt_gui.core.tree import TensorInfo, dtype_name

MAX_METADATA_BYTES = 512 * 1024 * 1024


def _classes_of(module: Any) -> set[str]:
    return {
        k
        for k, v in vars(module).items()
        if isinstance(v, type) and v.__module__ == module.__name__
    }


_ALLOWED = {
    "torch.distributed.checkpoint.metadata": _classes_of(dcp_metadata),
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "slice"},
}


class _MetadataUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Builds DCP's own metadata classes and nothing else. The pure-Python unpickler, so that
    BUILD can be limited to the dataclass instances this pickle itself created: the C one would
    let it write attributes onto any object it reaches (an enum member, a module)."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise UnsafeError(f"DCP metadata references {module}.{name}; refused")

    def _load_build(self) -> None:
        target = self.stack[-2]  # type: ignore[attr-defined]
        if not dataclasses.is_dataclass(target) or isinstance(target, type):
            raise UnsafeError(f"DCP metadata sets attributes on a {type(target).__name__}; refused")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = _load_build  # type: ignore[assignment]


def read_metadata(folder: Path) -> dcp_metadata.Metadata:
    path = folder / ".metadata"
    if check_regular_file(path).st_size > MAX_METADATA_BYTES:  # a FIFO or a device: refused
        raise CorruptError(f"{path}: DCP metadata larger than {MAX_METADATA_BYTES} bytes")
    report = scan_file(path)  # also refuses tuples nested deep enough to crash any unpickler
    if report.max_tuple_depth > MAX_SAFE_TUPLE_DEPTH:
        raise CorruptError(f"{path}: tuples nested {report.max_tuple_depth} deep; refused")
    data = read_small_file(path, MAX_METADATA_BYTES, "DCP metadata")
    try:
        meta = _MetadataUnpickler(io.BytesIO(data)).load()
    except UnsafeError as exc:
        raise UnsafeError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CorruptError(f"{path}: damaged DCP metadata ({type(exc).__name__})") from None
    if not isinstance(meta, dcp_metadata.Metadata) or not isinstance(
        meta.state_dict_metadata, dict
    ):
        raise CorruptError(f"{path}: not DCP metadata")
    storage = getattr(meta, "storage_data", None)
    if storage is not None and not isinstance(storage, dict):
        raise CorruptError(f"{path}: not DCP metadata")
    for info in (storage or {}).values():
        name = getattr(info, "relative_path", None)
        if not is_plain_name(name):
            shown = printable(name if isinstance(name, str) else repr(name))
            raise CorruptError(
                f"{path}: DCP metadata points a tensor at {shown!r}, which is not a file name "
                "in the folder; refused"
            )
    return meta


def storage_files(folder: Path, meta: dcp_metadata.Metadata, key: str | None = None) -> list[Path]:
    """The data files (of ``key``, or of every tensor) named by metadata that ``read_metadata``
    checked, in first-use order."""
    names: dict[str, None] = {}
    for index, info in (getattr(meta, "storage_data", None) or {}).items():
        if key is None or getattr(index, "fqn", None) == key:
            names.setdefault(info.relative_path)
    return [folder / name for name in names]


class _RegularFileSystem(FileSystem):
    """torch's file access for reading DCP data, limited to regular files named directly in the
    folder and opened without blocking (``read_metadata`` checked the names already; this holds
    even if something else hands torch a path)."""

    def concat_path(self, path: str | os.PathLike[str], suffix: str) -> str | os.PathLike[str]:
        if not is_plain_name(suffix):
            shown = printable(str(suffix))
            raise CorruptError(f"{path}: {shown!r} is not a file name in the folder; refused")
        return super().concat_path(path, suffix)

    @contextmanager
    def create_stream(  # type: ignore[override]
        self, path: str | os.PathLike[str], mode: str
    ) -> Iterator[IO[bytes]]:
        if mode != "rb":
            raise CorruptError(f"{path}: DCP data is only ever read")
        fp, _ = open_regular_file(path)
        with fp:
            yield fp


class _SafeReader(FileSystemReader):
    """torch's DCP file reader, handed the metadata we already read with our restricted
    unpickler (torch's own read_metadata is a plain pickle.load, and would run per tensor)."""

    def __init__(self, folder: Path, meta: dcp_metadata.Metadata) -> None:
        super().__init__(str(folder))
        self.fs = _RegularFileSystem()
        self._meta = meta

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        storage_meta = getattr(self._meta, "storage_meta", None) or dcp_metadata.StorageMeta()
        storage_meta.load_id = self.load_id
        self._meta.storage_meta = storage_meta
        return self._meta


def load_dcp_tensor(
    folder: Path, meta: dcp_metadata.Metadata, key: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    for file in storage_files(folder, meta, key):
        try:  # torch's own message for a FIFO would be buried in its exception
            check_regular_file(file)
        except CheckpointError as exc:
            raise CorruptError(f"{folder}: {key} cannot be read ({exc})") from None
    # Zeros, not torch.empty: whatever the chunks do not fill must never show this process's
    # heap (dcp_entries already refuses chunk lists that do not cover the tensor).
    target = {key: torch.zeros(shape, dtype=dtype)}
    try:
        dcp.load(target, storage_reader=_SafeReader(folder, meta), no_dist=True)
    except (CheckpointException, Exception) as exc:  # CheckpointException is a BaseException
        raise CorruptError(f"{folder}: {key} cannot be read ({first_line(exc)})") from None
    return target[key]


MAX_CHUNKS = 65_536  # chunks of one tensor: DCP writes one per rank (or per shard of one)


def _check_chunks(folder: Path, key: str, shape: tuple[int, ...], chunks: Any) -> None:
    """The chunks of a tensor must tile it exactly: inside its bounds, not overlapping, and
    together as large as it. Otherwise part of it has no data in the folder. Empty chunks are
    ignored, and the overlap test sweeps along one dimension, so a hostile list of many
    chunks costs time in proportion to its length, not its square."""
    numel = 1
    for n in shape:
        numel *= n
    if isinstance(chunks, list) and len(chunks) > MAX_CHUNKS:
        raise CorruptError(f"{folder}: {key!r} has more than {MAX_CHUNKS:,} chunks; refused")
    boxes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    covered = 0
    for chunk in chunks if isinstance(chunks, list) else []:
        offsets, sizes = getattr(chunk, "offsets", None), getattr(chunk, "sizes", None)
        if not (_dims(offsets, len(shape)) and _dims(sizes, len(shape))):
            raise CorruptError(f"{folder}: DCP metadata describes a chunk of {key!r} wrongly")
        lo, size = tuple(offsets or ()), tuple(sizes or ())
        if any(o + n > limit for o, n, limit in zip(lo, size, shape)):
            raise CorruptError(f"{folder}: a chunk of {key!r} lies outside the tensor")
        volume = 1
        for n in size:
            volume *= n
        if volume:
            covered += volume
            boxes.append((lo, tuple(o + n for o, n in zip(lo, size))))
    if covered != numel or _overlap(boxes):
        raise CorruptError(
            f"{folder}: the chunks of {key!r} do not cover it exactly (part of it has no data "
            "in the folder)"
        )


def _overlap(boxes: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> bool:
    """Whether any two boxes ``[lo, hi)`` intersect: a sweep along the dimension where their
    starts differ most, comparing each box only with those still open along it."""
    if len(boxes) < 2 or not boxes[0][0]:
        return len(boxes) > 1  # scalars: two non-empty chunks of one element overlap
    dim = max(range(len(boxes[0][0])), key=lambda d: len({lo[d] for lo, _ in boxes}))
    active: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for lo, hi in sorted(boxes, key=lambda b: b[0][dim]):
        active = [a for a in active if a[1][dim] > lo[dim]]
        for a_lo, a_hi in active:
            if all(a0 < b1 and b0 < a1 for a0, a1, b0, b1 in zip(a_lo, a_hi, lo, hi)):
                return True
        active.append((lo, hi))
    return False


def _dims(values: Any, count: int) -> bool:
    return (
        isinstance(values, (tuple, list))
        and len(values) == count
        and all(type(v) is int and v >= 0 for v in values)
    )


def dcp_entries(folder: Path, meta: dcp_metadata.Metadata) -> list[tuple[str, TensorInfo | str]]:
    """Every flat DCP key with a TensorInfo, or a short description for non-tensor items."""
    out: list[tuple[str, TensorInfo | str]] = []
    for key, item in meta.state_dict_metadata.items():
        if not isinstance(key, str):
            raise CorruptError(f"{folder}: DCP metadata has a key that is not a string")
        if isinstance(item, dcp_metadata.TensorStorageMetadata):
            dtype = getattr(item.properties, "dtype", None)
            shape = tuple(item.size) if isinstance(item.size, (tuple, list)) else None
            if (
                not isinstance(dtype, torch.dtype)
                or shape is None
                or not all(isinstance(n, int) and n >= 0 for n in shape)
            ):
                raise CorruptError(f"{folder}: DCP metadata describes {key!r} wrongly")
            _check_chunks(folder, key, shape, getattr(item, "chunks", None))
            out.append(
                (
                    key,
                    TensorInfo(
                        dtype=dtype_name(dtype),
                        shape=shape,
                        stride=None,
                        device="cpu",
                        loader=partial(load_dcp_tensor, folder, meta, key, dtype, shape),
                    ),
                )
            )
        else:
            # Non-tensor items are pickles that torch would load with weights_only=False;
            # we list them without reading them.
            out.append((key, "<pickled object, not loaded>"))
    return out
