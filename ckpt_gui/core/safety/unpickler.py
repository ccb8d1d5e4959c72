"""An unpickler that never imports a module and never calls anything the file names.

``find_class`` returns an inert ``StandIn`` for every global except a tiny allow-list mapped to
our own implementations (``OrderedDict``, a few builtins; ``structural`` adds the tensor rebuild
functions). It is built on the pure-Python ``pickle._Unpickler`` rather than the C one because its
opcode table can be replaced: BUILD, SETITEMS, APPENDS and NEWOBJ would otherwise call methods of
objects with arguments from the file (``Tensor.__setstate__``, attribute writes that shadow an
``OrderedDict``'s methods), EXT would consult copyreg's cache of real objects, BYTEARRAY8 would
allocate whatever it declares, and hashing a deeply nested tuple key would crash the process.
"""

from __future__ import annotations

import copyreg
import pickle
import struct
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from ckpt_gui.core.errors import Cancelled, CheckpointError, CorruptError
from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.safety.globals import normalize
from ckpt_gui.core.safety.numpy_values import Pending
from ckpt_gui.core.safety.standins import StandIn, StandInObject, check_key

MAX_GLOBALS = 100_000
MAX_COPIED_BYTES = 256 * 2**20
_TEXT_ENCODINGS = ("latin1", "latin-1", "utf-8", "utf8", "ascii")
_PLAIN = (list, tuple, dict, set, frozenset)


def corrupt(label: str, message: str) -> CorruptError:
    return CorruptError(f"{label}: {message}")


class Resolver:
    """What a pickle's globals resolve to, and the only things an unpickle may call."""

    def __init__(self, label: str, progress: Callable[[], None] | None = None) -> None:
        self.label, self.progress = label, progress
        self.stand_ins: dict[tuple[str, str], StandIn] = {}
        self.globals: list[tuple[str, str]] = []  # every (module, name) named, first-seen order
        self.keys: dict[int, Any] = {}  # dict keys and set items already passed check_key
        self.allowed: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): self._container(OrderedDict),
            ("collections", "Counter"): self._container(Counter),
            ("builtins", "set"): self._container(set),
            ("builtins", "frozenset"): self._container(frozenset),
            ("builtins", "slice"): _slice,
            ("builtins", "complex"): _complex,
            ("builtins", "bytearray"): self._bytearray,
            ("builtins", "bytes"): self._bytes,
            ("_codecs", "encode"): _encode,
            ("copyreg", "_reconstructor"): _reconstructor,
            ("copyreg", "__newobj__"): _newobj,
        }
        self._callables: set[int] = set()
        self.copied = 0  # bytes our bytes()/bytearray() have built, against MAX_COPIED_BYTES

    def _bytes(self, *args: Any) -> bytes:
        return self._count(_bytes(*args))

    def _bytearray(self, *args: Any) -> bytearray:
        return self._count(bytearray(_bytes(*args)))

    def _count(self, value: Any) -> Any:
        """Each call copies what it is given: forty bytearray(b) of one 64 MiB b would be
        2.6 GB from a 64 MiB file. Copies are counted against a budget."""
        self.copied += len(value)
        if self.copied > MAX_COPIED_BYTES:
            raise corrupt(
                self.label,
                f"the pickle copies more than {MAX_COPIED_BYTES >> 20} MiB of bytes; refused",
            )
        return value

    def allow(self, entries: dict[tuple[str, str], Any]) -> None:
        """Map more globals to our own objects (callables among them may then be called)."""
        self.allowed.update(entries)
        self._callables = {id(v) for v in self.allowed.values() if callable(v)}

    def find_class(self, module: str, name: str) -> Any:
        key = normalize(module, name)
        if key not in self.stand_ins:
            if len(self.stand_ins) >= MAX_GLOBALS:
                raise corrupt(self.label, f"the pickle names more than {MAX_GLOBALS:,} globals")
            self.globals.append(key)
            self.stand_ins[key] = StandIn(*key)
        return self.allowed.get(key, self.stand_ins[key])

    def call(self, func: Any, args: Any, kwargs: Any = None) -> Any:
        if type(args) is not tuple or not isinstance(kwargs or {}, dict):
            raise corrupt(self.label, "a call with malformed arguments")
        if not self._callables:
            self.allow({})
        if isinstance(func, (StandIn, StandInObject)) or id(func) in self._callables:
            return func(*args, **(kwargs or {}))
        raise corrupt(self.label, f"the pickle calls a {type(func).__name__}, not a function")

    def new(self, cls: Any, args: Any, kwargs: Any = None) -> Any:
        if isinstance(cls, StandIn):
            return self.call(cls, args, kwargs)
        if id(cls) in self._callables:  # NEWOBJ of an allowed class such as OrderedDict
            return self.call(cls, ())
        raise corrupt(self.label, f"the pickle instantiates a {type(cls).__name__}")

    def persistent_load(self, pid: Any) -> Any:
        raise corrupt(self.label, "the pickle refers to data outside it (a persistent id)")

    def _container(self, kind: type) -> Callable[..., Any]:
        """``set(...)``, ``OrderedDict(...)`` and friends from plain containers only: iterating
        anything else (a tensor of 10**12 elements) could take forever."""

        def build(*args: Any) -> Any:
            if len(args) > 1 or (args and type(args[0]) not in _PLAIN):
                raise TypeError(f"{kind.__name__}() of an unsupported argument")
            items = args[0] if args else ()
            if isinstance(items, dict):
                keys = list(items)
            elif kind is Counter:  # Counter(iterable) counts the items: each one is a key
                keys = list(items)
            elif kind is OrderedDict:
                if not all(type(pair) in (tuple, list) and len(pair) == 2 for pair in items):
                    raise TypeError("OrderedDict() of something other than pairs")
                keys = [pair[0] for pair in items]
            else:
                keys = list(items)
            for key in keys:
                check_key(key, self.label, self.keys)
            return kind(items)

        return build


