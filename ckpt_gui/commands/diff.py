"""``ckpt-gui diff A B``: what changed between two checkpoints, as a report or as JSON (see
docs/cli.md).

Exit status like diff(1): 0 when the two match within tolerance, 1 when they differ, 2 on error.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ckpt_gui.commands.output import echo, json_value, number, print_json, print_table
from ckpt_gui.core.diff import (
    CHANGED,
    DTYPE,
    IDENTICAL,
    MATCH_MODES,
    ONLY_A,
    ONLY_B,
    SHAPE,
    DiffEntry,
    DiffReport,
    TensorDiff,
    diff_checkpoints,
    parse_map,
)
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node
from ckpt_gui.core.units import shape_text

HELP = "what changed between two checkpoints (exit 0 same, 1 different, 2 error)"
DESCRIPTION = (
    "Compare checkpoint A with checkpoint B: keys only in A or only in B, shape and dtype "
    "mismatches, identical (bit for bit) and changed tensors with max/mean |A-B|, "
    "||A-B||/||A|| and cosine similarity, and changed plain values (epoch, loss, ...). "
    "A changed tensor whose every element satisfies |a-b| <= atol + rtol*|b| (NaN equal to NaN) "
    "is reported as changed but 'within tolerance' and does not count as a difference. "
    "Exit status: 0 when every key matches within tolerance, 1 when the files differ, 2 on error."
)
LIST_LIMIT = 30  # keys listed per category in the readable report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("a", metavar="A")
    parser.add_argument("b", metavar="B")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--atol", type=_tolerance, default=0.0, metavar="X", help="absolute tolerance (0)"
    )
    parser.add_argument(
        "--rtol", type=_tolerance, default=0.0, metavar="Y", help="relative tolerance, of |B| (0)"
    )
    parser.add_argument(
        "--match",
        choices=MATCH_MODES,
        default="auto",
        help="auto (default): strip wrapper prefixes such as module., _orig_mod., model., "
        "model_state_dict. when that lines the keys up; exact: compare keys as they are",
    )
    parser.add_argument(
        "--map",
        metavar="A_PREFIX=B_PREFIX",
        help="match A keys starting with A_PREFIX to B keys starting with B_PREFIX "
        "(either may be empty: --map model_state_dict.=module.); overrides --match",
    )
    parser.add_argument(
        "--all", action="store_true", help="list every key in the report, not the first 30"
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow running code from the files (only for files you trust)",
    )


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from ckpt_gui.cli import fail

    try:
        match = parse_map(args.map) if args.map is not None else args.match
    except ValueError as exc:
        return fail(str(exc))
    with (
        open_checkpoint(args.a, trust=args.trust) as ckpt_a,
        open_checkpoint(args.b, trust=args.trust) as ckpt_b,
    ):
        report = diff_checkpoints(ckpt_a, ckpt_b, match=match, atol=args.atol, rtol=args.rtol)
        if report.failed:
            first = report.failed[0]
            return fail(f"{first.key}: {first.message}")
        if args.json:
            print_json(diff_json(report))
        else:
            print_report(report, limit=None if args.all else LIST_LIMIT)
    return 0 if report.equal else 1


def _number(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _metrics_json(m: TensorDiff | None) -> dict[str, Any]:
    if m is None:
        return {}
    return {
        "max_abs_diff": _number(m.max_abs_diff),
        "mean_abs_diff": _number(m.mean_abs_diff),
        "rel_l2": _number(m.rel_l2),
        "cosine": _number(m.cosine),
        "within_tolerance": m.within_tolerance,
        "numel": m.numel,
        "nonfinite": m.nonfinite,
        "l2_diff": _number(m.diff_l2),
        "l2_a": _number(m.norm_a),
        "l2_b": _number(m.norm_b),
        "compared_in": m.work_dtype,
    }


def diff_json(report: DiffReport) -> dict[str, Any]:
    """The ``diff`` object of docs/cli.md, plus ``match``, tolerances, counts and a few extras."""

    def keys(category: str, kind: str = "tensor") -> list[str]:
        return [e.key for e in report.of(category, kind)]

    largest = report.largest_change()
    return {
        "a": report.path_a,
        "b": report.path_b,
        "match": report.match.to_json(),
        "atol": report.atol,
        "rtol": report.rtol,
        "equal": report.equal,
        "only_a": keys(ONLY_A),
        "only_b": keys(ONLY_B),
        "identical": keys(IDENTICAL),
        "shape_mismatch": [
            {
                "key": e.key,
                "key_b": e.key_b,
                "shape_a": list(e.shape_a or ()),
                "shape_b": list(e.shape_b or ()),
                "dtype_a": e.dtype_a,
                "dtype_b": e.dtype_b,
            }
            for e in report.of(SHAPE)
        ],
        "dtype_mismatch": [
            {
                "key": e.key,
                "key_b": e.key_b,
                "dtype_a": e.dtype_a,
                "dtype_b": e.dtype_b,
                "shape": list(e.shape_a or ()),
                **_metrics_json(e.metrics),
            }
            for e in report.of(DTYPE)
        ],
        "changed": [
            {
                "key": e.key,
                "key_b": e.key_b,
                "dtype": e.dtype_a,
                "shape": list(e.shape_a or ()),
                **_metrics_json(e.metrics),
            }
            for e in report.of(CHANGED)
        ],
        "values_changed": [
            {"key": e.key, "a": json_value(e.value_a), "b": json_value(e.value_b)}
            for e in report.of(CHANGED, "value")
        ],
        "values_only_a": keys(ONLY_A, "value"),
        "values_only_b": keys(ONLY_B, "value"),
        "counts": report.counts(),
        "largest_change": (
            {"key": largest.key, "rel_l2": _number(largest.rel_l2)} if largest else None
        ),
    }


def _sorted_by_change(entries: list[DiffEntry]) -> list[DiffEntry]:
    def size(e: DiffEntry) -> float:
        rel = e.rel_l2
        return math.inf if rel is None else rel

    return sorted(entries, key=size, reverse=True)


def _one_sided(entries: list[DiffEntry]) -> list[str]:
    """Keys on one side only, a container whose every leaf is one-sided shown once as
    ``container.* (N keys)`` (a training checkpoint's whole optimizer, say)."""
    nodes = [e.node_a or e.node_b for e in entries]
    inside = {id(n) for n in nodes if n is not None}
    counts: dict[int, int | None] = {}

    def all_one_sided(node: Node) -> int | None:
        """How many leaves ``node`` has when all of them are one-sided, else None."""
        if id(node) not in counts:
            leaves = [n for n in node.walk() if n.kind in ("tensor", "value") and n is not node]
            ok = leaves and all(id(n) in inside for n in leaves)
            counts[id(node)] = len(leaves) if ok else None
        return counts[id(node)]

    out: list[str] = []
    shown: set[int] = set()
    for e, node in zip(entries, nodes):
        if node is None:
            out.append(e.key)
            continue
        top, n = node, 1
        while top.parent is not None and top.parent.key:
            count = all_one_sided(top.parent)
            if count is None:
                break
            top, n = top.parent, count
        if id(top) not in shown:
            shown.add(id(top))
            out.append(node.key if top is node else f"{top.key}.* ({n} keys)")
    return out


def _key_list(title: str, keys: list[str], limit: int | None) -> None:
    if not keys:
        return
    echo()
    echo(f"{title}:")
    shown = keys if limit is None else keys[:limit]
    for key in shown:
        echo(f"  {key}")
    if len(shown) < len(keys):
        echo(f"  … and {len(keys) - len(shown)} more (--all lists them)")


def print_report(report: DiffReport, limit: int | None = LIST_LIMIT) -> None:
    echo(f"A: {report.path_a}")
    echo(f"B: {report.path_b}")
    echo(f"match: {report.match.describe()}")
    tol = "" if report.atol == 0 and report.rtol == 0 else " (within tolerance)"
    changed = _sorted_by_change(report.of(CHANGED) + report.of(DTYPE))
    if changed:
        echo()
        rows = []
        for e in changed if limit is None else changed[:limit]:
            m = e.metrics
            assert m is not None
            dtype = e.dtype_a if e.dtype_a == e.dtype_b else f"{e.dtype_a}→{e.dtype_b}"
            note = tol if m.within_tolerance and tol else ""
            if m.nonfinite:
                note += f" {m.nonfinite} NaN/Inf positions skipped"
            rows.append(
                [
                    e.key,
                    dtype or "",
                    shape_text(e.shape_a or ()),
                    number(m.max_abs_diff),
                    number(m.mean_abs_diff),
                    number(m.rel_l2),
                    number(m.cosine),
                    note.strip(),
                ]
            )
        headers = ["changed tensor", "dtype", "shape", "max|A-B|", "mean|A-B|", "rel L2", "cosine"]
        print_table([*headers, ""], rows, right={3, 4, 5, 6})
        _more(len(changed), limit)
    shapes = report.of(SHAPE)
    if shapes:
        echo()
        rows = [[e.key, shape_text(e.shape_a or ()), shape_text(e.shape_b or ())] for e in shapes]
        _limited_table(["shape mismatch", "A", "B"], rows, limit)
    values = report.of(CHANGED, "value")
    if values:
        echo()
        rows = [[e.key, _value_text(e.value_a), _value_text(e.value_b)] for e in values]
        _limited_table(["value changed", "A", "B"], rows, limit)
    _key_list("only in A", _one_sided(report.of(ONLY_A, None)), limit)
    _key_list("only in B", _one_sided(report.of(ONLY_B, None)), limit)
    echo()
    echo(report.summary())
    plain = report.counts("value")
    if sum(plain.values()):
        echo(
            f"{sum(plain.values())} values: {plain[IDENTICAL]} equal, {plain[CHANGED]} changed, "
            f"{plain[ONLY_A]} only in A, {plain[ONLY_B]} only in B"
        )
    echo("no differences" if report.equal else "the checkpoints differ")


def _limited_table(headers: list[str], rows: list[list[str]], limit: int | None) -> None:
    """A table of at most ``limit`` rows, then how many more ``--all`` would list."""
    print_table(headers, rows if limit is None else rows[:limit])
    _more(len(rows), limit)


def _more(count: int, limit: int | None) -> None:
    if limit is not None and count > limit:
        echo(f"… and {count - limit} more (--all lists them)")


def _value_text(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:59] + "…"
