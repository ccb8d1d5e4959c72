"""NumPy arrays, dtypes and scalars in a pickle, rebuilt as real NumPy objects without running
anything from the file.

NumPy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` followed by BUILD with
``(version, shape, dtype, fortran_order, raw_bytes)``, and a dtype as ``dtype('f4', False, True)``
followed by BUILD with ``(3, '<', ...)``. Those calls are interpreted here as data: only plain
numeric dtypes (bool, integers, floats, complex) are accepted, the raw bytes must be exactly
what the shape needs, and the array is a read-only view of bytes the pickle itself holds.
Anything else (object arrays, structured dtypes, subclasses) stays an inert stand-in.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ckpt_gui.core.safety.standins import StandIn, StandInObject

MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_SPEC = re.compile(r"[biufc]\d{1,2}")
_MAX_DIMS = 64


class Pending:
    """An array or dtype between its creating call and the BUILD that gives it its state. The
    unpickler replaces it (on the stack and in the memo) by whatever ``finish`` returns."""

    __slots__ = ("callee", "args", "memo_keys")

    def __init__(self, callee: StandIn, args: tuple[Any, ...]) -> None:
        self.callee, self.args = callee, args
        self.memo_keys: list[int] = []

    def finish(self, state: Any) -> Any:
        build = _dtype if self.callee.name == "dtype" else _array
        value = build(self.args, state)
        if value is not None:
            return value
        inert = StandInObject(self.callee, self.args)  # what it would have been without us
        inert.state = state
        return inert

    def __repr__(self) -> str:
        return f"<{self.callee.qualname}(...) without its state>"


def allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals the structural unpickler maps to the builders here."""
    entries: dict[tuple[str, str], Any] = {("numpy", "dtype"): _pending_dtype}
    for module in MODULES:
        entries[(module, "_reconstruct")] = _pending_array(module)
        entries[(module, "scalar")] = _scalar(module)
    return entries


def _pending_dtype(*args: Any) -> Pending:
    return Pending(StandIn("numpy", "dtype"), args)


def _pending_array(module: str) -> Any:
    def reconstruct(*args: Any) -> Pending | StandInObject:
        cls = args[0] if args else None
        if isinstance(cls, StandIn) and cls.qualname == "numpy.ndarray":
            return Pending(StandIn(module, "_reconstruct"), args)
        return StandIn(module, "_reconstruct")(*args)  # a subclass: never ours to build

    return reconstruct


def _scalar(module: str) -> Any:
    def scalar(*args: Any) -> Any:
        if len(args) == 2 and isinstance(args[0], np.dtype) and type(args[1]) is bytes:
            dtype, data = args
            if len(data) == dtype.itemsize:
                return np.frombuffer(data, dtype=dtype)[0]
        return StandIn(module, "scalar")(*args)

    return scalar


def _dtype(args: tuple[Any, ...], state: Any) -> np.dtype | None:
    """``dtype('f4', False, True)`` with state ``(3, '<', None, None, None, -1, -1, 0)``."""
    if not args or type(args[0]) is not str or not _SPEC.fullmatch(args[0]):
        return None
    if type(state) is not tuple or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
        return None
    if any(part is not None for part in state[2:5]):  # subarray, names, fields: structured
        return None
    try:
        dtype = np.dtype(state[1] + args[0] if state[1] != "|" else args[0])
    except TypeError:
        return None
    return dtype if dtype.kind in "biufc" and not dtype.hasobject else None


def _array(args: tuple[Any, ...], state: Any) -> np.ndarray | None:
    """``_reconstruct(ndarray, (0,), b'b')`` with state ``(1, shape, dtype, fortran, raw)``."""
    if type(state) is not tuple or len(state) != 5 or state[0] != 1:
        return None
    _, shape, dtype, fortran, raw = state
    if not isinstance(dtype, np.dtype) or type(fortran) is not bool or type(raw) is not bytes:
        return None
    if type(shape) is not tuple or len(shape) > _MAX_DIMS:
        return None
    if not all(type(n) is int and 0 <= n < 2**62 for n in shape):
        return None
    numel = 1
    for n in shape:
        numel *= n
    if numel * dtype.itemsize != len(raw):
        return None
    flat = np.frombuffer(raw, dtype=dtype)  # read-only, zero-copy: the pickle's own bytes
    return flat.reshape(shape, order="F" if fortran else "C")
