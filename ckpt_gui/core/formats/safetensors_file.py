"""safetensors files read through their header; tensor data is a zero-copy view of a private,
read-only-in-effect memory map of the file (copy-on-write, so the source is never written).

The header is parsed and checked here (not just trusted to ``safe_open``) so that a lying header
gives a clear error before anything is allocated or read.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ckpt_gui.core.errors import CorruptError
from ckpt_gui.core.formats.detect import MAX_SAFETENSORS_HEADER
from ckpt_gui.core.tree import TensorInfo, dtype_name

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "C64": torch.complex64,
}


@dataclass
class Entry:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # absolute offset in the file
    end: int


def read_header(path: Path) -> tuple[list[Entry], dict[str, str]]:
    """The tensor entries (in file order) and the ``__metadata__`` of a safetensors file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CorruptError(f"{path}: truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_SAFETENSORS_HEADER or n > size - 8:
            raise CorruptError(
                f"{path}: safetensors header claims {n} bytes but the file has {size - 8}"
            )
        text = f.read(n)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise CorruptError(f"{path}: damaged safetensors header (not valid JSON)") from None
    if not isinstance(header, dict):
        raise CorruptError(f"{path}: damaged safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + n, size - 8 - n
    entries = [_entry(path, name, spec, data_start, data_size) for name, spec in header.items()]
    _check_no_overlap(path, entries)
    return entries, metadata if isinstance(metadata, dict) else {}


def _entry(path: Path, name: str, spec: Any, start: int, data_size: int) -> Entry:
    try:
        dtype = DTYPES[spec["dtype"]]
        shape = tuple(int(s) for s in spec["shape"])
        begin, end = (int(x) for x in spec["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise CorruptError(f"{path}: damaged safetensors header entry for {name!r}") from None
    numel = 1
    for s in shape:
        if s < 0:
            raise CorruptError(f"{path}: {name!r} has a negative dimension")
        numel *= s
    if not 0 <= begin <= end <= data_size:
        raise CorruptError(f"{path}: {name!r} points outside the file (truncated?)")
    if end - begin != numel * dtype.itemsize:
        raise CorruptError(
            f"{path}: {name!r} declares shape {list(shape)} but holds {end - begin} bytes"
        )
    return Entry(name, dtype, shape, start + begin, start + end)


def _check_no_overlap(path: Path, entries: list[Entry]) -> None:
    ordered = sorted((e for e in entries if e.end > e.begin), key=lambda e: e.begin)
    for a, b in zip(ordered, ordered[1:]):
        if b.begin < a.end:
            raise CorruptError(f"{path}: tensors {a.name!r} and {b.name!r} overlap in the file")


class MappedFile:
    """A copy-on-write memory map of a whole file; views into it cost nothing until read."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None

    def tensor(
        self, dtype: torch.dtype, shape: tuple[int, ...], begin: int, end: int
    ) -> torch.Tensor:
        if end == begin or self._map is None:
            return torch.empty(shape, dtype=dtype)
        flat = torch.frombuffer(self._map, dtype=torch.uint8, count=end - begin, offset=begin)
        if begin % dtype.itemsize:
            flat = flat.clone()  # misaligned: a copy is the only safe way to reinterpret it
        return flat.view(dtype).view(shape)

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # tensors still view it; the map goes away with the last of them
            self._map = None


def tensor_infos(path: Path, entries: list[Entry], mapped: MappedFile) -> dict[str, TensorInfo]:
    infos = {}
    for e in entries:
        stride = _contiguous_stride(e.shape)
        infos[e.name] = TensorInfo(
            dtype=dtype_name(e.dtype),
            shape=e.shape,
            stride=stride,
            device="cpu",
            loader=partial(mapped.tensor, e.dtype, e.shape, e.begin, e.end),
        )
    return infos


def _contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(stride))
