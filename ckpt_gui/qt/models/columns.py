"""The tree's columns: titles, what each cell shows, and the raw value it sorts by."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ckpt_gui.core.tree import Node
from ckpt_gui.qt.formatting import (
    ROLE_SHORT,
    format_bytes,
    format_count,
    format_float,
    format_percent,
    format_shape,
    format_value,
)
from ckpt_gui.qt.models.items import Item, natural_key


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool
    tip: str


COLUMNS = (
    Column("Name", False, "Name of the entry; dotted state_dict keys are grouped by module"),
    Column(
        "Value",
        False,
        "Plain values; the parameter an optimizer state belongs to; tied storage; "
        "⚠ what a real load would import and call",
    ),
    Column("Role", False, "parameter, buffer or optimizer state; what a container holds"),
    Column("Dtype", False, "Element type, and the device the tensor was saved on when not the CPU"),
    Column("Shape", False, "Tensor shape"),
    Column("Elements", True, "Number of elements (summed over a module's tensors)"),
    Column("Size", True, "Bytes of tensor data (summed over a module's tensors)"),
    Column("Min", True, "Smallest finite value"),
    Column("Max", True, "Largest finite value"),
    Column("Mean", True, "Mean of the finite values"),
    Column("Std", True, "Standard deviation of the finite values (Bessel-corrected)"),
    Column("Norm", True, "L2 norm of the finite values"),
    Column("Zeros %", True, "Share of elements that are exactly zero"),
    Column("NaN/Inf", True, "Count of NaN and infinite elements"),
)
(NAME, VALUE, ROLE, DTYPE, SHAPE, ELEMENTS, SIZE, MIN, MAX, MEAN, STD, NORM, ZEROS, NONFINITE) = (
    range(len(COLUMNS))
)
STAT_COLUMNS = (MIN, MAX, MEAN, STD, NORM, ZEROS, NONFINITE)
STAT_FIELDS = {MIN: "min", MAX: "max", MEAN: "mean", STD: "std", NORM: "l2"}


def stat(stats: Any, name: str) -> Any:
    return getattr(stats, name, None) if stats is not None else None


def nonfinite(stats: Any) -> int | None:
    if stats is None:
        return None
    counts = [stat(stats, n) for n in ("nan", "posinf", "neginf")]
    if all(c is None for c in counts):
        return None
    return sum(c or 0 for c in counts)


def zero_fraction(stats: Any) -> float | None:
    zeros, numel = stat(stats, "zeros"), stat(stats, "numel")
    if zeros is None or not numel:
        return None
    return zeros / numel


def is_all_zero(stats: Any) -> bool:
    zeros, numel = stat(stats, "zeros"), stat(stats, "numel")
    return bool(numel) and zeros == numel


def role_text(item: Item) -> str:
    node = item.node
    if node is None:
        return "module"
    if node.kind == "tensor":
        return ROLE_SHORT.get(node.role, node.role)
    return node.label or ""


def dtype_text(item: Item) -> str:
    node = item.node
    if node is not None and node.kind == "tensor" and node.tensor is not None:
        device = node.tensor.device
        return node.tensor.dtype if device == "cpu" else f"{node.tensor.dtype} · {device}"
    if node is not None and node.kind == "value":
        return type(node.value).__name__ if node.value is not None else ""
    return item.dtype


def standin_text(node: Node) -> str:
    """``⚠ gone.Net(…)`` for an object the pickle would build by calling ``gone.Net``,
    ``⚠ gone.helper`` for a bare reference to it."""
    called = node.kind == "object"
    if called and isinstance(node.value, str) and not node.value.startswith("<"):
        return f"⚠ {node.value}"  # readable: Namespace(lr=0.5), PosixPath('runs/a')
    return f"⚠ {node.standin}{'(…)' if called else ''}"


def standin_tooltip(node: Node) -> str:
    what = "import and call" if node.kind == "object" else "import"
    return f"Loading this file for real would {what} {node.standin}"


def value_text(item: Item, stats: Any) -> str:
    node = item.node
    if node is None:
        return ""
    if node.standin:
        return standin_text(node)
    if node.kind == "value" or (node.kind == "list" and node.value is not None):
        return format_value(node.value)
    notes = []
    if node.param:
        notes.append(f"→ {node.param}")
    if node.shares_storage_with:  # the tooltip and the details panel give the full key
        what = "tied" if node.tied else "shares storage"
        notes.append(f"{what}: {short_key(node.shares_storage_with)}")
    info = node.tensor
    if info is not None and info.no_data:
        notes.append("no data")
    if info is not None and info.container == "numpy":
        notes.append("NumPy array")
    if info is not None and info.layout != "strided":
        notes.append(f"{info.layout}, {info.stored:,} stored" if info.stored else info.layout)
    if node.kind == "tensor" and node.tensor is not None and node.tensor.numel == 1:
        single = stat(stats, "min")
        if single is not None and not notes:
            notes.append(format_float(single, digits=6))
    return ", ".join(notes)


def short_key(key: str, parts: int = 2) -> str:
    """The last ``parts`` components of a key: ``wte.weight`` for ``model.x.wte.weight``."""
    pieces = key.split(".")
    return ".".join(pieces[-parts:]) if len(pieces) > parts else key


def display(item: Item, column: int, stats: Any) -> str:
    """What the cell shows."""
    if column == NAME:
        return item.name
    if column == VALUE:
        return value_text(item, stats)
    if column == ROLE:
        return role_text(item)
    if column == DTYPE:
        return dtype_text(item)
    if column == SHAPE:
        if item.is_tensor:
            assert item.node is not None and item.node.tensor is not None
            return format_shape(item.node.tensor.shape)
        return ""
    if column == ELEMENTS:
        return format_count(item.numel) if item.tensors else ""
    if column == SIZE:
        return format_bytes(item.nbytes) if item.tensors else ""
    if column in STAT_FIELDS:
        return format_float(stat(stats, STAT_FIELDS[column]))
    if column == ZEROS:
        return format_percent(zero_fraction(stats))
    if column == NONFINITE:
        count = nonfinite(stats)
        return "" if count is None else format_count(count)
    return ""


def sort_value(item: Item, column: int, stats: Any) -> Any:
    """The raw value a column sorts by: numbers for numeric columns, ``None`` sorts last."""
    if column == NAME:
        return natural_key(item.name)
    if column in (VALUE, ROLE, DTYPE):
        return display(item, column, stats).lower()
    if column == SHAPE:
        if item.is_tensor:
            assert item.node is not None and item.node.tensor is not None
            return (item.node.tensor.numel, item.node.tensor.shape)
        return None
    if column == ELEMENTS:
        return item.numel if item.tensors else None
    if column == SIZE:
        return item.nbytes if item.tensors else None
    if column in STAT_FIELDS:
        value = stat(stats, STAT_FIELDS[column])
        return None if value is None or math.isnan(value) else float(value)
    if column == ZEROS:
        return zero_fraction(stats)
    if column == NONFINITE:
        return nonfinite(stats)
    return None