# Our own versions of the few builtins pickles use to build plain values; they refuse anything
# that could allocate more than the pickle itself holds (``bytearray(10**12)``) or look up a codec.
def _slice(*args: Any) -> slice:
    if not all(a is None or type(a) is int for a in args):
        raise TypeError("slice of non-integers")
    return slice(*args)


def _complex(*args: Any) -> complex:
    if not all(type(a) in (int, float, str, complex) for a in args):
        raise TypeError("complex of non-numbers")
    return complex(*args)


def _encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    if type(text) is not str or encoding not in _TEXT_ENCODINGS or errors != "strict":
        raise TypeError("unsupported _codecs.encode call")
    return text.encode(encoding)


def _bytes(*args: Any) -> bytes:
    if not args:
        return b""
    if len(args) == 2:
        return _encode(*args)
    if len(args) == 1 and type(args[0]) in (bytes, bytearray, list):
        return bytes(args[0])
    raise TypeError("unsupported bytes() call")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Protocol 0/1 instances: record the class like a protocol 2 ``NEWOBJ`` does."""
    if isinstance(cls, StandIn):
        return cls()
    raise TypeError("copyreg._reconstructor of a non-class")


def _newobj(cls: Any, *args: Any) -> Any:
    if isinstance(cls, StandIn):
        return cls(*args)
    raise TypeError("copyreg.__newobj__ of a non-class")


_PyUnpickler: Any = pickle._Unpickler  # type: ignore[attr-defined]  # the pure-Python one


class SafeUnpickler(_PyUnpickler):  # type: ignore[misc]
    """pickle's pure-Python unpickler with every opcode that calls into objects replaced."""

    dispatch: dict[int, Callable[[Any], None]] = dict(_PyUnpickler.dispatch)

    def __init__(self, file: Any, resolver: Resolver) -> None:
        super().__init__(file, encoding="utf-8", errors="strict")
        self.resolver = resolver

    def load(self) -> Any:
        """pickle's own loop, plus a progress call (a cancel point) every 65536 opcodes."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[Any] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, progress = self.read, self.dispatch, self.resolver.progress
        count = 0
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError("pickle data ends before STOP")
                dispatch[key[0]](self)
                count += 1
                if progress is not None and not count & 0xFFFF:
                    progress()
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            frame = self._unframer.current_frame
            if frame is not None and frame.read(1):
                # Bytes after STOP inside its frame: a reader walking opcodes one by one would
                # take them for the next pickle; refused, as the scan refuses them.
                label = self.resolver.label
                raise corrupt(label, "the pickle stops before the end of its frame") from None
            return stop.value

    def find_class(self, module: str, name: str) -> Any:
        return self.resolver.find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return self.resolver.persistent_load(pid)

    def _instantiate(self, klass: Any, args: list[Any]) -> None:  # INST and OBJ
        self.append(self.resolver.call(klass, tuple(args)))

    def _reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.resolver.call(self.stack[-1], args)

    def _newobj(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.resolver.new(self.stack[-1], args)

    def _newobj_ex(self) -> None:
        kwargs, args = self.stack.pop(), self.stack.pop()
        self.stack[-1] = self.resolver.new(self.stack[-1], args, kwargs)

    def _build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, StandInObject):
            target.state = state
        elif type(target) is Pending:  # a NumPy array or dtype: becomes the real thing now
            value = self.stack[-1] = target.finish(state)
            for key in target.memo_keys:
                if self.memo.get(key) is target:
                    self.memo[key] = value
        # Anything else (a dict's ``_metadata``, a tensor's hooks) is dropped: setting
        # attributes from the file on real objects could shadow their methods.

    def _setitems(self, items: list[Any]) -> None:
        target = self.stack[-1]
        label = self.resolver.label
        if len(items) % 2:
            raise corrupt(label, "SETITEMS with an odd number of items")
        if type(target) not in (dict, OrderedDict, Counter, StandInObject):
            raise corrupt(label, f"SETITEMS on a {type(target).__name__}")
        for key, value in zip(items[::2], items[1::2]):
            check_key(key, label, self.resolver.keys)
            if type(target) is StandInObject:
                target.setitem(key, value)
            else:
                target[key] = value

    def _dict(self) -> None:  # DICT: MARK k v k v ... DICT
        items = self.pop_mark()
        self.append({})
        self._setitems(items)

    def _appends(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if type(target) is list:
            target.extend(items)
        elif type(target) is StandInObject:
            target.listitems.extend(items)
        else:
            raise corrupt(self.resolver.label, f"APPENDS on a {type(target).__name__}")

    def _set_items(self, items: list[Any]) -> list[Any]:
        for item in items:
            check_key(item, self.resolver.label, self.resolver.keys)
        return items

    def _additems(self) -> None:
        items = self._set_items(self.pop_mark())
        if type(self.stack[-1]) is not set:
            raise corrupt(self.resolver.label, "ADDITEMS on a non-set")
        self.stack[-1].update(items)

    def _extension(self, code: int) -> None:
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]  # never the cache
        if not key:
            raise corrupt(self.resolver.label, f"unregistered extension code {code}")
        self.append(self.find_class(*key))

    def _bytearray8(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        data = self.read(size)  # the reader checks size against the limit and the file
        if len(data) != size:
            raise corrupt(self.resolver.label, "pickle data was truncated")
        self.append(bytearray(data))

    def _buffer(self) -> None:
        raise corrupt(self.resolver.label, "out-of-band pickle buffers are not supported")

    def _put(self, index: int) -> None:
        """PUT, BINPUT, LONG_BINPUT and MEMOIZE, remembering where a ``Pending`` went."""
        if index < 0:
            raise ValueError("negative memo index")
        top = self.memo[index] = self.stack[-1]
        if type(top) is Pending:
            top.memo_keys.append(index)

    def _setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems([key, value])

    dispatch[pickle.REDUCE[0]] = _reduce
    dispatch[pickle.NEWOBJ[0]] = _newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _newobj_ex
    dispatch[pickle.BUILD[0]] = _build
    dispatch[pickle.SETITEM[0]] = _setitem
    dispatch[pickle.SETITEMS[0]] = lambda self: self._setitems(self.pop_mark())
    dispatch[pickle.DICT[0]] = _dict
    dispatch[pickle.APPEND[0]] = lambda self: self._appends([self.stack.pop()])
    dispatch[pickle.APPENDS[0]] = lambda self: self._appends(self.pop_mark())
    dispatch[pickle.ADDITEMS[0]] = _additems
    dispatch[pickle.FROZENSET[0]] = lambda self: self.append(
        frozenset(self._set_items(self.pop_mark()))
    )
    dispatch[pickle.EXT1[0]] = lambda self: self._extension(self.read(1)[0])
    dispatch[pickle.EXT2[0]] = lambda self: self._extension(struct.unpack("<H", self.read(2))[0])
    dispatch[pickle.EXT4[0]] = lambda self: self._extension(struct.unpack("<i", self.read(4))[0])
    dispatch[pickle.BYTEARRAY8[0]] = _bytearray8
    dispatch[pickle.PUT[0]] = lambda self: self._put(int(self.readline()[:-1]))
    dispatch[pickle.BINPUT[0]] = lambda self: self._put(self.read(1)[0])
    dispatch[pickle.LONG_BINPUT[0]] = lambda self: self._put(struct.unpack("<I", self.read(4))[0])
    dispatch[pickle.MEMOIZE[0]] = lambda self: self._put(len(self.memo))
    dispatch[pickle.NEXT_BUFFER[0]] = _buffer
    dispatch[pickle.READONLY_BUFFER[0]] = _buffer


def unpickle(file: Any, resolver: Resolver, where: str) -> Any:
    """Unpickle one pickle from ``file``; any failure becomes a one-line ``CorruptError``."""
    try:
        return SafeUnpickler(file, resolver).load()
    except (CheckpointError, Cancelled):
        raise
    except RecursionError:
        raise corrupt(resolver.label, f"{where} is nested too deeply") from None
    except MemoryError:
        raise corrupt(resolver.label, f"{where} needs more memory than is available") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile pickle is "corrupt"
        message = printable(str(exc)) or type(exc).__name__
        raise corrupt(resolver.label, f"{where} is damaged ({message})") from None
