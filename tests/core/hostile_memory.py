"""Small files that ask for a lot: memory bombs, nesting that crashes C code, uninitialised
tensors, and objects whose own attributes hide their methods. Each writer makes one file."""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import torch

from tests.core.hostile import Call, Storage, archive_pickle, tensor_call, write_archive

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def bytearray_bomb(path: Path, count: int = 3, size: int = 10**9) -> None:
    """``[bytearray(size)] * count`` through torch's own safe loader (bytearray is allowed)."""
    write_archive(path, archive_pickle([Call(bytearray, size) for _ in range(count)]), {})


def uninitialised_tensor(path: Path, numel: int = 2048) -> None:
    """``torch.Tensor(numel)``: the safe loader allocates it, nothing in the file fills it."""
    storage = Storage("0", torch.FloatStorage, 4)
    obj = {"w": tensor_call(storage, 0, (4,), (1,)), "ghost": Call(torch.Tensor, numel)}
    write_archive(path, archive_pickle(obj), {"0": struct.pack("<4f", 1, 2, 3, 4)})


def float_tensor_bomb(path: Path) -> None:
    """``torch.FloatTensor(2**32)``: 16 GiB of uninitialised memory from a few hundred bytes."""
    write_archive(path, archive_pickle({"w": Call(torch.FloatTensor, 2**32)}), {})


def legacy_storage_bomb(path: Path, numel: int = 2**40) -> None:
    """A legacy torch file whose storage declares ``numel`` floats (4 TiB) and holds four."""

    class LegacyStorage:
        pid = ("storage", torch.FloatStorage, "0", "cpu", numel, None)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return obj.pid if isinstance(obj, LegacyStorage) else None

    obj = {"w": Call(torch._utils._rebuild_tensor_v2, LegacyStorage(), 0, (4,), (1,), False,
                     OrderedDict())}  # fmt: skip
    body = io.BytesIO()
    Pickler(body, protocol=2).dump(obj)
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, sys_info))
    tail = (
        pickle.dumps(["0"], protocol=2) + struct.pack("<q", numel) + struct.pack("<4f", 1, 2, 3, 4)
    )
    path.write_bytes(head + body.getvalue() + tail)


def copied_bytes_bomb(
    path: Path, copies: int = 40, size: int = 16 << 20, structural: bool = False
) -> None:
    """One byte string copied ``copies`` times by ``bytearray(b)``: the file holds it once.
    ``structural``: also name a class torch refuses, so the structural view reads it."""
    out = bytearray(b"\x80\x02")
    if structural:
        out += b"c__main__\nConfig\n)R"  # (Config(), [copies...])
    out += b"cbuiltins\nbytearray\nq\x000"  # memo 0: the callee
    out += b"B" + struct.pack("<I", size) + bytes(size) + b"q\x010"  # memo 1: the bytes
    out += b"](" + b"h\x00h\x01\x85R" * copies + b"e"  # [bytearray(b), ...]
    out += b"\x86." if structural else b"."
    write_archive(path, bytes(out), {})


def size_nesting_crash(path: Path, depth: int = 300_000) -> None:
    """``Counter([(0, t)])`` where ``t`` nests ``depth`` tuples built through ``torch.Size``, so
    no TUPLE opcode (and no tuple-depth check) sees them; a class torch refuses makes the file
    open in the structural view. Hashing the key recursed in C until the process died."""
    out = bytearray(b"\x80\x02")
    out += b"ctorch\nSize\nq\x000"  # memo 0
    out += b")q\x010"  # memo 1: the current tuple, ()
    out += b"h\x00h\x01\x85\x85Rq\x010" * depth  # memo 1 = torch.Size((memo 1,))
    out += b"ccollections\nCounter\n"
    out += b"]K\x00h\x01\x86a\x85R"  # Counter([(0, t)])
    out += b"c__main__\nConfig\n)R\x86."  # (counter, Config()): a global torch refuses
    write_archive(path, bytes(out), {})


class _Deceptive:
    """Pickles as an OrderedDict holding ``entries``, with attributes ``state`` set by BUILD
    after the entries (torch's safe loader allows BUILD on an OrderedDict)."""

    def __init__(self, entries: list[tuple[str, object]], state: dict[str, object]) -> None:
        self.entries, self.state = entries, state

    def __reduce__(self) -> tuple[object, ...]:
        return OrderedDict, (), self.state, None, iter(self.entries)


def items_override(path: Path) -> None:
    """A state_dict whose instance attribute ``items`` hides ``OrderedDict.items``: a reader
    calling ``.items()`` sees a string, ``load_state_dict`` (keys() and []) sees the weight."""
    storage = Storage("0", torch.FloatStorage, 4)
    obj = _Deceptive([("weight", tensor_call(storage, 0, (2, 2), (2, 1)))], {"items": "nothing"})
    write_archive(path, archive_pickle(obj), {"0": struct.pack("<4f", *[666.0] * 4)})


def tensor_attribute_override(path: Path) -> None:
    """A tensor whose pickled state sets ``untyped_storage`` and ``stride`` on the object."""
    storage = Storage("0", torch.FloatStorage, 4)
    args = (storage, 0, (4,), (1,), False, OrderedDict())
    state = {"untyped_storage": "not a method", "stride": 7}
    rebuilt = Call(
        torch._tensor._rebuild_from_type_v2, torch._utils._rebuild_tensor_v2, torch.Tensor,
        args, state,
    )  # fmt: skip
    write_archive(path, archive_pickle({"w": rebuilt}), {"0": struct.pack("<4f", 1, 2, 3, 4)})


def copied_result_bomb(path: Path, size: int = 60_000_000, copies: int = 30) -> None:
    """``bytearray(size)`` once, then ``bytearray(that)`` ``copies`` times through the memo:
    a kilobyte of pickle, ``copies`` times ``size`` bytes for torch's safe loader."""
    out = bytearray(b"\x80\x02cbuiltins\nbytearray\nq\x000")
    out += b"h\x00J" + struct.pack("<i", size) + b"\x85Rq\x010"  # memo 1: bytearray(size)
    out += b"](" + b"h\x00h\x01\x85R" * copies + b"e."
    write_archive(path, bytes(out), {})


def encoded_copies_bomb(path: Path, size: int = 4_000_000, copies: int = 150) -> None:
    """One memoised string encoded ``copies`` times by ``_codecs.encode`` (allowed by torch's
    safe loader): each call makes new bytes."""
    text = b"a" * size
    out = bytearray(b"\x80\x02c_codecs\nencode\nq\x000")
    out += b"X" + struct.pack("<I", size) + text + b"q\x010"
    out += b"X\x06\x00\x00\x00latin1q\x020"
    out += b"](" + b"h\x00h\x01h\x02\x86R" * copies + b"e."
    write_archive(path, bytes(out), {})
