"""Writers that stream tensors from the memory-mapped source into an open file, yielding after
every tensor or chunk so an export can report progress and be cancelled.

safetensors is written by hand (length, JSON header, raw little-endian bytes, chunk by chunk,
cast chunk by chunk) because ``safetensors.torch.save_file`` builds the whole file in memory.
pt files go through torch's own pickler, and their zip archive is written here
(``torch_zip``). Bytes that lie unchanged in the source file (no cast, whole and contiguous)
are copied file to file by the kernel wherever the kernel says where they lie (``spans``).
"""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
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
from ckpt_gui.core.export.byte_ranges import Ledger
from ckpt_gui.core.export.casting import CastEffect, cast, cast_effect
from ckpt_gui.core.export.options import ExportError
from ckpt_gui.core.export.sink import Sink
from ckpt_gui.core.export.spans import FileMaps, Files, advise_sequential
from ckpt_gui.core.export.torch_zip import MIN_COPY, TorchZip, file_identity
from ckpt_gui.core.tree import join_key

CHUNK_ELEMENTS = 4 << 20  # 16 MB of float32: small next to the memory goal, large for I/O
CHUNK_BYTES = 16 << 20
COPY_STEP = 64 << 20  # a kernel copy between two progress and cancel points

Progress = Iterator[tuple[str, int]]  # (key, bytes just written)


@dataclass
class Streamed:
    """A tensor written from its values in row-major order, chunk by chunk, never whole (a
    quantized weight dequantized a row block at a time): what a loader may give instead of a
    tensor. ``effect`` counts what the cast to the written dtype does to its finite values,
    measured on the chunks as they pass (there is no checking pass before the write)."""

    chunks: Iterable[torch.Tensor]
    effect: CastEffect

    def cast_chunks(self, dtype: torch.dtype, on_overflow: str) -> Iterator[torch.Tensor]:
        for chunk in self.chunks:
            self.effect.add(cast_effect(chunk.reshape(-1), dtype))
            yield cast(chunk, dtype, on_overflow)


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
    items: list[tuple[str, Callable[[], torch.Tensor | Streamed], torch.dtype]],
    cancel: CancelCheck | None = None,
    on_overflow: str = "inf",
    ledger: Ledger | None = None,
) -> Progress:
    """Write ``header`` (from ``plan.safetensors_header``) then each ``(name, load, dtype)``'s
    bytes in the header's order: copied by the kernel where they lie unchanged in a file,
    else cast chunk by chunk (``casting.cast``); a ``Streamed`` load, chunk by chunk as it
    comes. ``ledger``: tensor bytes ``head_start`` already copied to the file (passed over
    where they lie at their place)."""
    _little_endian()
    sink = Sink(file)
    sink.write(header)
    maps = FileMaps()
    with Files() as files:
        for name, load, dtype in items:
            yield from _write_tensor(
                sink, maps, files, name, load, dtype, cancel, on_overflow, ledger
            )
    sink.flush()
    sink.truncate()  # placed bytes past the end (a plan that kept fewer) go


def _write_tensor(
    sink: Sink,
    maps: FileMaps,
    files: Files,
    name: str,
    load: Callable[[], torch.Tensor | Streamed],
    dtype: torch.dtype,
    cancel: CancelCheck | None,
    on_overflow: str,
    ledger: Ledger | None = None,
) -> Progress:
    """One tensor's bytes. A function of its own so that nothing of the tensor (it, its chunks)
    is still referenced once written: a merge computes the next weight in its memory then."""
    tensor = load()
    if isinstance(tensor, Streamed):
        for data in tensor.cast_chunks(dtype, on_overflow):
            check_cancel(cancel)
            sink.write(raw_bytes(data).numpy().data)
            yield name, data.numel() * data.element_size()
        return
    found = _in_file(maps, files, tensor) if tensor.dtype == dtype else None
    if found is not None:
        fd, offset = found
        nbytes = tensor.numel() * tensor.element_size()
        placed = None
        if ledger is not None:
            placed = ledger.find(sink.position, file_identity(fd), offset, nbytes, "")
        if ledger is not None and placed is not None and placed.data_at == sink.position:
            sink.skip(nbytes)
            ledger.passed.append(placed)
            yield name, nbytes
            return
        for done in range(0, nbytes, COPY_STEP):
            check_cancel(cancel)
            n = min(COPY_STEP, nbytes - done)
            sink.copy(fd, offset + done, n)
            yield name, n
        return
    advise_sequential(tensor)
    for chunk in row_pieces(tensor, CHUNK_ELEMENTS):
        check_cancel(cancel)
        data = cast(chunk, dtype, on_overflow)
        sink.write(raw_bytes(data).numpy().data)
        yield name, data.numel() * data.element_size()
    if tensor.numel() == 0:
        yield name, 0


