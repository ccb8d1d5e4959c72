"""A corpus of hostile checkpoints, written fresh by each test that needs it.

Every payload, if anything ever ran it, would create a sentinel file the caller names; tests
assert the sentinel never appears. ``test_scan.py::test_payloads_are_live`` loads the corpus the
unsafe way in a subprocess and checks that every sentinel does appear, so a payload that silently
does nothing cannot make the safety tests pass. Also: small writers for hand-built zip archives and
torch archives (malformed ones included), reusable by any test.
"""

from __future__ import annotations

import builtins
import importlib
import io
import os
import pickle
import runpy
import struct
import subprocess
import sys
import types
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


class Call:
    """Pickles as ``func(*args)``: what a ``__reduce__`` payload looks like to an unpickler."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args

    def __call__(self) -> None:  # pickle insists the callee is callable; never called
        raise AssertionError("a Call is only ever pickled")


def touch_code(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').close()"


def payload(kind: str, sentinel: Path, folder: Path) -> Call:
    """One ``__reduce__`` payload that creates ``sentinel`` when unpickled."""
    code = touch_code(sentinel)
    if kind == "os_system":
        return Call(os.system, f'{sys.executable} -c "{code}"')
    if kind == "exec":
        return Call(builtins.exec, code)
    if kind == "eval":
        return Call(builtins.eval, code.replace(".close()", ".close() or 1"))
    if kind == "subprocess":
        return Call(subprocess.call, [sys.executable, "-c", code])
    if kind == "importlib":  # getattr(importlib.import_module("os"), "system")(...)
        system = Call(getattr, Call(importlib.import_module, "os"), "system")
        return Call(system, f'{sys.executable} -c "{code}"')
    if kind == "runpy":
        script = folder / f"script_{sentinel.stem}.py"
        script.write_text(code + "\n")
        return Call(runpy.run_path, str(script))
    raise ValueError(kind)


PAYLOAD_KINDS = ("os_system", "exec", "eval", "subprocess", "importlib", "runpy")
# The global each payload kind names first, as the scanner reports it.
PAYLOAD_GLOBALS = {
    "os_system": (os.system.__module__, "system"),
    "exec": ("builtins", "exec"),
    "eval": ("builtins", "eval"),
    "subprocess": ("subprocess", "call"),
    "importlib": ("importlib", "import_module"),
    "runpy": ("runpy", "run_path"),
}


@dataclass
class Hostile:
    name: str
    path: Path
    sentinel: Path
    loader: str  # how a victim would load it: "torch" (weights_only=False) or "pickle"
    expect: tuple[str, str] | None  # a global the scanner must report as unsafe
    sys_path: str | None = None  # a folder the victim has on sys.path


def _weights() -> dict[str, torch.Tensor]:
    return {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "bias": torch.ones(2)}


def stack_global_memo_pickle(module: str, name: str, arg: str) -> bytes:
    """Protocol 4: ``module.name(arg)`` whose names reach STACK_GLOBAL only through the memo."""
    out = bytearray(b"\x80\x04")
    for text in (module, name):
        raw = text.encode()
        out += b"\x8c" + bytes([len(raw)]) + raw + b"\x94" + b"0"  # push, MEMOIZE, POP
    out += b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
    raw = arg.encode()
    out += b"X" + struct.pack("<I", len(raw)) + raw + b"\x85R."  # arg, TUPLE1, REDUCE, STOP
    return bytes(out)


def inst_pickle(module: str, name: str, arg: str) -> bytes:
    """Protocol 0 INST opcode: ``(S'arg'\\nimodule\\nname\\n.``."""
    return b"(V" + arg.encode("raw_unicode_escape") + f"\ni{module}\n{name}\n.".encode()


def write_corpus(folder: Path) -> list[Hostile]:
    """Write every hostile file into ``folder``; sentinels go in ``folder / "sentinels"``."""
    folder.mkdir(parents=True, exist_ok=True)
    sentinels = folder / "sentinels"
    sentinels.mkdir(exist_ok=True)
    corpus: list[Hostile] = []

    def add(
        name: str,
        loader: str,
        expect: tuple[str, str] | None,
        write: Callable[[Path, Path], None],
        suffix: str = ".pt",
    ) -> None:
        path, sentinel = folder / f"{name}{suffix}", sentinels / name
        write(path, sentinel)
        corpus.append(Hostile(name, path, sentinel, loader, expect))

    for kind in PAYLOAD_KINDS:
        add(
            f"zip_{kind}",
            "torch",
            PAYLOAD_GLOBALS[kind],
            lambda p, s, k=kind: torch.save({**_weights(), "payload": payload(k, s, folder)}, p),
        )
    add(
        "legacy_os_system",
        "torch",
        PAYLOAD_GLOBALS["os_system"],
        lambda p, s: torch.save(
            {**_weights(), "payload": payload("os_system", s, folder)},
            p,
            _use_new_zipfile_serialization=False,
        ),
    )
    add(
        "zip_protocol4",
        "torch",
        ("builtins", "eval"),
        lambda p, s: torch.save(
            {"a": payload("exec", s, folder), "b": payload("eval", s, folder)}, p, pickle_protocol=4
        ),
    )
    add(
        "stack_global_memo",
        "pickle",
        ("os", "system"),
        lambda p, s: p.write_bytes(
            stack_global_memo_pickle("os", "system", f'{sys.executable} -c "{touch_code(s)}"')
        ),
        ".pkl",
    )
    add(
        "inst_opcode",
        "pickle",
        ("os", "system"),
        lambda p, s: p.write_bytes(
            inst_pickle("os", "system", f'{sys.executable} -c "{touch_code(s)}"')
        ),
        ".pkl",
    )
    add(
        "nested_pickle_loads",
        "torch",
        ("pickle", "loads"),
        lambda p, s: torch.save(
            {
                "w": torch.ones(1),
                "payload": Call(pickle.loads, pickle.dumps(payload("exec", s, folder), protocol=2)),
            },
            p,
        ),
    )
    for legacy in (False, True):  # pickle.dumps(tensor) writes the legacy format
        name = "nested_torch_legacy" if legacy else "nested_torch_zip"
        expect = ("torch.storage", "_load_from_bytes")
        add(name, "torch", expect, _nested_torch(folder, legacy))
    for protocol in range(6):
        add(
            f"plain_protocol{protocol}",
            "pickle",
            ("builtins", "exec"),
            lambda p, s, n=protocol: p.write_bytes(
                pickle.dumps({"w": [1.0, 2.0], "x": payload("exec", s, folder)}, protocol=n)
            ),
            ".pkl",
        )
    corpus.append(write_import_trap(folder, sentinels / "import_trap"))
    return corpus


def _nested_torch(folder: Path, legacy: bool) -> Callable[[Path, Path], None]:
    """A payload inside a torch file inside the pickle, for ``torch.storage._load_from_bytes``
    (which torch.load's with weights_only=False)."""

    def write(path: Path, sentinel: Path) -> None:
        inner = folder / f"inner_{sentinel.name}.pt"
        obj = {"payload": payload("exec", sentinel, folder)}
        torch.save(obj, inner, _use_new_zipfile_serialization=not legacy)
        data = inner.read_bytes()
        inner.unlink()
        torch.save({"w": torch.ones(1), "x": Call(torch.storage._load_from_bytes, data)}, path)

    return write


TRAP_SOURCE = """
import torch
open({sentinel!r}, "w").close()


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
"""


class TrapNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)


def save_with_module_name(
    model: torch.nn.Module, module_name: str, path: Path, **save_kwargs: object
) -> None:
    """``torch.save(model)`` as if the model's own classes (its class and every submodule class
    from the same module) lived in ``module_name``, a module that does not exist at load time."""
    home = type(model).__module__
    module = types.ModuleType(module_name)
    originals = {}
    for sub in model.modules():
        cls = originals.get(id(sub), type(sub))
        if cls.__module__ != home:
            continue
        renamed = getattr(module, cls.__name__, None)
        if renamed is None:
            renamed = type(cls.__name__, (cls,), {"__module__": module_name})
            setattr(module, cls.__name__, renamed)
        originals[id(sub)] = (sub, cls)
        sub.__class__ = renamed
    sys.modules[module_name] = module
    try:
        torch.save(model, path, **save_kwargs)
    finally:
        del sys.modules[module_name]
        for sub, cls in originals.values():
            sub.__class__ = cls


def write_import_trap(folder: Path, sentinel: Path) -> Hostile:
    """A pickled model whose class lives in a module that creates ``sentinel`` when imported:
    any loader that imports what the pickle names trips it."""
    name = f"trapmod_{sentinel.name}_{os.getpid()}"
    (folder / f"{name}.py").write_text(TRAP_SOURCE.format(sentinel=str(sentinel)))
    path = folder / "import_trap.pt"
    torch.manual_seed(0)
    model = TrapNet()
    model.__class__ = type("Net", (TrapNet,), {})
    save_with_module_name(model, name, path)
    return Hostile("import_trap", path, sentinel, "torch", None, sys_path=str(folder))


# -- hand-built zip archives ------------------------------------------------------------------


@dataclass
class Entry:
    """One zip record as written: ``data`` is the raw (maybe compressed) bytes."""

    name: str
    data: bytes
    size: int | None = None  # declared uncompressed size (default: len(data))
    crc: int | None = None
    deflated: bool = False


def write_zip(path: Path, entries: list[Entry], align: int = 64) -> None:
    """A zip file written byte by byte, so tests can make it lie (duplicate names, sizes)."""
    out, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode()
        size = len(e.data) if e.size is None else e.size
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        offset = len(out)
        pad = (-(offset + 30 + len(name) + 4)) % align
        extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        method = 8 if e.deflated else 0
        fields = (20, 0, method, 0, 0, crc, len(e.data), size, len(name), len(extra))
        out += struct.pack("<4s5HL2L2H", b"PK\x03\x04", *fields) + name + extra + e.data
        central += (
            struct.pack(
                "<4s6HL2L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(e.data),
                size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0
    )
    path.write_bytes(bytes(out + central + end))


def bomb_stream(gib: int) -> bytes:
    """Raw deflate data that inflates to ``gib`` GiB of zeros (about 1 MiB per GiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 24)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)  # each repeat is identical
    return block * (64 * gib) + c.flush()


class Storage:
    """Pickles (with ``archive_pickle``) as a torch storage reference."""

    def __init__(self, key: str, storage_type: type, numel: int, location: str = "cpu") -> None:
        self.pid = ("storage", storage_type, key, location, numel)


def tensor_call(
    storage: Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
) -> Call:
    return Call(
        torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False, OrderedDict()
    )


def archive_pickle(obj: object) -> bytes:
    """Pickle ``obj`` the way torch.save does (protocol 2, storages as persistent ids)."""

    class _Pickler(pickle.Pickler):
        def persistent_id(self, o: object) -> object:
            return o.pid if isinstance(o, Storage) else None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_archive(
    path: Path, data_pkl: bytes, storages: dict[str, bytes], prefix: str = "archive"
) -> None:
    """A torch zip archive built by hand: data.pkl, data/<key> records, byteorder, version."""
    entries = [Entry(f"{prefix}/data.pkl", data_pkl), Entry(f"{prefix}/byteorder", b"little")]
    entries += [Entry(f"{prefix}/data/{key}", raw) for key, raw in storages.items()]
    entries.append(Entry(f"{prefix}/version", b"3\n"))
    write_zip(path, entries)
