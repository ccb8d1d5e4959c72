"""``ckpt-gui trajectory PATH... [--json] [--filter GLOB] [--no-cache]``: how every tensor moved
across a training run (see docs/cli.md)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ckpt_gui.commands.output import (
    echo,
    end_progress,
    json_value,
    number,
    print_json,
    print_table,
    show_progress,
)
from ckpt_gui.core.errors import CorruptError
from ckpt_gui.core.run import (
    EXPLODING_RATIO,
    VANISHING_RATIO,
    Progress,
    TensorTrajectory,
    Trajectory,
    iter_trajectory,
)
from ckpt_gui.core.units import shape_text

HELP = "how every tensor moved across a training run (a folder or a list of checkpoints)"
DESCRIPTION = (
    "Follow every tensor of the first checkpoint across a run: its L2 norm, its change from the "
    "first checkpoint ||W_t-W_0||/||W_0||, the step-to-step change ||W_t-W_t-1||/||W_t-1||, the "
    "cosine between consecutive updates, min/max/std and NaN/Inf counts per checkpoint; flags "
    f"for frozen tensors (bit-identical throughout), NaN/Inf, exploding (norm >= "
    f"{EXPLODING_RATIO:g}x the first) and vanishing (<= {VANISHING_RATIO:g}x) norms; every "
    "numeric value (loss, lr, epoch, ...) and optimizer-state norms across the run. "
    "Checkpoints are ordered by the step stored in them, else the epoch, else the number in "
    "their names, else their modification times. Results are cached in the user cache folder."
)
# Value columns shown beside the checkpoints in the readable report, when the run has them.
SHOWN_VALUES = ("loss", "val_loss", "eval_loss", "lr", "learning_rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="checkpoints of one run, or one folder holding them (a Hugging Face Trainer "
        "output folder: its checkpoint-N/ folders)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--filter", metavar="GLOB", help="only tensors whose key matches, e.g. '*.weight'"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="measure everything again and keep nothing (default: reuse and update the cache)",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow running code from the files (only for files you trust)",
    )


def run(args: argparse.Namespace) -> int:
    steps = iter_trajectory(args.paths, glob=args.filter, cache=not args.no_cache, trust=args.trust)
    report: Trajectory | None = None
    try:
        for event in steps:
            if isinstance(event, Progress) and event.total_bytes:
                show_progress(f"{event.done_bytes / event.total_bytes:.0%}")
            elif isinstance(event, Trajectory):
                report = event
    finally:
        end_progress()
    assert report is not None
    if report.failed:
        first = report.failed[0]
        raise CorruptError(f"{first.path}: {first.message} (tensor {first.key})")
    if args.json:
        print_json(trajectory_json(report))
    else:
        print_report(report, args.filter)
    return 0


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _floats(values: list[float | None]) -> list[float | None]:
    return [_finite(v) for v in values]


def tensor_json(t: TensorTrajectory) -> dict[str, Any]:
    """One entry of ``tensors``: the docs/cli.md fields, then ``role``, ``keys`` (the key in
    each checkpoint), ``min``/``max``/``std``, ``first_nonfinite`` and ``flags``."""
    return {
        "key": t.key,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "norm": _floats(t.norm),
        "rel_change_from_first": _floats(t.rel_change_from_first),
        "rel_update": _floats(t.rel_update),
        "update_cosine": _floats(t.update_cosine),
        "nan": t.nan,
        "inf": t.inf,
        "frozen": t.frozen,
        "role": t.role,
        "keys": t.keys,
        "min": _floats(t.min),
        "max": _floats(t.max),
        "std": _floats(t.std),
        "first_nonfinite": t.first_nonfinite,
        "flags": list(t.flags),
    }


def trajectory_json(report: Trajectory) -> dict[str, Any]:
    """The ``trajectory`` object of docs/cli.md, plus ``optimizer`` (optimizer-state norms),
    ``thresholds`` (of the flags) and ``cache`` (what was opened and measured this time)."""
    return {
        "checkpoints": [
            {
                "path": str(c.path),
                "order_key": c.order_key,
                "order_value": json_value(c.order_value),
            }
            for c in report.checkpoints
        ],
        "order_by": report.order_by,
        "tensors": [tensor_json(t) for t in report.tensors],
        "values": {k: [_value(v) for v in vs] for k, vs in report.values.items()},
        "optimizer": [{"key": o.key, "norm": _floats(o.norm)} for o in report.optimizer],
        "thresholds": {"exploding": EXPLODING_RATIO, "vanishing": VANISHING_RATIO},
        "cache": {
            "opened": [str(report.checkpoints[i].path) for i in report.opened],
            "computed": {
                k: [list(u) if isinstance(u, tuple) else u for u in v]
                for k, v in report.computed.items()
            },
        },
    }


def _value(v: int | float | None) -> int | float | None:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def print_report(report: Trajectory, glob: str | None) -> None:
    n = len(report.checkpoints)
    echo(f"run of {n} checkpoints, ordered by {report.order_by}")
    echo()
    shown = [k for k in SHOWN_VALUES if k in report.values]
    rows = [
        [str(i), c.name, _cell(c.order_value)] + [_cell(report.values[k][i]) for k in shown]
        for i, c in enumerate(report.checkpoints)
    ]
    print_table(
        ["#", "checkpoint", report.order_by, *shown], rows, right={0, 2, *range(3, 3 + len(shown))}
    )
    echo()
    if not report.tensors:
        echo(f"no tensor matches {glob!r}" if glob is not None else "no tensors")
        return
    headers = ["key", "shape", "final norm", "change from first", "max step change", "flags"]
    rows = [
        [
            t.key,
            shape_text(t.shape),
            number(t.final_norm),
            number(t.final_change),
            number(t.max_rel_update),
            ", ".join(t.flags),
        ]
        for t in report.tensors
    ]
    print_table(headers, rows, right={2, 3, 4})
    echo()
    _summary(report)


def _summary(report: Trajectory) -> None:
    tensors = report.tensors
    frozen = [t for t in tensors if t.frozen]
    echo(f"{len(tensors)} tensors, {len(frozen)} frozen (bit-identical in every checkpoint)")
    bad = sorted(
        (t for t in tensors if t.first_nonfinite is not None),
        key=lambda t: t.first_nonfinite or 0,
    )
    if bad:
        first = bad[0]
        where = report.checkpoints[first.first_nonfinite or 0].name
        echo(f"NaN or Inf in {len(bad)} tensor(s), first in {first.key} at {where}")
    for flag, ratio in (("exploding", EXPLODING_RATIO), ("vanishing", VANISHING_RATIO)):
        hit = [t.key for t in tensors if flag in t.flags]
        if hit:
            more = " ..." if len(hit) > 5 else ""
            echo(f"{flag} (norm {ratio:g}x the first): " + ", ".join(hit[:5]) + more)
    measured = len(report.computed.get("checkpoints", []))
    if measured < len(report.checkpoints):
        echo(f"{len(report.checkpoints) - measured} checkpoint(s) read from the cache")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value)
    return str(value)