def _in_file(maps: FileMaps, files: Files, tensor: torch.Tensor) -> tuple[int, int] | None:
    """``(descriptor, offset)`` of a tensor's bytes where they lie unchanged in a file and are
    worth a kernel copy (tiny tensors are gathered from memory into one write instead)."""
    if tensor.numel() * tensor.element_size() < MIN_COPY:
        return None
    return files.find(maps, tensor)


class _Recorder:
    """Stands in for torch's zip writer while torch pickles the object, keeping the records
    (the pickle, then one per storage) so they can be written one at a time."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Any, int]] = []

    def write_record(self, name: str, data: Any, nbytes: int) -> None:
        self.records.append((name, data, nbytes))


def iter_write_pt(
    file: BinaryIO,
    obj: Any,
    cancel: CancelCheck | None = None,
    deferred: Mapping[int, Callable[[], Iterator[torch.Tensor]]] | None = None,
    ledger: Ledger | None = None,
) -> Progress:
    """What ``torch.save(obj, file)`` writes, yielding after each storage or step of one.
    Storages whose bytes lie unchanged in a file are copied by the kernel. ``deferred``: by
    the address of a placeholder's storage (allocated, never touched, so it holds no memory),
    the chunks its bytes are written from, in order, as its record is reached. ``ledger``:
    storage records ``head_start`` already copied to the file from its start (passed over
    where they lie at their place; the ledger lists those).

    The storages come first, then the pickle and the small records (torch reads records by
    name, whatever their order): a storage's place in the file then depends only on the
    storages before it, which is what lets ``head_start`` copy them before the pickle exists."""
    recorder = _Recorder()
    # torch's own pickling (persistent ids, storage keys, format records), so the result loads
    # with plain torch.load(weights_only=True) exactly as a torch.save file does.
    torch.serialization._save(obj, recorder, pickle, torch.serialization.DEFAULT_PROTOCOL, False)
    storages = [r for r in recorder.records if isinstance(r[1], torch.UntypedStorage)]
    others = [r for r in recorder.records if not isinstance(r[1], torch.UntypedStorage)]
    archive = TorchZip(Sink(file), ledger)
    maps = FileMaps()
    with Files() as files:
        for name, data, nbytes in [*storages, *others]:
            if not isinstance(data, torch.UntypedStorage):
                archive.write(name, data)
                continue
            stream = deferred.get(data.data_ptr()) if deferred and nbytes else None
            memory = torch.empty(0, dtype=torch.uint8).set_(data)
            found = _in_file(maps, files, memory) if stream is None else None
            if stream is not None:
                pieces = (raw_bytes(chunk).numpy().data for chunk in stream())
                steps = archive.write_pieces(name, nbytes, pieces)
            elif found is not None:
                steps = archive.copy(name, found[0], found[1], nbytes, COPY_STEP)
            else:
                steps = archive.write_steps(name, memory.numpy().data, CHUNK_BYTES)
            for n in steps:
                check_cancel(cancel)
                yield name, n
            if nbytes == 0:
                yield name, 0
        archive.finish()


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
