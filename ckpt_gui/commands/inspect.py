"""``ckpt-gui inspect PATH [--json]``: the tree as a table, or as JSON (see docs/cli.md)."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from typing import Any

from ckpt_gui.commands.adapter_view import (
    adapter_reports,
    add_adapter_json,
    add_base_argument,
    print_adapters,
)
from ckpt_gui.commands.output import echo, json_value, print_json, print_table
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.formats.folders import format_label
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node
from ckpt_gui.core.units import human_bytes, human_count, shape_text

HELP = "the tree: keys, dtypes, shapes, sizes, values, totals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow running code from the file (only for files you trust)",
    )
    add_base_argument(parser)


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        ckpt = stack.enter_context(open_checkpoint(args.path, trust=args.trust))
        adapters = adapter_reports(ckpt, args.base, stack, trust=args.trust)
        if args.json:
            out = inspect_json(ckpt)
            add_adapter_json(out, adapters)
            print_json(out)
        else:
            print_report(ckpt)
            print_adapters(adapters)
    return 0


def inspect_json(ckpt: Checkpoint) -> dict[str, Any]:
    tensors = []
    part_of = {part: lt.key for lt in ckpt.logical for part in lt.parts}
    for node in ckpt.root.tensors():
        info = node.tensor
        assert info is not None
        tensors.append(
            {
                "key": node.key,
                "dtype": info.dtype,
                "shape": list(info.shape),
                "numel": info.numel,
                "nbytes": info.nbytes,
                "device": info.device,
                "role": node.role,
                "shares_storage_with": node.shares_storage_with,
                "tied": node.tied,
                "param": node.param,
                "stride": list(info.stride) if info.stride else None,
                "contiguous": info.contiguous,
                "part_of": part_of.get(node.key),  # the quantized weight it is part of
            }
        )
    values = [{"key": n.key, "value": json_value(n.value)} for n in value_nodes(ckpt.root)]
    totals = ckpt.totals()
    return {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "format_label": format_label(ckpt),  # "safetensors ×4 shards", "diffusers pipeline: ..."
        "kind": ckpt.kind,
        "view": ckpt.view,
        "size_on_disk": ckpt.size_on_disk,
        "tensors": tensors,
        "quantized": [lt.to_json() | {"label": lt.label()} for lt in ckpt.logical],
        "values": values,
        "totals": {"tensors": totals.tensors, "numel": totals.numel, "nbytes": totals.nbytes},
        "by_role": {k: vars(v) for k, v in ckpt.totals_by("role").items()},
        "by_dtype": {k: vars(v) for k, v in ckpt.totals_by("dtype").items()},
        "view_note": ckpt.view_note,
        "notes": ckpt.notes,
    }


def print_report(ckpt: Checkpoint) -> None:
    size = human_bytes(ckpt.size_on_disk)
    echo(f"{ckpt.path}  ({format_label(ckpt)}, {ckpt.kind}, {size} on disk)")
    rows = []
    for node in ckpt.root.tensors():
        info = node.tensor
        assert info is not None
        marks = []
        if info.device != "cpu":
            marks.append(f"saved on {info.device}")
        if node.tied:
            marks.append(f"tied to {node.shares_storage_with}")
        elif node.shares_storage_with:
            marks.append(f"shares a storage with {node.shares_storage_with} (distinct bytes)")
        if node.param:
            marks.append(f"param {node.param}")
        rows.append(
            [
                node.key,
                node.role,
                info.dtype,
                shape_text(info.shape),
                f"{info.numel:,}",
                human_bytes(info.nbytes),
                "; ".join(marks),
            ]
        )
    if rows:
        echo()
        print_table(["key", "role", "dtype", "shape", "elements", "size", ""], rows, right={4, 5})
    print_quantized(ckpt)
    values = value_nodes(ckpt.root)
    if values:
        echo()
        rows = [[n.key, n.value if n.kind == "object" else _value_text(n.value)] for n in values]
        print_table(["key", "value"], rows)
    totals = ckpt.totals()
    echo()
    echo(
        f"{totals.tensors} tensors, {human_count(totals.numel)} elements, "
        f"{human_bytes(totals.nbytes)}"
    )
    for title, groups in (
        ("by role", ckpt.totals_by("role")),
        ("by dtype", ckpt.totals_by("dtype")),
    ):
        parts = [
            f"{name} {t.tensors} ({human_count(t.numel)}, {human_bytes(t.nbytes)})"
            for name, t in groups.items()
        ]
        if parts:
            echo(f"  {title}: " + " · ".join(parts))
    for note in ([ckpt.view_note] if ckpt.view_note else []) + ckpt.notes:
        echo(f"  note: {note}")


def print_quantized(ckpt: Checkpoint) -> None:
    """The logical tensors of a quantized checkpoint: one row per weight."""
    if not ckpt.logical:
        return
    echo()
    echo(f"quantized weights ({len(ckpt.logical)}), read dequantized by stats and diff:")
    rows = [
        [
            lt.key,
            lt.scheme,
            lt.dtype,
            shape_text(lt.shape),
            str(lt.bits),
            str(lt.group_size or "-"),
            ", ".join(p.removeprefix(lt.key.rpartition(".")[0] + ".") for p in lt.parts),
        ]
        for lt in ckpt.logical
    ]
    print_table(["key", "scheme", "dtype", "shape", "bits", "group", "parts"], rows, right={4, 5})


def value_nodes(root: Node) -> list[Node]:
    """The rows of the values list: plain values, and each object the file names (structural
    view) as one readable row (``Namespace(lr=0.5)``) instead of the pieces of its pickle;
    tensors inside such an object are still listed with the tensors."""
    out: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        readable = node.kind == "object" and node.standin and not str(node.value).startswith("<")
        if node.kind == "value" or readable:
            out.append(node)
        if not readable:
            stack.extend(reversed(node.children))
    return out


def _value_text(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 100 else text[:99] + "…"
