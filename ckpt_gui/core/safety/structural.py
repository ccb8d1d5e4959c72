"""A structural view of checkpoints that ``torch.load(weights_only=True)`` refuses.

Nothing from the file runs: the pickle is read by ``unpickler.SafeUnpickler``, where every global
becomes an inert stand-in, and tensors are rebuilt here from the archive's raw records (dtype,
shape, stride, offset), every size checked against the record before anything is read. Tensors
are zero-copy views of a private (copy-on-write) memory map of the file.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import torch

from ckpt_gui.core.errors import CorruptError, NotACheckpointError, UnsupportedFormatError
from ckpt_gui.core.safety import filecheck, numpy_values
from ckpt_gui.core.safety import torchscript as torchscript_modules
from ckpt_gui.core.safety.scan import LEGACY_MAGIC
from ckpt_gui.core.safety.standins import (
    ModuleNode,
    StandIn,
    StandInObject,
    check_nesting,
    is_module,
    module_state_dict,
    module_tree,
)
from ckpt_gui.core.safety.tensors import (
    STORAGE_DTYPES,
    StorageRef,
    StorageType,
    TensorBuilder,
    text,
)
from ckpt_gui.core.safety.unpickler import Resolver, corrupt, unpickle
from ckpt_gui.core.tree import dtypes

__all__ = [
    "ModuleNode",
    "StandIn",
    "StandInObject",
    "StorageRef",
    "StructuralResult",
    "check_nesting",
    "is_module",
    "module_state_dict",
    "module_tree",
    "structural_load",
    "structural_loads",
]


@dataclass
class StructuralResult:
    """What ``structural_load`` returns. Tensors view a private (copy-on-write) map of the file:
    writing to them never changes the file, and the map lives as long as any tensor does."""

    obj: Any
    format: str  # "torch-zip" | "torchscript" | "torch-legacy" | "pickle"
    globals: list[tuple[str, str]]  # every (module, name) the pickle named, first-seen order
    _sources: dict[int, tuple[torch.Tensor, StorageRef, int]] = field(
        default_factory=dict, repr=False
    )
    _map: Any = field(default=None, repr=False)

    def storage_of(self, tensor: torch.Tensor) -> StorageRef | None:
        entry = self._sources.get(id(tensor))
        return entry[1] if entry is not None and entry[0] is tensor else None

    def storage_offset(self, tensor: torch.Tensor) -> int | None:
        """The tensor's offset in its storage, in elements, as torch would report it (our
        tensors view the whole file, so their own ``storage_offset()`` is a file position)."""
        entry = self._sources.get(id(tensor))
        return entry[2] if entry is not None and entry[0] is tensor else None

    def location(self, tensor: torch.Tensor) -> str | None:
        """The device a tensor was saved from ("cuda:0"), or None if it is not from the file."""
        ref = self.storage_of(tensor)
        return ref.location if ref is not None else None

    def close(self) -> None:
        """Drop our references. The map itself is unmapped when the last tensor goes: closing it
        under live tensors would crash the process on their next read."""
        self.obj, self._map = None, None
        self._sources.clear()

    def __enter__(self) -> StructuralResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Loader(Resolver, TensorBuilder):
    """Per-file state shared by its pickles: what globals resolve to, storages, tensors."""

    def __init__(
        self,
        label: str,
        fmt: str,
        base: torch.Tensor | None,
        progress: Callable[[], None] | None = None,
    ) -> None:
        Resolver.__init__(self, label, progress)
        TensorBuilder.__init__(self, label, base)
        self.format = fmt
        self.nested = 0  # how deep inside _load_from_bytes files this loader reads
        allowed: dict[tuple[str, str], Any] = {
            ("torch", "Size"): _size,
            ("torch._utils", "_rebuild_tensor"): self.rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self.rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): self.rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self.rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): self.rebuild_from_type_v2,
            ("torch.storage", "_load_from_bytes"): self.load_from_bytes,
        }
        allowed.update({("torch", name): dtype for name, dtype in dtypes().items()})
        allowed.update(numpy_values.allowed_globals())
        for name, dtype in STORAGE_DTYPES.items():
            for module in ("torch", "torch.cuda", "torch.storage"):
                allowed[(module, name)] = StorageType(dtype)
        self.allow(allowed)

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is not tuple or not pid or not isinstance(pid[0], (str, bytes)):
            raise corrupt(self.label, "a damaged reference to tensor data")
        kind = text(pid[0], self.label)
        if kind == "module" and len(pid) >= 2:  # legacy files name the module class this way
            return pid[1]
        if kind != "storage" or self.format == "pickle":
            raise corrupt(self.label, f"an unknown reference to external data ({kind[:40]!r})")
        return self.storage(pid)

    def wrap_tensor(
        self, storage: Any, dtype: torch.dtype | None, offset: Any, size: Any, stride: Any
    ) -> Any:
        if not isinstance(storage, StorageRef):  # no storage we could read: record the call
            return StandIn("torch._utils", "_rebuild_tensor")(storage, offset, size, stride, dtype)
        return self.make_tensor(storage, dtype, offset, size, stride)

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
        return self.wrap_tensor(storage, None, offset, size, stride)

    def rebuild_tensor_v2(
        self,
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> torch.Tensor:
        return self.wrap_tensor(storage, None, offset, size, stride)

    def rebuild_tensor_v3(
        self,
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any,
        backward_hooks: Any,
        dtype: Any,
        metadata: Any = None,
    ) -> torch.Tensor:
        if not isinstance(dtype, torch.dtype):
            raise corrupt(self.label, "a tensor with an unknown dtype")
        return self.wrap_tensor(storage, dtype, offset, size, stride)

    def rebuild_parameter(
        self, data: Any, requires_grad: Any, backward_hooks: Any, state: Any = None
    ) -> Any:
        if not isinstance(data, torch.Tensor):  # no storage we could read: record the call
            return StandIn("torch._utils", "_rebuild_parameter")(data, requires_grad)
        if self.defer:
            return data
        grad = requires_grad is True and (data.is_floating_point() or data.is_complex())
        param = torch.nn.Parameter(data, requires_grad=grad)
        _, ref, offset = self.sources.get(id(data), (None, None, 0))
        self.register(param, ref, offset)
        return param

    def rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        result = self.call(func, args)
        if isinstance(new_type, StandIn) and new_type.qualname == "torch.nn.parameter.Parameter":
            return self.rebuild_parameter(result, False, None)
        return result

    def load_from_bytes(self, data: Any) -> Any:
        """``pickle.dumps(tensor)`` writes each storage as a torch file inside the pickle
        (``torch.storage._load_from_bytes``); read that file the same inert way."""
        if type(data) is not bytes or not data or self.nested >= 2:
            return StandIn("torch.storage", "_load_from_bytes")(data)
        base = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        inner = _Loader(f"{self.label} (nested file)", "pickle", base, self.progress)
        inner.nested = self.nested + 1
        load = _load_zip if data[:4] == b"PK\x03\x04" else _load_sequence
        obj = load(io.BytesIO(data), len(data), inner).obj
        self.globals.extend(g for g in inner.globals if g not in self.globals)
        if not isinstance(obj, StorageRef):
            return obj
        key = f"nested-{len(self.raw)}/{obj.key}"
        self.raw[key] = inner.storage_bytes(obj)
        return StorageRef(key, obj.dtype, obj.location, obj.numel)


def _size(values: Any = ()) -> tuple[int, ...]:
    """``torch.Size(...)`` read as a plain tuple of ints, as torch.Size itself insists: any
    other content would build nested tuples no TUPLE opcode (and no depth check) ever saw."""
    if type(values) not in (tuple, list) or not all(type(v) is int for v in values):
        raise TypeError("torch.Size needs a sequence of ints")
    return tuple(values)


def structural_load(
    path: str | os.PathLike[str], progress: Callable[[], None] | None = None
) -> StructuralResult:
    """Read a torch zip, TorchScript archive, legacy torch file or plain pickle without running
    anything from it. ``progress`` is called now and then while unpickling; it may raise
    ``Cancelled`` to stop."""
    label = str(path)
    fp, size, head, kind = filecheck.open_sniffed(path, label)
    with fp:
        if kind == "safetensors":
            raise UnsupportedFormatError(f"{label} is a safetensors file: it holds no pickle")
        if kind == "tar":
            raise UnsupportedFormatError(
                f"{label} uses the tar format of PyTorch before 1.0, which ckpt-gui cannot read"
            )
        file_map = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_COPY)  # private: never writes
        base = torch.frombuffer(file_map, dtype=torch.uint8)  # holds the map while tensors live
        if kind == "zip":
            result = _load_zip(fp, size, _Loader(label, "torch-zip", base, progress))
        else:
            try:
                result = _load_sequence(fp, size, _Loader(label, "pickle", base, progress))
            except CorruptError:
                if kind == "pickle":
                    raise
                what = filecheck.describe_content(head)
                raise NotACheckpointError(
                    f"{label} is not a checkpoint: it looks like {what}"
                ) from None
    result._map = file_map
    return result


def structural_loads(data: bytes, label: str = "pickle") -> StructuralResult:
    """A plain pickle held in memory (it can have no tensor data), read the same way."""
    loader = _Loader(label, "pickle", None)
    return _result(loader, unpickle(io.BytesIO(data), loader, "the pickle"))


def _result(loader: _Loader, obj: Any) -> StructuralResult:
    check_nesting(obj, loader.label)
    return StructuralResult(obj, loader.format, loader.globals, loader.sources)


def _load_zip(fp: BinaryIO, size: int, loader: _Loader) -> StructuralResult:
    archive = loader.archive = filecheck.open_zip(fp, size, loader.label)
    if archive.byteorder() != "little":
        raise UnsupportedFormatError(f"{loader.label} was saved on a big-endian machine")
    torchscript = any(n.startswith(archive.full_name("code/")) for n in archive.records)
    loader.format = "torchscript" if torchscript else "torch-zip"
    data = archive.read(archive.full_name("data.pkl"))
    obj = unpickle(io.BytesIO(data), loader, "data.pkl")
    if torchscript:  # its code declares which attributes are parameters and buffers
        torchscript_modules.as_modules(obj, torchscript_modules.module_table(archive))
    return _result(loader, obj)


def _load_sequence(fp: BinaryIO, size: int, loader: _Loader) -> StructuralResult:
    """A plain pickle, or a legacy torch file: magic, protocol, sys_info, the object, the
    storage keys, then each storage as an 8-byte element count and its raw bytes."""
    label, base = loader.label, loader.base
    assert base is not None

    def next_pickle(where: str) -> Any:
        reader = filecheck.BoundedReader(fp, size, filecheck.MAX_PICKLE_BYTES, label)
        return unpickle(reader, loader, where)

    fp.seek(0)
    first = next_pickle("the pickle")
    if not (type(first) is int and first == LEGACY_MAGIC):
        return _result(loader, first)
    loader.format = "torch-legacy"
    version = next_pickle("legacy pickle #2")
    if not (type(version) is int and version == 1001):
        raise UnsupportedFormatError(f"{label}: unknown legacy format version")
    sys_info = next_pickle("legacy pickle #3")
    if type(sys_info) is dict and sys_info.get("little_endian") is False:
        raise UnsupportedFormatError(f"{label} was saved on a big-endian machine")
    start = fp.tell()
    loader.defer = True  # first pass: learn the storages; their data lies after the pickles
    next_pickle("legacy pickle #4")
    keys = next_pickle("legacy pickle #5")
    if type(keys) is not list:
        raise corrupt(label, "the list of storages is damaged")
    offset = fp.tell()
    for key in (text(k, label) for k in keys):
        ref = loader.storages.get(key)
        if ref is None or offset + 8 > size:
            raise corrupt(label, f"storage {key!r} is missing or truncated")
        (numel,) = struct.unpack("<q", base[offset : offset + 8].numpy().tobytes())
        nbytes = numel * ref.dtype.itemsize
        if numel < 0 or offset + 8 + nbytes > size:
            raise corrupt(label, f"storage {key!r} runs past the end of the file (truncated?)")
        loader.extents[key] = (offset + 8, nbytes)
        offset += 8 + nbytes
    fp.seek(start)
    loader.defer = False
    return _result(loader, next_pickle("legacy pickle #4"))
