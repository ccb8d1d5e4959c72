"""Walk one pickle's opcodes with ``pickletools.genops`` and report the globals it names.

A small stack-and-memo simulation resolves the names protocol 4 builds with ``STACK_GLOBAL``
(from string pushes or memo lookups), follows ``EXT`` codes through copyreg's registry (read
only), tracks how deeply tuples nest, and hands byte strings passed to ``pickle.loads`` and
friends back to the caller to scan as nested pickles. Nothing is unpickled; nothing is imported.
"""

from __future__ import annotations

import copyreg
import io
import pickletools
import struct
import sys
from dataclasses import dataclass
from typing import Any, Protocol

from ckpt_gui.core.safety.globals import NESTED_PICKLE_LOADERS, NESTED_TORCH_LOADERS, normalize

_MARK = object()
_STRINGS = set("STRING BINSTRING SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE".split())
_STRINGS.add("BINUNICODE8")
_BYTES = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}


class Sink(Protocol):
    """What the walk reports to."""

    def add(self, module: str, name: str, where: str, protocol: int = 0) -> None: ...
    def note(self, text: str) -> None: ...
    def nested(self, data: bytes, where: str, torch_file: bool) -> None: ...
    def tuple_depth(self, depth: int) -> None: ...
    def allocation(self, what: str, nbytes: int, where: str) -> None: ...
    def storage(self, pid: Any, where: str) -> None: ...


@dataclass(frozen=True)
class Global:
    """A global on the simulated stack (so a later REDUCE knows what it calls)."""

    module: str
    name: str


class STuple(tuple):  # type: ignore[type-arg]
    """A tuple on the simulated stack, with its nesting depth."""

    depth: int


def _tuple(items: list[Any], sink: Sink) -> STuple:
    result = STuple(items)
    depth = 0
    for item in items:  # a loop, not max() over a generator: one tuple per tensor, or more
        if isinstance(item, STuple) and item.depth > depth:
            depth = item.depth
    result.depth = depth + 1
    sink.tuple_depth(result.depth)
    return result


# -- reading opcodes ---------------------------------------------------------------------------
# ``pickletools.genops`` reads every opcode and argument through a file object, a few calls each;
# a torch.save pickle has about thirty opcodes per tensor, so a file of 100,000 tensors spent
# seconds there. ``_ops`` yields exactly what genops yields for a pickle held in memory, reading
# the common arguments straight from the bytes (the rest through genops' own readers).

_FIXED = {"uint1": (1, "<B"), "uint2": (2, "<H"), "uint4": (4, "<I"), "int4": (4, "<i")}
_FIXED["uint8"] = (8, "<Q")
_COUNTED = {  # argument name -> (size of its count, count format, result type)
    "unicodestring1": (1, "<B", str),
    "unicodestring4": (4, "<I", str),
    "unicodestring8": (8, "<Q", str),
    "bytes1": (1, "<B", bytes),
    "bytes4": (4, "<I", bytes),
    "bytes8": (8, "<Q", bytes),
    "bytearray8": (8, "<Q", bytearray),
}
_NO_ARG, _FIXED_ARG, _COUNTED_ARG, _OTHER_ARG = range(4)
# Per opcode byte: (opcode, how its argument is read, size, struct format, result type).
_TABLE: list[tuple[Any, int, int, str, Any] | None] = [None] * 256
for _op in pickletools.opcodes:
    if _op.arg is None:
        _TABLE[ord(_op.code)] = (_op, _NO_ARG, 0, "", None)
    elif _op.arg.name in _FIXED:
        _TABLE[ord(_op.code)] = (_op, _FIXED_ARG, *_FIXED[_op.arg.name], None)
    elif _op.arg.name in _COUNTED:
        _TABLE[ord(_op.code)] = (_op, _COUNTED_ARG, *_COUNTED[_op.arg.name])
    else:
        _TABLE[ord(_op.code)] = (_op, _OTHER_ARG, 0, "", None)
_STOP = ord(".")


