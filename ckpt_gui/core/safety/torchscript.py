"""TorchScript archives read as modules, without compiling or running their code.

An archive's ``code/`` folder declares each scripted class as text::

    class Linear(Module):
      __parameters__ = ["weight", "bias", ]
      __buffers__ = []

Those declarations are read here as data (never executed) and the objects ``data.pkl`` builds
for those classes get the state a pickled ``nn.Module`` has (``_parameters``, ``_buffers``,
``_modules``), so the tree shows parameters and buffers as such, the model's state_dict keys,
and a parameters-only export works.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ckpt_gui.core.safety import filecheck
from ckpt_gui.core.safety.standins import StandInObject

MAX_CODE_BYTES = 16 << 20  # one code file: scripted models' code is small
_CLASS = re.compile(r"^class (\w+)\((?:\w+\.)*Module\):", re.M)
_LIST = re.compile(r"^\s+__(parameters|buffers)__ = \[(.*?)\]", re.M)
_NAME = re.compile(r'"([^"\\]*)"')

ModuleTable = dict[str, tuple[list[str], list[str]]]


def module_table(archive: filecheck.TorchZip) -> ModuleTable:
    """``qualified class name -> (parameter names, buffer names)`` for every scripted module
    class the archive's code declares."""
    code = archive.full_name("code/")
    table: ModuleTable = {}
    for name in archive.records:
        if not (name.startswith(code) and name.endswith(".py")):
            continue
        module = name[len(code) : -len(".py")].replace("/", ".")
        text = archive.read(name, MAX_CODE_BYTES).decode("utf-8", "replace")
        starts = [(m.start(), m.group(1)) for m in _CLASS.finditer(text)]
        for i, (start, cls) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
            lists: dict[str, list[str]] = {"parameters": [], "buffers": []}
            for match in _LIST.finditer(text, start, end):
                lists[match.group(1)] = _NAME.findall(match.group(2))
            table[f"{module}.{cls}"] = (lists["parameters"], lists["buffers"])
    return table


def as_modules(obj: Any, table: ModuleTable) -> None:
    """Give every object of a declared module class the state of a pickled ``nn.Module``:
    its declared parameters and buffers under ``_parameters`` and ``_buffers``, its attributes
    that are modules under ``_modules`` (in attribute order), everything else as it was."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        node = stack.pop()
        if not isinstance(node, StandInObject) or id(node) in seen:
            continue
        seen.add(id(node))
        state = node.state
        if node.qualname not in table or not isinstance(state, dict):
            continue
        params, buffers = table[node.qualname]
        modules = {
            k: v
            for k, v in state.items()
            if isinstance(v, StandInObject) and v.qualname in table and isinstance(k, str)
        }
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        rest = {k: v for k, v in state.items() if k not in modules and k not in tensors}
        rest["_parameters"] = {n: tensors[n] for n in params if n in tensors}
        rest["_buffers"] = {n: tensors[n] for n in buffers if n in tensors}
        # Tensors that are neither (constants a script keeps as attributes) stay attributes.
        rest.update({k: t for k, t in tensors.items() if k not in params and k not in buffers})
        rest["_modules"] = modules
        node.state = rest
        stack.extend(modules.values())
