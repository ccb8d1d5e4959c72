"""safetensors files read through their header; tensor data is a zero-copy view of a private,
read-only-in-effect memory map of the file (copy-on-write, so the source is never written).

The header is parsed and checked here (not just trusted to ``safe_open``) so that a lying header
gives a clear error before anything is allocated or read.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ckpt_gui.core.errors import CorruptError, UnsupportedFormatError
from ckpt_gui.core.formats.detect import MAX_SAFETENSORS_HEADER
from ckpt_gui.core.memory import gc_paused
from ckpt_gui.core.safety.filecheck import open_regular_file, printable
from ckpt_gui.core.tree import ITEMSIZES, TensorInfo, dtype_from_name, itemsize

if TYPE_CHECKING:
    import torch

# Every safetensors dtype code and the torch dtype it holds, by name: headers are read without
# importing torch (it comes with the first tensor loaded).
DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",  # MX block scales (gpt-oss *_scales)
    "F4": "float4_e2m1fn_x2",  # two values a byte (gpt-oss *_blocks); see PACKED
    "C64": "complex64",
}
# The safetensors code of every torch dtype it can hold (the export writes these).
CODES = {name: code for code, name in DTYPES.items()}
# Dtypes packing several values into one torch element: the header counts values, torch
# counts elements, so the last dimension differs by this factor.
PACKED = {"float4_e2m1fn_x2": 2}
# code -> (dtype name, bytes per element) of the dtypes read without unpacking
_PLAIN_DTYPES = {code: (d, ITEMSIZES[d]) for code, d in DTYPES.items() if d not in PACKED}
MAX_DIM = 2**62


@dataclass
class Entry:
    name: str
    dtype: str  # the torch dtype's name
    shape: tuple[int, ...]
    begin: int  # absolute offset in the file
    end: int


def read_header(path: Path) -> tuple[list[Entry], dict[str, str]]:
    """The tensor entries (in file order) and the ``__metadata__`` of a safetensors file."""
    f, size = open_regular_file(path)  # a FIFO swapped in after detection cannot block
    with f:
        raw = f.read(8)
        n = header_length(path, raw, size)
        text = f.read(n)
    return parse_header(path, text, n, size)


def header_length(path: Path | str, first: bytes, size: int) -> int:
    """The header's length from the file's first 8 bytes, checked against its size."""
    if len(first) < 8:
        raise CorruptError(f"{path}: truncated safetensors file (no header)")
    (n,) = struct.unpack("<Q", first[:8])
    if n > MAX_SAFETENSORS_HEADER or n > size - 8:
        raise CorruptError(
            f"{path}: safetensors header claims {n} bytes but the file has {size - 8}"
        )
    return int(n)


def parse_header(
    path: Path | str, text: bytes, n: int, size: int
) -> tuple[list[Entry], dict[str, str]]:
    """The entries and metadata of the header ``text`` (``n`` bytes after the first 8) of a
    file of ``size`` bytes; ``path`` names it in errors (a URL for a remote file)."""
    try:
        with gc_paused():  # a header of 500,000 entries is a million small containers
            header = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise CorruptError(f"{path}: damaged safetensors header (not valid JSON)") from None
    except RecursionError:
        raise CorruptError(f"{path}: damaged safetensors header (nested too deeply)") from None
    if not isinstance(header, dict):
        raise CorruptError(f"{path}: damaged safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + n, size - 8 - n
    entries = _entries(path, header, data_start, data_size)
    _check_no_overlap(path, entries)
    return entries, metadata if isinstance(metadata, dict) else {}


def _entries(path: Path | str, header: dict[str, Any], start: int, data_size: int) -> list[Entry]:
    """Every entry of the header, checked. This loop runs once per tensor (half a million in a
    hostile file), so the plain case is checked inline; anything else (a packed dtype, or an
    entry that is wrong in any way) goes through ``_entry``, which accepts it or says why not."""
    entries: list[Entry] = []
    append = entries.append
    plain = _PLAIN_DTYPES
    for name, spec in header.items():
        if type(spec) is dict:
            code, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
            known = plain.get(code) if type(code) is str else None
            if known is not None and type(shape) is list and type(offsets) is list:
                dtype, size = known
                numel = 1
                for n in shape:
                    if type(n) is not int or not 0 <= n < MAX_DIM:
                        break
                    numel *= n
                else:
                    if len(offsets) == 2:
                        begin, end = offsets
                        if (
                            type(begin) is int
                            and type(end) is int
                            and 0 <= begin <= end <= data_size
                            and end - begin == numel * size
                        ):
                            append(Entry(name, dtype, tuple(shape), start + begin, start + end))
                            continue
        append(_entry(path, name, spec, start, data_size))
    return entries


def _entry(path: Path | str, name: str, spec: Any, start: int, data_size: int) -> Entry:
    # Runs once per tensor, so the common case is checked with as few calls as possible; the
    # name is made printable only for an error message.
    if not (
        isinstance(spec, dict) and "dtype" in spec and "shape" in spec and "data_offsets" in spec
    ):
        raise CorruptError(f"{path}: damaged safetensors header entry for {printable(name, 80)!r}")
    code, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if type(code) is not str:
        raise CorruptError(
            f"{path}: damaged safetensors header entry for {printable(name, 80)!r} (dtype)"
        )
    dtype = DTYPES.get(code)
    if dtype is None:
        raise UnsupportedFormatError(
            f"{path}: {printable(name, 80)!r} has unsupported dtype {printable(code, 40)!r}"
        )
    if not _ints(shape, MAX_DIM) or not _ints(offsets, 2**63) or len(offsets) != 2:
        raise CorruptError(
            f"{path}: {printable(name, 80)!r} has a shape or data offsets that are not whole "
            "numbers in range"
        )
    shape = tuple(shape)
    begin, end = offsets
    numel = 1
    for s in shape:
        numel *= s
    if dtype in PACKED:
        if not shape or shape[-1] % PACKED[dtype]:
            raise CorruptError(
                f"{path}: {printable(name, 80)!r} packs {code} values into an odd last dimension"
            )
        shape = (*shape[:-1], shape[-1] // PACKED[dtype])
        numel //= PACKED[dtype]
    if not 0 <= begin <= end <= data_size:
        raise CorruptError(f"{path}: {name!r} points outside the file (truncated?)")
    if end - begin != numel * itemsize(dtype):
        raise CorruptError(
            f"{path}: {name!r} declares shape {list(shape)} but holds {end - begin} bytes"
        )
    return Entry(name, dtype, shape, start + begin, start + end)


def _ints(values: Any, limit: int) -> bool:
    """A JSON list of whole numbers in ``[0, limit)`` (not floats: 1e400 parses as inf)."""
    if type(values) is not list:
        return False
    for v in values:  # a plain loop: most lists hold one to four numbers
        if type(v) is not int or not 0 <= v < limit:
            return False
    return True


def _check_no_overlap(path: Path | str, entries: list[Entry]) -> None:
    ordered = [e for e in entries if e.end > e.begin]
    if any(a.begin > b.begin for a, b in zip(ordered, ordered[1:])):  # usually in file order
        ordered.sort(key=lambda e: e.begin)
    for a, b in zip(ordered, ordered[1:]):
        if b.begin < a.end:
            raise CorruptError(f"{path}: tensors {a.name!r} and {b.name!r} overlap in the file")


class TensorSource(Protocol):
    """Where a safetensors file's tensors are read from: a ``MappedFile``, or a remote file."""

    def tensor(self, name: str, shape: tuple[int, ...], begin: int, end: int) -> torch.Tensor: ...

    def byte_view(self, begin: int, end: int) -> torch.Tensor: ...


