"""The scan reads the opcodes of a pickle in memory with its own reader (``opcodes._ops``), not
``pickletools.genops``: it must see exactly what genops sees, opcode for opcode, argument for
argument, and fail where genops fails, on any bytes at all."""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import random
from typing import Any

import pytest
import torch

from ckpt_gui.core.safety.opcodes import _ops

# pickletools' own string readers warn about escapes in corrupted protocol 0 strings.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def walk(ops: Any) -> list[Any]:
    """Everything an opcode reader yields, then what it raised (type and message), if any."""
    out: list[Any] = []
    try:
        for op, arg, pos in ops:
            shown = repr(arg) if isinstance(arg, float) else arg  # NaN equals its repr
            out.append((op.name, shown, type(arg), pos))
    except Exception as exc:  # noqa: BLE001 - the error is part of what is compared
        out.append((type(exc).__name__, str(exc)))
    return out


def same_as_genops(data: bytes | bytearray) -> None:
    assert walk(_ops(data)) == walk(pickletools.genops(data))


def torch_pickle() -> bytes:
    """The data.pkl of a torch.save file: views, tuples, an OrderedDict, a big int."""
    buffer = io.BytesIO()
    base = torch.arange(8.0)
    torch.save({"a": base[2:], "b": base.view(2, 4), "n": 2**70, "s": "é" * 300}, buffer)
    import zipfile

    with zipfile.ZipFile(buffer) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        return archive.read(name)


OBJECTS: list[Any] = [
    {"a": [1, 2.5, "x", b"yy", bytearray(b"z"), None, True, (1,), (1, 2), (1, 2, 3)]},
    {10**30: -5, -(2**40): 2**31, "s" * 300: b"b" * 300, frozenset([1]): {2, 3}},
    collections.OrderedDict(a=1.0, b=float("nan")),
    list(range(1000)),
    ("\ud800 surrogate", "ünïcode", b"\x00" * 70000),
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_whole_and_cut_pickles(protocol: int) -> None:
    rng = random.Random(protocol)
    for obj in OBJECTS:
        data = pickle.dumps(obj, protocol=protocol)
        cuts = [len(data), 0, 1] + rng.sample(range(len(data)), min(40, len(data)))
        for cut in cuts:
            same_as_genops(data[:cut])
            same_as_genops(bytearray(data[:cut]))


def test_torch_save_pickles() -> None:
    data = torch_pickle()
    same_as_genops(data)
    for cut in range(0, len(data), max(1, len(data) // 200)):
        same_as_genops(data[:cut])


def test_corrupted_bytes() -> None:
    rng = random.Random(7)
    sources = [pickle.dumps(o, protocol=p) for o in OBJECTS for p in (0, 2, 4, 5)]
    sources.append(torch_pickle())
    for i in range(3000):
        data = bytearray(sources[i % len(sources)])
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        same_as_genops(bytes(data))


def test_hand_made_edge_cases() -> None:
    for data in (
        b"",  # nothing at all
        b"\xff.",  # an unknown opcode
        b"X\x05\x00\x00\x00ab.",  # a BINUNICODE shorter than it says
        b"X\x05\x00",  # its length cut short
        b"\x8e" + (2**63).to_bytes(8, "little") + b".",  # BINBYTES8 past sys.maxsize
        b"K",  # BININT1 without its byte
        b"F1.5\n.",  # FLOAT: read by pickletools' own reader
        b"c__builtin__\nlen\n.",  # GLOBAL
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00N.",  # PROTO 4, FRAME
    ):
        same_as_genops(data)