def _ops(data: bytes | bytearray) -> Any:
    """``pickletools.genops(data)`` for a pickle in memory: ``(opcode, arg, pos)`` up to and
    including STOP, with the same values and the same ``ValueError`` where genops raises one."""
    end = len(data)
    unpack = struct.unpack_from
    table = _TABLE
    stream: io.BytesIO | None = None  # for the rare arguments read by pickletools' own readers
    pos = 0
    while True:
        if pos >= end:
            raise ValueError("pickle exhausted before seeing STOP")
        code = data[pos]
        entry = table[code]
        if entry is None:
            raise ValueError(f"at position {pos}, opcode {bytes(data[pos : pos + 1])!r} unknown")
        op, how, size, fmt, kind = entry
        start = pos
        pos += 1
        if how == _NO_ARG:
            yield op, None, start
            if code == _STOP:
                return
            continue
        if how == _FIXED_ARG:
            if pos + size > end:
                raise ValueError(f"not enough data in stream to read {op.arg.name}")
            arg = unpack(fmt, data, pos)[0]
            pos += size
        elif how == _COUNTED_ARG:
            if pos + size > end:
                raise ValueError(f"not enough data in stream to read uint{size}")
            n = unpack(fmt, data, pos)[0]
            pos += size
            if n > sys.maxsize:
                raise ValueError(f"{op.arg.name} byte count > sys.maxsize: {n}")
            if pos + n > end:
                raise ValueError(
                    f"expected {n} bytes in a {op.arg.name}, but only {end - pos} remain"
                )
            raw = data[pos : pos + n]
            pos += n
            arg = str(raw, "utf-8", "surrogatepass") if kind is str else kind(raw)
        else:
            if stream is None:
                stream = io.BytesIO(data)
            stream.seek(pos)
            arg = op.arg.reader(stream)
            pos = stream.tell()
        yield op, arg, start


def simulate(stream: Any, where: str, sink: Sink) -> Any:
    """Walk one pickle (bytes, or a file positioned at it) and return its value when it is a
    simple one (an int, a string, a list or tuple of those). Raises ``ValueError`` (and what
    ``genops`` raises) on a malformed pickle."""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    raw = stream if isinstance(stream, (bytes, bytearray)) else None

    def pop() -> Any:
        if not stack:
            raise ValueError("stack underflow")
        return stack.pop()

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1 :]
                del stack[i:]
                return items
        raise ValueError("no MARK on the stack")

    protocol = 0
    frame_end: int | None = None  # where the current protocol 4 frame ends
    arg: Any
    ops = _ops(stream) if isinstance(stream, (bytes, bytearray)) else pickletools.genops(stream)
    for op, arg, pos in ops:
        name = op.name
        # The branches below are tried in order of how often torch.save writes each opcode.
        if name in _MEMO_PUTS:
            memo[arg] = stack[-1] if stack else None
        elif name in _MEMO_GETS:
            stack.append(memo.get(arg))
        elif name in _INTS:
            stack.append(arg)
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items = [pop() for _ in range(int(name[-1]))]
            stack.append(_tuple(items[::-1], sink))
        elif name in ("TUPLE", "FROZENSET"):
            stack.append(_tuple(pop_mark(), sink))
        elif name == "REDUCE":
            args, func = pop(), pop()
            stack.append(_reduce(func, args, where, sink))
        elif name in _STRINGS:
            stack.append(arg if isinstance(arg, str) else None)
        elif name in ("BINPERSID", "PERSID"):
            pid = pop() if name == "BINPERSID" else arg
            sink.storage(pid, where)
            stack.append(None)
        elif name == "EMPTY_TUPLE":
            stack.append(_tuple([], sink))
        elif name == "FRAME":
            # Unpicklers read a frame whole and go on after it; this walk reads on byte by byte.
            # Both see the same opcodes only if frames never overlap and STOP ends its frame.
            if frame_end is not None and pos is not None and pos < frame_end:
                raise ValueError("a frame starts inside the previous one")
            frame_end = None if pos is None else pos + 9 + arg
        elif name == "PROTO":
            protocol = arg
        elif name in _BYTES:
            stack.append(bytes(arg))
        elif name in ("GLOBAL", "INST"):
            module, qual = _global_operands(raw, pos, arg)
            sink.add(module, qual, where, protocol)
            if name == "INST":
                pop_mark()
                stack.append(None)
            else:
                stack.append(Global(*normalize(module, qual)))
        elif name == "STACK_GLOBAL":
            qual, module = pop(), pop()
            if isinstance(module, str) and isinstance(qual, str):
                sink.add(module, qual, where, protocol)
                stack.append(Global(module, qual))
            else:  # built by code at load time: we cannot tell what it imports
                sink.add("?", "?", where)
                stack.append(None)
        elif name in ("EXT1", "EXT2", "EXT4"):
            key = copyreg._inverted_registry.get(arg)  # type: ignore[attr-defined]  # not the cache
            if key:
                sink.add(key[0], key[1], where, protocol)
                stack.append(Global(*normalize(*key)))
            else:
                sink.add("?", "?", where)
                sink.note(f"{where}: unregistered extension code {arg}")
                stack.append(None)
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "LIST":
            stack.append(pop_mark())
        elif name in ("APPEND", "APPENDS"):
            items = [pop()] if name == "APPEND" else pop_mark()
            if stack and isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "DUP":
            stack.append(stack[-1] if stack else None)
        elif name == "STOP":
            if frame_end is not None and pos is not None and pos < frame_end - 1:
                raise ValueError("the pickle stops before the end of its frame")
            return pop() if stack else None
        else:  # everything else only matters for its effect on the stack
            before, after = op.stack_before, op.stack_after
            if pickletools.markobject in before:
                pop_mark()
                for _ in range(before.index(pickletools.markobject)):
                    pop()
            else:
                for _ in before:
                    pop()
            stack.extend(_MARK if a is pickletools.markobject else None for a in after)
    raise ValueError("pickle ends before STOP")


