"""Tensors rebuilt from a checkpoint's raw storage records, every size checked first.

A storage is a record of the zip archive (``data/<key>``) or a stretch of a legacy file after its
pickles. A tensor is a zero-copy view of it (dtype, shape, stride, offset), made only after the
view is proven to fit inside the bytes the file really holds: a shape larger than its storage is
refused, a stride-0 tensor of 10**12 elements over one element is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ckpt_gui.core.errors import UnsupportedFormatError
from ckpt_gui.core.safety import filecheck
from ckpt_gui.core.safety.unpickler import corrupt

MAX_DIMS = 64
MAX_INT = 2**62
STORAGE_DTYPES = {name: d for d, name in torch.storage._dtype_to_storage_type_map().items()}
STORAGE_DTYPES.update(UntypedStorage=torch.uint8, TypedStorage=torch.uint8)


@dataclass(frozen=True, eq=False)
class StorageRef:
    """A storage the pickle refers to: its archive key, dtype, saved device and element count.
    Tensors sharing one storage (tied weights) share one ``StorageRef``."""

    key: str
    dtype: torch.dtype
    location: str  # the device it was saved from: "cpu", "cuda:0", ...
    numel: int
    view_of: tuple[StorageRef, int] | None = None  # legacy storage views: (root, element offset)


@dataclass(frozen=True)
class StorageType:
    """Stands for ``torch.FloatStorage`` and friends: only their dtype matters."""

    dtype: torch.dtype


def text(value: Any, label: str) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, str):
        return value
    raise corrupt(label, "a storage reference with a damaged name")


def ints(values: Any, label: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > MAX_DIMS:
        raise corrupt(label, "a tensor with a damaged shape")
    if not all(type(v) is int and 0 <= v < MAX_INT for v in values):
        raise corrupt(label, "a tensor with a negative or huge size, stride or offset")
    return tuple(values)


class TensorBuilder:
    """Storage bytes and tensors of one file. ``base`` is the whole file as a uint8 tensor over
    a private memory map; ``archive`` is set for zip files, ``extents`` for legacy ones."""

    def __init__(self, label: str, base: torch.Tensor | None) -> None:
        self.label, self.base = label, base
        self.archive: filecheck.TorchZip | None = None
        self.storages: dict[str, StorageRef] = {}
        self.extents: dict[str, tuple[int, int]] = {}  # legacy: key -> (file offset, nbytes)
        self.raw: dict[str, torch.Tensor] = {}
        # id(tensor) -> (tensor, its storage, its offset in that storage in elements)
        self.sources: dict[int, tuple[torch.Tensor, StorageRef, int]] = {}
        self.defer = False  # legacy first pass: the storages are not located yet

    def storage(self, pid: tuple[Any, ...]) -> StorageRef:
        """The storage of a persistent id: ``("storage", type, key, location, numel)``, plus a
        view ``(view key, offset, size)`` in legacy files."""
        if len(pid) not in (5, 6):
            raise corrupt(self.label, "a damaged reference to tensor data")
        storage_type, key, location, numel = pid[1:5]
        key, location = text(key, self.label), text(location, self.label)
        if not isinstance(storage_type, StorageType):
            raise corrupt(self.label, f"storage {key!r} has no storage type")
        if type(numel) is not int or not 0 <= numel < MAX_INT:
            raise corrupt(self.label, f"storage {key!r} declares a bad size")
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = StorageRef(key, storage_type.dtype, location, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return ref
        if type(view) is not tuple or len(view) != 3:
            raise corrupt(self.label, f"storage {key!r} has a damaged view")
        view_key, offset, size = text(view[0], self.label), view[1], view[2]
        if view_key not in self.storages:
            if not all(type(v) is int and 0 <= v < MAX_INT for v in (offset, size)):
                raise corrupt(self.label, f"storage view {view_key!r} is damaged")
            self.storages[view_key] = StorageRef(
                view_key, ref.dtype, ref.location, size, view_of=(ref, offset)
            )
        return self.storages[view_key]

    def make_tensor(
        self, storage: StorageRef, dtype: torch.dtype | None, offset: Any, size: Any, stride: Any
    ) -> torch.Tensor:
        dtype = dtype or storage.dtype
        size, stride = ints(size, self.label), ints(stride, self.label)
        (offset,) = ints((offset,), self.label)
        if len(size) != len(stride):
            raise corrupt(self.label, f"a tensor of storage {storage.key!r} has a bad shape")
        if self.defer:
            return torch.empty(0)
        raw = self.storage_bytes(storage)
        available = raw.numel() // dtype.itemsize
        extent = 0 if 0 in size else 1 + sum((n - 1) * s for n, s in zip(size, stride))
        if offset + extent > available:
            raise corrupt(
                self.label,
                f"a tensor of shape {list(size)} at offset {offset} needs {offset + extent:,} "
                f"elements but its storage {storage.key!r} holds {available:,}",
            )
        if raw.storage_offset() % dtype.itemsize:  # unaligned (legacy files): copy it once
            raw = self.raw[storage.key] = raw.clone()
        try:
            typed = raw[: available * dtype.itemsize].view(dtype)
            tensor = typed.as_strided(size, stride, typed.storage_offset() + offset)
        except RuntimeError as exc:
            message = f"{self.label}: cannot view {dtype} data ({exc})"
            raise UnsupportedFormatError(message) from None
        self.register(tensor, storage, offset)
        return tensor

    def register(self, tensor: torch.Tensor, ref: StorageRef | None, offset: int = 0) -> None:
        if ref is not None:
            self.sources[id(tensor)] = (tensor, ref, offset)

    def storage_bytes(self, ref: StorageRef) -> torch.Tensor:
        """The bytes of a storage as a uint8 tensor, checked against what the file holds."""
        if ref.key in self.raw:
            return self.raw[ref.key]
        nbytes = ref.numel * ref.dtype.itemsize
        if ref.view_of is not None:
            root, offset = ref.view_of
            root_raw = self.storage_bytes(root)
            start = offset * root.dtype.itemsize
            if start + nbytes > root_raw.numel():
                raise corrupt(self.label, f"storage view {ref.key!r} runs past its storage")
            raw = root_raw[start : start + nbytes]
        elif self.archive is not None:
            raw = self._zip_bytes(ref, nbytes)
        elif ref.key in self.extents and self.base is not None:
            start, held = self.extents[ref.key]
            if nbytes > held:
                raise corrupt(self.label, f"storage {ref.key!r} is shorter than declared")
            raw = self.base[start : start + nbytes]
        else:
            raise corrupt(self.label, f"storage {ref.key!r} has no data in the file")
        self.raw[ref.key] = raw
        return raw

    def _zip_bytes(self, ref: StorageRef, nbytes: int) -> torch.Tensor:
        archive = self.archive
        assert archive is not None and self.base is not None
        name = archive.full_name(f"data/{ref.key}")
        record = archive.records.get(name)
        if record is None:
            raise corrupt(self.label, f"storage {ref.key!r} has no record {name!r}")
        if nbytes > record.size:
            raise corrupt(
                self.label,
                f"storage {ref.key!r} declares {nbytes:,} bytes but its record "
                f"holds {record.size:,}",
            )
        if record.compressed:  # inflated into memory, within the zip bomb limits
            data = archive.read(name, filecheck.MAX_INFLATED_BYTES)[:nbytes]
            if not data:
                return torch.empty(0, dtype=torch.uint8)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)
        start = archive.data_offset(name)
        return self.base[start : start + nbytes]