class MappedFile:
    """A copy-on-write memory map of a whole file; views into it cost nothing until read."""

    def __init__(self, path: Path) -> None:
        f, size = open_regular_file(path)
        with f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None

    def tensor(self, name: str, shape: tuple[int, ...], begin: int, end: int) -> torch.Tensor:
        import torch

        dtype = dtype_from_name(name)
        if end == begin or self._map is None:
            return torch.empty(shape, dtype=dtype)
        flat = torch.frombuffer(self._map, dtype=torch.uint8, count=end - begin, offset=begin)
        if begin % dtype.itemsize:
            flat = flat.clone()  # misaligned: a copy is the only safe way to reinterpret it
        return flat.view(dtype).view(shape)

    def byte_view(self, begin: int, end: int) -> torch.Tensor:
        """Bytes ``[begin, end)`` of the file as a uint8 tensor viewing the map (nothing is
        read until used): the bytes of many tensors at once, for statistics of tiny tensors."""
        import torch

        if end == begin or self._map is None:
            return torch.empty(0, dtype=torch.uint8)
        return torch.frombuffer(self._map, dtype=torch.uint8, count=end - begin, offset=begin)

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # tensors still view it; the map goes away with the last of them
            self._map = None


def tensor_infos(
    path: Path | str, entries: list[Entry], mapped: TensorSource
) -> dict[str, TensorInfo]:
    infos = {}
    # Files with many tensors repeat a few shapes and dtypes: their strides and names are
    # computed once (tuples and strings are immutable, so the infos can share them).
    strides: dict[tuple[int, ...], tuple[int, ...]] = {}
    load = mapped.tensor
    for e in entries:
        stride = strides.get(e.shape)
        if stride is None:
            stride = strides[e.shape] = _contiguous_stride(e.shape)
        infos[e.name] = TensorInfo(
            dtype=e.dtype,
            shape=e.shape,
            stride=stride,
            device="cpu",
            loader=partial(load, e.dtype, e.shape, e.begin, e.end),
            bytes_at=(mapped, e.begin),
        )
    return infos


def _contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(stride))
