"""Reading the pickle of a ``torch.save`` file without torch: the object it describes, with
stand-ins (``Tensor``, ``Storage``) for tensors, enough to guess what an export of it writes
(``head_start``).

The C unpickler does the reading, its ``find_class`` giving back stand-ins for the few globals
a state_dict's pickle names (``OrderedDict``, ``_rebuild_tensor_v2``, the storage types) and
refusing every other, so nothing of the file is imported or called. Before it, the opcodes are
checked against the short list such pickles use, and memo indices against their count: the C
unpickler sizes its memo by the largest index (``LONG_BINPUT 2**28`` alone would take 4 GB).
Anything unexpected raises ``Unreadable``.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
from dataclasses import dataclass
from typing import Any

from ckpt_gui.core.export.options import ExportOptions
from ckpt_gui.core.recognise import MODEL_KEYS
from ckpt_gui.core.tree import itemsize

_MAX_DEPTH = 32
_OPCODES = frozenset(
    """PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2
    LONG1 FLOAT BINFLOAT BINUNICODE SHORT_BINUNICODE BINUNICODE8 UNICODE STRING BINSTRING
    SHORT_BINSTRING EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND APPENDS LIST
    EMPTY_DICT DICT SETITEM SETITEMS GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID PUT BINPUT
    LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET""".split()
)
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
# The dtypes of the storage types torch's pickler names.
_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


class Unreadable(Exception):
    """A pickle (or a part of it) this module does not read: no guess from it."""


@dataclass(frozen=True)
class _StorageType:
    dtype: str


@dataclass(frozen=True)
class Storage:
    key: str
    dtype: str
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * itemsize(self.dtype)


@dataclass(frozen=True)
class Tensor:
    storage: Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def contiguous(self) -> bool:
        """Row-major with no gaps: its bytes lie in one run of its storage."""
        expected = 1
        for s, st in zip(reversed(self.size), reversed(self.stride)):
            if s != 1 and st != expected:
                return False
            expected *= s
        return True

    def nbytes(self) -> int:
        return math.prod(self.size) * itemsize(self.storage.dtype)

    def span(self) -> tuple[int, int]:
        """The elements of its storage it reads: ``[start, end)``."""
        if any(s == 0 for s in self.size):
            return self.offset, self.offset
        last = sum((s - 1) * st for s, st in zip(self.size, self.stride))
        return self.offset, self.offset + last + 1


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> Tensor:
    if not isinstance(storage, Storage) or not _ints(offset) or not _ints(*size, *stride):
        raise Unreadable("a tensor the head start does not read")
    if len(size) != len(stride) or min((offset, *size, *stride), default=0) < 0:
        raise Unreadable("a tensor the head start does not read")
    return Tensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


def _ints(*values: Any) -> bool:
    return all(type(v) is int for v in values)


class _Unpickler(pickle.Unpickler):
    """Stand-ins for a state_dict's globals; every other global refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _StorageType(_DTYPES[name])
        raise Unreadable(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise Unreadable("a persistent id the head start does not read")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not _ints(numel):
            raise Unreadable("a storage the head start does not read")
        return Storage(key, kind.dtype, numel)


def read_pickle(data: bytes) -> Any:
    """The object a state_dict's pickle describes, tensors as stand-ins; ``Unreadable`` for
    any pickle that uses more than such pickles do."""
    ops = 0
    try:
        for op, arg, _ in pickletools.genops(data):
            ops += 1
            if op.name not in _OPCODES:
                raise Unreadable(f"opcode {op.name}")
            if op.name in _PUTS and not (isinstance(arg, int) and 0 <= arg <= ops):
                raise Unreadable("a memo index beyond the pickle")
    except ValueError as exc:  # not a pickle
        raise Unreadable(str(exc)) from None
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except Unreadable:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the pickle holds, only no head start
        raise Unreadable(str(exc)) from None


def kept_object(obj: Any, options: ExportOptions) -> Any:
    """What the export will keep, as far as a guess needs: everything for a CPU copy; for a
    parameters-only export a state_dict on top, or the one state_dict under a model key (or
    under the key ``--state-dict`` names)."""
    if options.mode == "all":
        return obj
    if options.state_dict is None and is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        found = [
            v
            for k, v in obj.items()
            if (k == options.state_dict if options.state_dict else k in MODEL_KEYS)
            and is_state_dict(v)
        ]
        if len(found) == 1:
            return found[0]
    raise Unreadable("no state_dict to guess")


def is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, Tensor) for v in value.values())
    )


def storages_in_order(obj: Any) -> list[Storage]:
    """The storages of the tensors in ``obj`` in the order torch's pickler meets them (dicts in
    insertion order, sequences in order), up to the first one the export would not copy whole
    (a storage the kept tensors do not cover from its start to its end is cut down, so every
    record after it would lie elsewhere)."""
    order: dict[Storage, list[Tensor]] = {}

    def visit(value: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise Unreadable("nested too deeply")
        if isinstance(value, Tensor):
            order.setdefault(value.storage, []).append(value)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v, depth + 1)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v, depth + 1)

    visit(obj, 0)
    whole = []
    for storage, views in order.items():
        spans = [v.span() for v in views]
        if min(s for s, _ in spans) != 0 or max(e for _, e in spans) != storage.numel:
            break
        whole.append(storage)
    return whole
