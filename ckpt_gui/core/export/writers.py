"""Writers that stream tensors from the memory-mapped source into an open file, yielding after
every tensor or chunk so an export can report progress and be cancelled.

safetensors is written by hand (length, JSON header, raw little-endian bytes, chunk by chunk,
cast chunk by chunk) because ``safetensors.torch.save_file`` builds the whole file in memory.
pt files go through torch's own pickler and zip writer, one record at a time, so mmap-backed
storages are written without an anonymous copy.
"""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

import torch

from ckpt_gui.core.build import (
    MAX_DEPTH,
    PLAIN,
    is_numeric_array,
    mapping_items,
    overrides,
    plain_tensor,
)
from ckpt_gui.core.chunks import CancelCheck, row_pieces
from ckpt_gui.core.errors import Cancelled
from ckpt_gui.core.export.casting import cast
from ckpt_gui.core.export.options import ExportError
from ckpt_gui.core.tree import join_key

CHUNK_ELEMENTS = 4 << 20  # 16 MB of float32: small next to the memory goal, large for I/O
CHUNK_BYTES = 16 << 20

Progress = Iterator[tuple[str, int]]  # (key, bytes just written)


def check_cancel(cancel: CancelCheck | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def raw_bytes(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes in row-major order as a flat uint8 tensor (a view when contiguous)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold the same bytes (NaN payloads and -0.0 included), compared as
    8-byte words where the layout allows: several times faster than byte by byte."""
    x, y = raw_bytes(a), raw_bytes(b)
    if x.numel() != y.numel():
        return False
    if x.numel() % 8 == 0:
        try:
            return torch.equal(x.view(torch.int64), y.view(torch.int64))
        except RuntimeError:  # a view that does not start on an 8-byte boundary
            pass
    return torch.equal(x, y)


def _little_endian() -> None:
    if sys.byteorder != "little":
        raise ExportError("exporting needs a little-endian machine")


def iter_write_safetensors(
    file: BinaryIO,
    header: bytes,
    items: list[tuple[str, Callable[[], torch.Tensor], torch.dtype]],
    cancel: CancelCheck | None = None,
    on_overflow: str = "inf",
) -> Progress:
    """Write ``header`` (from ``plan.safetensors_header``) then each ``(name, load, dtype)``'s
    bytes, cast chunk by chunk (``casting.cast``), in the header's order."""
    _little_endian()
    file.write(header)
    for name, load, dtype in items:
        yield from _write_tensor(file, name, load, dtype, cancel, on_overflow)


def _write_tensor(
    file: BinaryIO,
    name: str,
    load: Callable[[], torch.Tensor],
    dtype: torch.dtype,
    cancel: CancelCheck | None,
    on_overflow: str,
) -> Progress:
    """One tensor's bytes. A function of its own so that nothing of the tensor (it, its chunks)
    is still referenced once written: a merge computes the next weight in its memory then."""
    tensor = load()
    for chunk in row_pieces(tensor, CHUNK_ELEMENTS):
        check_cancel(cancel)
        data = cast(chunk, dtype, on_overflow)
        file.write(raw_bytes(data).numpy().data)
        yield name, data.numel() * data.element_size()
    if tensor.numel() == 0:
        yield name, 0


class _Sink:
    """What torch's zip writer writes to. It must never raise: an exception thrown through the
    C++ writer leaves it inconsistent and its destructor then aborts the process. So an error or
    a cancel is recorded, later bytes are swallowed, and ``check()`` raises it from Python."""

    def __init__(self, file: BinaryIO, cancel: CancelCheck | None) -> None:
        self.file, self.cancel = file, cancel
        self.error: BaseException | None = None
        self.detached = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None and not self.detached:
            try:
                for i in range(0, view.nbytes, CHUNK_BYTES):
                    check_cancel(self.cancel)
                    self.file.write(view[i : i + CHUNK_BYTES])
            except BaseException as exc:  # noqa: BLE001 - re-raised by check(), outside C++
                self.error = exc
        return view.nbytes

    def flush(self) -> None:
        pass

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class _Recorder:
    """Stands in for torch's zip writer while torch pickles the object, keeping the records
    (the pickle, then one per storage) so they can be written one at a time."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Any, int]] = []

    def write_record(self, name: str, data: Any, nbytes: int) -> None:
        self.records.append((name, data, nbytes))


def iter_write_pt(file: BinaryIO, obj: Any, cancel: CancelCheck | None = None) -> Progress:
    """``torch.save(obj, file)``, byte for byte, yielding after each storage."""
    recorder = _Recorder()
    # torch's own pickling (persistent ids, storage keys, format records), so the result is
    # exactly what torch.save writes and loads with plain torch.load(weights_only=True).
    torch.serialization._save(obj, recorder, pickle, torch.serialization.DEFAULT_PROTOCOL, False)
    sink = _Sink(file, cancel)
    writer = torch.serialization._open_zipfile_writer(sink).file_like  # type: ignore[arg-type]
    try:
        for name, data, nbytes in recorder.records:
            writer.write_record(name, data, nbytes)
            sink.check()
            if name.startswith("data/"):
                yield name, nbytes
        writer.write_end_of_file()
        sink.check()
    finally:
        sink.detached = True  # the writer's destructor may finish the archive: into nothing
        del writer


def convert_tensors(
    tensors: dict[str, torch.Tensor], dtypes: dict[str, torch.dtype], on_overflow: str = "inf"
) -> dict[str, torch.Tensor]:
    """Each tensor as it will be saved: cast to ``dtypes[key]``, still sharing storage with the
    tensors it shared storage with (tied weights stay tied). A storage used whole and uncast is
    written straight from the source's memory map; otherwise the part the kept views use is
    copied once, so a kept slice never drags its whole source storage along."""
    groups: dict[Any, list[str]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if t.is_nested or t.layout != torch.strided:  # written back as it is (never cast)
            out[key] = t
            continue
        storage = t.untyped_storage()
        ptr = storage.data_ptr() if storage.nbytes() else id(t)
        groups.setdefault((ptr, t.dtype, dtypes[key]), []).append(key)
    for (_, src_dtype, dtype), keys in groups.items():
        views = [tensors[k] for k in keys]
        lo = min(v.storage_offset() for v in views)
        hi = max(_end(v) for v in views)
        whole = lo == 0 and hi * src_dtype.itemsize == views[0].untyped_storage().nbytes()
        if whole and dtype == src_dtype:
            out.update(zip(keys, views))
            continue
        flat = views[0].as_strided((hi - lo,), (1,), lo)
        flat = cast(flat, dtype, on_overflow) if dtype != src_dtype else flat.clone()
        for key, v in zip(keys, views):
            out[key] = flat.as_strided(v.shape, v.stride(), v.storage_offset() - lo)
    return out


def _end(t: torch.Tensor) -> int:
    offset = int(t.storage_offset())
    if t.numel() == 0:
        return offset
    return offset + 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride()))


def _is_container(value: Any) -> bool:
    """Containers exactly as the checkpoint tree sees them (``build.build_tree``)."""
    return isinstance(value, (Mapping, list, tuple)) and not isinstance(value, PLAIN)


def _is_array(value: Any) -> bool:
    """A tensor, or a NumPy array (which the tree shows as a tensor, ``build.numpy_tensor``)."""
    return isinstance(value, torch.Tensor) or is_numeric_array(value)


def kept_tensors(obj: Any, key: str, structure: dict[str, str]) -> dict[str, Any]:
    """The tensors (and NumPy arrays) inside ``obj`` (whose tree key is ``key``) that the plan
    keeps, by key."""
    found: dict[str, Any] = {}
    on_path: set[int] = set()

    def visit(value: Any, key: str, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            found[key] = plain_tensor(value) if vars(value) else value
        elif _is_array(value):
            found[key] = value
        elif _is_container(value) and id(value) not in on_path and depth <= MAX_DEPTH:
            on_path.add(id(value))
            items = mapping_items(value) if isinstance(value, Mapping) else enumerate(value)
            for k, v in items:
                child = join_key(key, str(k))
                if child in structure:
                    visit(v, child, depth + 1)
            on_path.discard(id(value))

    visit(obj, key, 0)
    return found


def _empty_like(value: Mapping[Any, Any]) -> Any:
    """An empty mapping of ``value``'s type with its attributes (a state_dict's ``_metadata``,
    a defaultdict's factory), except any the file set to hide a dict method, which a cleaned
    copy does not carry on."""
    if not isinstance(value, dict):
        return {}
    if overrides(value, dict):
        out = type(value)()
        hidden = set(overrides(value, dict))
        for name, attr in vars(value).items():
            if name not in hidden:
                setattr(out, name, attr)
        return out
    out = copy.copy(value)
    out.clear()
    return out


def rebuild(obj: Any, key: str, structure: dict[str, str], tensors: dict[str, Any]) -> Any:
    """A copy of ``obj`` with only the kept entries, renamed keys and converted tensors;
    containers keep their type (OrderedDict, tuple) and every other value is the original."""
    on_path: set[int] = set()

    def visit(value: Any, key: str, depth: int) -> Any:
        if _is_array(value):
            return tensors[key]
        if not _is_container(value) or id(value) in on_path or depth > MAX_DEPTH or not value:
            return value
        on_path.add(id(value))
        try:
            if isinstance(value, Mapping):
                out = _empty_like(value)
                for k, v in mapping_items(value):
                    child = join_key(key, str(k))
                    if child in structure:
                        name = structure[child]
                        out[k if name == str(k) else name] = visit(v, child, depth + 1)
                return out
            items = [
                visit(v, join_key(key, str(i)), depth + 1)
                for i, v in enumerate(value)
                if join_key(key, str(i)) in structure
            ]
            return type(value)(items) if type(value) in (list, tuple) else items
        finally:
            on_path.discard(id(value))

    return visit(obj, key, 0)
