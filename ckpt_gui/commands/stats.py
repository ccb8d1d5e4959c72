"""``ckpt-gui stats PATH [--json] [--filter GLOB]``: exact per-tensor statistics (see
docs/cli.md)."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from fnmatch import fnmatchcase
from typing import Any

from ckpt_gui.commands.adapter_view import (
    adapter_reports,
    add_adapter_json,
    add_base_argument,
    print_adapters,
)
from ckpt_gui.commands.output import echo, number, print_json, print_table
from ckpt_gui.core.errors import CorruptError
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.rollup import Rollup, optimizer_state_rollups
from ckpt_gui.core.stats import (
    StatsFailed,
    StatsResult,
    TensorStats,
    has_statistics,
    iter_stats,
    no_values,
    to_json,
)
from ckpt_gui.core.tree import Node, dtype_from_name
from ckpt_gui.core.units import human_bytes, human_count

HELP = "exact per-tensor statistics: min, max, mean, std, L2 norm, zeros, NaN and Inf counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--filter", metavar="GLOB", help="only tensors whose key matches, e.g. '*.weight'"
    )
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
        nodes = [
            n for n in ckpt.tensors() if args.filter is None or fnmatchcase(n.key, args.filter)
        ]
        # Tensors with nothing to read (uninitialised, meta) are listed with no statistics.
        empty = {
            n.key: n.tensor.no_data or no_values(n.tensor.dtype)
            for n in nodes
            if n.tensor and (n.tensor.no_data or not has_statistics(n.tensor.dtype))
        }
        results: list[tuple[str, TensorStats]] = []
        measured_nodes = [n for n in nodes if n.key not in empty]
        for event in iter_stats(measured_nodes):
            if isinstance(event, StatsFailed):
                raise CorruptError(f"{event.message} (tensor {event.key})")
            if isinstance(event, StatsResult):
                results.append((event.key, event.stats))
        by_name = optimizer_state_rollups(ckpt.root, dict(results))
        if args.json:
            # By node: a quantized weight's logical tensor can share its key with a raw part.
            measured = {id(n): _entry(n, key, s) for n, (key, s) in zip(measured_nodes, results)}
            entries = [
                measured[id(n)] if id(n) in measured else _no_data_json(n, empty[n.key])
                for n in nodes
                if id(n) in measured or n.key in empty
            ]
            optimizers = {
                opt: {name: _rollup_json(r) for name, r in table.items()}
                for opt, table in by_name.items()
            }
            out = {"path": str(ckpt.path), "tensors": entries, "optimizer_state": optimizers}
            add_adapter_json(out, adapters)
            print_json(out)
        else:
            print_report(str(ckpt.path), results, args.filter)
            print_optimizer_state(by_name)
            for key, why in empty.items():
                echo(f"no statistics for {key}: {why}")
            print_adapters(adapters)
    return 0


def print_optimizer_state(by_name: dict[str, dict[str, Rollup]]) -> None:
    """Optimizer state per state name over all parameters (counters such as ``step`` apart)."""
    for optimizer, table in by_name.items():
        echo()
        echo(f"optimizer state by name ({optimizer or 'top level'}):")
        headers = ["state", "tensors", "elements", "min", "max", "mean", "std", "l2"]
        rows = [
            [name, str(r.tensors), human_count(r.numel)]
            + [number(v) for v in (r.min, r.max, r.mean, r.std, r.l2)]
            for name, r in table.items()
        ]
        print_table(headers, rows, right=set(range(1, len(headers))))


def _rollup_json(r: Rollup) -> dict[str, Any]:
    return {
        "tensors": r.tensors,
        "numel": r.numel,
        "min": r.min,
        "max": r.max,
        "mean": r.mean,
        "std": r.std,
        "l2": r.l2,
        "nan": r.nan,
        "posinf": r.posinf,
        "neginf": r.neginf,
    }


def _entry(node: Node, key: str, stats: TensorStats) -> dict[str, Any]:
    """``to_json``, and for a quantized weight's logical tensor its scheme and label."""
    out = to_json(stats, key)
    lt = node.tensor.quant if node.tensor is not None else None
    if lt is not None:
        out.update(scheme=lt.scheme, bits=lt.bits, group_size=lt.group_size, label=lt.label())
    elif node.role == "quantization":
        out["role"] = node.role
    return out


def _no_data_json(node: Node, why: str) -> dict[str, Any]:
    """A tensor with nothing to measure: every statistic null, and why."""
    assert node.tensor is not None
    info = node.tensor
    entry: dict[str, Any] = {"key": node.key, "dtype": info.dtype, "numel": info.numel}
    entry["no_data"] = why
    for name in ("min", "max", "mean", "std", "l2", "absmax", "zeros", "nan", "posinf", "neginf"):
        entry[name] = None
    return entry


def print_report(path: str, results: list[tuple[str, TensorStats]], glob: str | None) -> None:
    echo(path)
    if not results:
        echo(f"no tensor matches {glob!r}" if glob is not None else "no tensors")
        return
    headers = ["key", "dtype", "elements", "min", "max", "mean", "std", "l2", "zeros", "nan/inf"]
    rows = [_row(key, s) for key, s in results]
    echo()
    print_table(headers, rows, right=set(range(2, len(headers))))
    numel = sum(s.numel for _, s in results)
    nbytes = sum(s.numel * _itemsize(s) for _, s in results)
    bad = [key for key, s in results if s.nonfinite]
    echo()
    echo(f"{len(results)} tensors, {human_count(numel)} elements, {human_bytes(nbytes)}")
    if bad:
        echo(
            f"NaN or Inf in {len(bad)} tensor(s): " + ", ".join(bad[:5]) + (" ..." * (len(bad) > 5))
        )


def _row(key: str, s: TensorStats) -> list[str]:
    dtype = s.dtype + (" |z|" if s.complex_magnitude else "") + (" dequant." * s.dequantized)
    zeros = f"{s.sparsity:.1%}" if s.sparsity is not None and s.zeros else "0"
    bad = [
        f"{n} {name}" for n, name in ((s.nan, "nan"), (s.posinf, "+inf"), (s.neginf, "-inf")) if n
    ]
    return [
        key,
        dtype,
        human_count(s.numel),
        number(s.min),
        number(s.max),
        number(s.mean),
        number(s.std),
        number(s.l2),
        zeros,
        ", ".join(bad) or "-",
    ]


def _itemsize(s: TensorStats) -> int:
    try:
        return dtype_from_name(s.dtype).itemsize
    except ValueError:
        return 0
