"""``torch.distributed.checkpoint`` folders.

The ``.metadata`` file gives every key, dtype and shape without touching the shards. torch reads
it with a plain ``pickle.load``; we read it with an unpickler that only builds DCP's own metadata
classes, so a hostile ``.metadata`` cannot run code. Tensor data is read on demand through torch's
own DCP reader.
"""

from __future__ import annotations

import io
import pickle
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint import metadata as dcp_metadata

from ckpt_gui.core.errors import CorruptError, UnsafeError
from ckpt_gui.core.tree import TensorInfo, dtype_name

_ALLOWED = {
    "torch.distributed.checkpoint.metadata": set(vars(dcp_metadata)),
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "slice"},
}
MAX_METADATA_BYTES = 512 * 1024 * 1024


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise UnsafeError(f"DCP metadata references {module}.{name}; refused")


def read_metadata(folder: Path) -> dcp_metadata.Metadata:
    path = folder / ".metadata"
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise CorruptError(f"{path}: DCP metadata larger than {MAX_METADATA_BYTES} bytes")
    try:
        meta = _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
    except UnsafeError as exc:
        raise UnsafeError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CorruptError(f"{path}: damaged DCP metadata ({type(exc).__name__})") from None
    if not isinstance(meta, dcp_metadata.Metadata):
        raise CorruptError(f"{path}: not DCP metadata")
    return meta


class _SafeReader(FileSystemReader):
    """torch's DCP file reader, with the metadata read by our restricted unpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        meta = read_metadata(Path(self.path))
        storage_meta = getattr(meta, "storage_meta", None) or dcp_metadata.StorageMeta()
        storage_meta.load_id = self.load_id
        meta.storage_meta = storage_meta
        return meta


def load_dcp_tensor(
    folder: Path, key: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    target = {key: torch.empty(shape, dtype=dtype)}
    dcp.load(target, storage_reader=_SafeReader(str(folder)), no_dist=True)
    return target[key]


def dcp_entries(folder: Path, meta: dcp_metadata.Metadata) -> list[tuple[str, TensorInfo | str]]:
    """Every flat DCP key with a TensorInfo, or a short description for non-tensor items."""
    out: list[tuple[str, TensorInfo | str]] = []
    for key, item in meta.state_dict_metadata.items():
        if isinstance(item, dcp_metadata.TensorStorageMetadata):
            dtype, shape = item.properties.dtype, tuple(item.size)
            out.append(
                (
                    key,
                    TensorInfo(
                        dtype=dtype_name(dtype),
                        shape=shape,
                        stride=None,
                        device="cpu",
                        loader=partial(load_dcp_tensor, folder, key, dtype, shape),
                    ),
                )
            )
        else:
            # Non-tensor items are pickles that torch would load with weights_only=False;
            # we list them without reading them.
            out.append((key, "<pickled object, not loaded>"))
    return out