def _reduce(func: Any, args: Any, where: str, sink: Sink) -> Any:
    """The simulated result of ``func(*args)``: known for the few calls that build names,
    bytes or tuples; nested pickles are handed to the sink."""
    if not isinstance(func, Global) or not isinstance(args, tuple):
        return None
    key = (func.module, func.name)
    if key in (("builtins", "tuple"), ("builtins", "frozenset")) and args:
        return _tuple(list(args[0]), sink) if isinstance(args[0], (list, tuple)) else None
    if key == ("_codecs", "encode") and len(args) == 2 and isinstance(args[0], str):
        # Each call makes new bytes: one memoised string encoded a thousand times is a
        # thousand copies, so every call counts.
        sink.allocation(f"_codecs.encode(<{len(args[0]):,} characters>)", len(args[0]), where)
        if args[1] in ("latin1", "latin-1"):  # how protocol 2 writes bytes
            return args[0].encode("latin-1", "replace")
        return Sized(len(args[0]))
    allocation = _allocation(key, args)
    if allocation is not None:
        sink.allocation(allocation[0], allocation[1], where)
        # What bytes(n)/bytearray(n) made is copied again by a later bytearray(that): its
        # size travels with it through the memo.
        return Sized(allocation[1]) if key[0] == "builtins" else None
    if (key in NESTED_PICKLE_LOADERS or key in NESTED_TORCH_LOADERS) and args:
        if isinstance(args[0], bytes):
            sink.nested(args[0], f"{where} > nested pickle", key in NESTED_TORCH_LOADERS)
    return None


class Sized:
    """The simulated result of a call that allocates: only its size is known (and counted
    again whenever a later call copies it)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


# What torch's legacy constructors allocate per element, by the name's prefix.
_CONSTRUCTOR_ITEMSIZE = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
    "Char": 1, "Byte": 1, "Bool": 1, "": 4,
}  # fmt: skip


def _allocation(key: tuple[str, str], args: tuple[Any, ...]) -> tuple[str, int] | None:
    """Calls that allocate memory the file does not hold: ``bytearray(10**9)``, and torch's
    legacy constructors with sizes (``torch.FloatTensor(2**32)``: uninitialised memory, whose
    bytes are whatever this process's heap held). ``(what, bytes)``, or None."""
    module, name = key
    if key in (("builtins", "bytearray"), ("builtins", "bytes")) and args:
        if type(args[0]) is int:
            return f"{name}({args[0]:,})", max(0, args[0])
        if isinstance(args[0], (bytes, str, Sized)):  # a copy of data, each call anew
            n = args[0].n if isinstance(args[0], Sized) else len(args[0])
            return f"{name}(<{n:,} bytes>)", n
        return None
    if module not in ("torch", "torch.cuda"):  # most calls (one per tensor): nothing to count
        return None
    sizes = [a for a in args if type(a) is int]
    if not args or len(sizes) != len(args):
        return None  # built from data in the pickle (a list of values), not from a size
    if not name.endswith(("Tensor", "Storage")):
        return None
    stem = name.removesuffix("Tensor").removesuffix("Storage")
    item = _CONSTRUCTOR_ITEMSIZE.get(stem)
    if item is None or (name.endswith("Storage") and stem == ""):
        return None
    count = 1
    for n in sizes:
        count *= max(0, n)
    shown = ", ".join(f"{n:,}" for n in sizes)
    return f"{module}.{name}({shown})", count * item


def _global_operands(raw: bytes | bytearray | None, pos: int | None, arg: str) -> tuple[str, str]:
    """module and name of GLOBAL/INST, read from the raw bytes when we have them: genops joins
    them with a space, which is ambiguous when a name holds one."""
    if raw is not None and pos is not None:
        end1 = raw.find(b"\n", pos + 1)
        end2 = raw.find(b"\n", end1 + 1)
        if end1 > 0 and end2 > 0:
            module = raw[pos + 1 : end1].decode("utf-8", "replace")
            return module, raw[end1 + 1 : end2].decode("utf-8", "replace")
    module, _, name = arg.partition(" ")
    return module, name
