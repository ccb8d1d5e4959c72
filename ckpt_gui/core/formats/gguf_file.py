"""GGUF files (llama.cpp), read with the ``gguf`` package's own reader: the header, key-values
and tensor infos are parsed up front, tensor data is a copy-on-write memory map, read only
when used. Every quantized tensor (Q8_0, Q4_K, ...) is a raw byte tensor in the tree with a
logical tensor (scheme ``gguf:Q4_K``) dequantized by ``gguf.quants.dequantize``, a block of
rows at a time."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpt_gui.core.checkpoint import Checkpoint, size_on_disk
from ckpt_gui.core.errors import CorruptError, UnsupportedFormatError
from ckpt_gui.core.quant.logical import LogicalTensor
from ckpt_gui.core.tree import Node, TensorInfo, join_key

if TYPE_CHECKING:
    import numpy as np
    import torch

MAGIC = b"GGUF"
# Types read as they are; every other type is quantized (or BF16, read from its bytes).
_PLAIN = {
    "F32": "float32",
    "F16": "float16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}
METADATA = "metadata"  # the node holding the key-values
MAX_LISTED = 16  # longer arrays (a tokenizer's vocabulary) are summarised


def open_gguf(path: Path, fmt: str = "gguf") -> Checkpoint:
    reader = _reader(path)
    root = Node(name="", key="", kind="dict")
    logical: list[LogicalTensor] = []
    for t in reader.tensors:
        info, lt = _describe(t)
        root.add(Node(name=t.name, key=t.name, kind="tensor", tensor=info, role="parameter"))
        if lt is not None:
            logical.append(lt)
    meta = root.add(Node(name=METADATA, key=METADATA, kind="dict", label="gguf metadata"))
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):  # the header's own counts
            continue
        key = join_key(METADATA, name)
        meta.add(Node(name=name, key=key, kind="value", value=_value(field)))
    ckpt = Checkpoint(path=path, format=fmt, root=root, size_on_disk=size_on_disk(path))
    ckpt.kind = "gguf model"
    ckpt.logical = logical
    arch = _field(reader, "general.architecture")
    ckpt.notes.append(
        f"GGUF: {len(reader.tensors)} tensors, {len(meta.children)} key-values"
        + (f", architecture {arch}" if arch else "")
    )
    if logical:
        from ckpt_gui.core.quant.view import summary

        ckpt.notes.append(summary(logical))
    ckpt._closers.append(partial(_close, reader))
    return ckpt


def _reader(path: Path) -> Any:
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - a runtime dependency
        raise UnsupportedFormatError(f"{path}: GGUF needs the gguf package") from None
    try:
        # "c": copy-on-write, so the arrays are writable (torch.from_numpy warns about
        # read-only ones) and the file is never written.
        return GGUFReader(path, "c")
    except (ValueError, KeyError, IndexError, OSError, EOFError) as exc:
        raise CorruptError(f"{path}: damaged GGUF file ({exc})") from None


def _close(reader: Any) -> None:
    mapped = getattr(reader, "data", None)
    handle = getattr(mapped, "_mmap", None)
    if handle is not None:
        try:
            handle.close()
        except BufferError:
            pass  # tensors still view it; it goes with the last of them


def _describe(t: Any) -> tuple[TensorInfo, LogicalTensor | None]:
    """The tensor as stored, and its logical tensor when it is quantized."""
    kind = t.tensor_type.name
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    if kind in _PLAIN:
        return _info(_PLAIN[kind], shape, partial(_plain, t.data, shape)), None
    if kind == "BF16":
        return _info("bfloat16", shape, partial(_bf16, t.data, shape)), None
    raw = tuple(int(d) for d in t.data.shape)
    info = _info("uint8", raw, partial(_plain, t.data, raw))
    rows = t.data.reshape(-1, raw[-1]) if raw else t.data
    lt = LogicalTensor(
        key=t.name,
        scheme=f"gguf:{kind}",
        shape=shape,
        dtype="float32",
        bits=_bits(kind),
        group_size=_block(t.tensor_type),
        parts=(t.name,),
        read=partial(_dequantize, rows, t.tensor_type),
        take=partial(_dequantize_rows, rows, t.tensor_type),
    )
    return info, lt


def _info(dtype: str, shape: tuple[int, ...], loader: Any) -> TensorInfo:
    stride, acc = [], 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= max(s, 1)
    return TensorInfo(dtype, shape, tuple(reversed(stride)), "cpu", loader=loader)


def _plain(data: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    import torch

    return torch.from_numpy(data).reshape(shape)


def _bf16(data: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    import numpy as np
    import torch

    return torch.from_numpy(data.view(np.int16)).view(torch.bfloat16).reshape(shape)


def _dequantize(rows: np.ndarray, qtype: Any, start: int, stop: int) -> torch.Tensor:
    import torch
    from gguf.quants import dequantize

    return torch.from_numpy(dequantize(rows[start:stop], qtype))


def _dequantize_rows(rows: np.ndarray, qtype: Any, indices: Any) -> torch.Tensor:
    import torch
    from gguf.quants import dequantize

    return torch.from_numpy(dequantize(rows[indices], qtype))


def _bits(kind: str) -> int:
    """The nominal bits of a type's name: Q4_K -> 4, IQ2_XS -> 2, MXFP4 -> 4."""
    found = re.search(r"(\d+)", kind)
    return int(found.group(1)) if found else 0


def _block(qtype: Any) -> int:
    from gguf import GGML_QUANT_SIZES

    return int(GGML_QUANT_SIZES[qtype][0])


def _field(reader: Any, name: str) -> Any:
    field = reader.fields.get(name)
    return _value(field) if field is not None else None


def _value(field: Any) -> Any:
    """A key-value as a plain Python value; arrays past ``MAX_LISTED`` items summarised."""
    try:
        count = len(field.data)
        if count > MAX_LISTED and field.types and field.types[0].name == "ARRAY":
            first = field.contents(slice(0, 4))
            kind = field.types[-1].name.lower()
            return f"[{count:,} × {kind}: {', '.join(map(str, first))}, …]"
        return field.contents()
    except (ValueError, IndexError, TypeError, UnicodeDecodeError):
        return "<unreadable>"
