"""Checkpoints whose text tries to drive the terminal: escape sequences in keys, values,
safetensors metadata, the names of pickled globals, and file names.

``HOSTILE`` clears the screen and homes the cursor, then prints ``ALL CLEAR``; it also carries a
carriage return, a backspace, DEL, an 8-bit CSI (``\\x9b``), a right-to-left override and a
newline that would start a forged line of output.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

CLEAR = "\x1b[2J\x1b[HALL CLEAR"
HOSTILE = CLEAR + "\r\x08\x7f\x9b31m\u202e\nforged"
# A pickle GLOBAL opcode ends its names at a newline, and protocol 2 writes them in ASCII.
HOSTILE_GLOBAL = CLEAR + "\r\x08\x7f"
HOSTILE_NAME = "red\x1b[31m\x9b\rname"
# How Python names the byte 0xff of a file name that is not UTF-8 (surrogateescape).
UNDECODABLE = "\udcff"


@dataclass
class EscapeFile:
    """One hostile checkpoint (``path``) and a second file to diff it against (``other``)."""

    name: str
    path: Path
    other: Path


def _plain(path: Path) -> Path:
    torch.save({"other.weight": torch.ones(2), "other.value": 1}, path)
    return path


def state_dict_keys(folder: Path) -> Path:
    """torch.save of a dict whose keys hold escapes; one tensor has a NaN (for stats' NaN line)
    and a value float16 cannot hold (for export's cast line)."""
    path = folder / "keys.pt"
    torch.save(
        {
            f"layer{HOSTILE}.weight": torch.tensor([1.0, float("nan"), 1e10]),
            f"layer{HOSTILE}.bias": torch.zeros(2),
        },
        path,
    )
    return path


def safetensors_metadata(folder: Path) -> Path:
    """A safetensors file with escapes in its ``__metadata__`` keys and values and tensor names."""
    path = folder / "meta.safetensors"
    tensors = {f"w{HOSTILE}": torch.tensor([float("inf"), 1.0]), "plain": torch.ones(3)}
    save_file(tensors, path, metadata={f"k{HOSTILE}": f"v{HOSTILE}", "format": "pt"})
    return path


def training_values(folder: Path) -> Path:
    """A training checkpoint with a plain string value (and a key) that holds escapes."""
    path = folder / "train.pt"
    torch.save(
        {
            "model_state_dict": {"linear.weight": torch.ones(2, 2)},
            "comment": HOSTILE,
            f"note{HOSTILE}": [HOSTILE, 3],
            "epoch": 1,
        },
        path,
    )
    return path


def refused_global(folder: Path, protocol: int) -> Path:
    """A torch zip file whose pickle names the class ``Bad<escapes>`` of the module
    ``evil<escapes>``: torch's safe loader refuses it, so the file opens in the structural view,
    whose note names the globals. Protocol 2 writes a GLOBAL opcode, protocol 4 STACK_GLOBAL
    (whose names are UTF-8, so they can hold the 8-bit CSI too)."""
    suffix = HOSTILE_GLOBAL if protocol < 3 else HOSTILE_GLOBAL + "\x9b31m"
    module_name, class_name = "evil" + suffix, "Bad" + suffix
    module = types.ModuleType(module_name)
    cls = type(class_name, (), {"__module__": module_name, "__qualname__": class_name})
    setattr(module, class_name, cls)
    path = folder / f"global_p{protocol}.pt"
    sys.modules[module_name] = module
    try:
        torch.save({"w": torch.ones(3), "payload": cls()}, path, pickle_protocol=protocol)
    finally:
        del sys.modules[module_name]
    return path


def escaped_file_name(folder: Path) -> Path:
    """An ordinary checkpoint whose file name holds escapes."""
    path = folder / f"{HOSTILE_NAME}.pt"
    torch.save({"w": torch.ones(2), "epoch": 3}, path)
    return path


def diff_pair(folder: Path) -> tuple[Path, Path]:
    """A and B whose only-in-A, only-in-B, shape-mismatch and changed-value keys hold escapes."""
    a, b = folder / "diff_a.pt", folder / "diff_b.pt"
    torch.save(
        {
            f"onlyA{HOSTILE}": torch.ones(2),
            f"shape{HOSTILE}": torch.ones(2),
            f"changed{HOSTILE}": torch.ones(2),
            f"value{HOSTILE}": HOSTILE,
        },
        a,
    )
    torch.save(
        {
            f"onlyB{HOSTILE}": torch.ones(2),
            f"shape{HOSTILE}": torch.ones(3),
            f"changed{HOSTILE}": torch.full((2,), 2.0),
            f"value{HOSTILE}": HOSTILE + "!",
        },
        b,
    )
    return a, b


def write_all(folder: Path) -> list[EscapeFile]:
    """Every escape fixture, each with a file to diff it against."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = _plain(folder / "plain.pt")
    files = [
        EscapeFile("state_dict_keys", state_dict_keys(folder), plain),
        EscapeFile("safetensors_metadata", safetensors_metadata(folder), plain),
        EscapeFile("training_values", training_values(folder), plain),
        EscapeFile("global_protocol2", refused_global(folder, 2), plain),
        EscapeFile("global_protocol4", refused_global(folder, 4), plain),
        EscapeFile("file_name", escaped_file_name(folder), plain),
        EscapeFile("missing_file", folder / f"missing{HOSTILE_NAME}{UNDECODABLE}.pt", plain),
    ]
    a, b = diff_pair(folder)
    files.append(EscapeFile("diff_pair", a, b))
    return files
