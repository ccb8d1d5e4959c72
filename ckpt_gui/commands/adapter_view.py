"""What ``inspect`` and ``stats`` add for a LoRA adapter: ``--base BASE``, the ``"adapter"`` JSON
object (see docs/cli.md) and the per-module table."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ckpt_gui.commands.output import echo, number, print_table
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.reader import open_checkpoint

if TYPE_CHECKING:  # the analysis (and torch with it) is imported for adapters only
    from ckpt_gui.core.adapters import AdapterReport


def add_base_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        metavar="BASE",
        help="with a LoRA adapter: its base model, to show ‖ΔW‖/‖W‖ per module and the "
        "config's targets that match no base weight",
    )


def adapter_reports(
    ckpt: Checkpoint, base: str | None, stack: ExitStack, *, trust: bool = False
) -> list[AdapterReport]:
    """The report of every adapter ``ckpt`` holds (none for a checkpoint that is not an
    adapter, unless ``base`` asks for one: then not being one is an error)."""
    if base is None and ckpt.kind != "lora-adapter":
        return []
    from ckpt_gui.core.adapters import adapter_report, find_adapters

    found = stack.enter_context(find_adapters(ckpt))
    base_ckpt = stack.enter_context(open_checkpoint(base, trust=trust)) if base else None
    reports = [adapter_report(a, base_ckpt) for a in found.adapters]
    reports[0].notes.extend(found.notes)
    return reports


def add_adapter_json(out: dict[str, Any], reports: list[AdapterReport]) -> None:
    """``"adapter"`` (the opened one) and, when the folder holds several, ``"adapters"``."""
    if not reports:
        return
    out["adapter"] = reports[0].to_json()
    if "unmatched" in out["adapter"]:
        out["unmatched"] = out["adapter"]["unmatched"]
    if len(reports) > 1:
        out["adapters"] = [r.to_json() for r in reports]


def print_adapters(reports: list[AdapterReport]) -> None:
    for report in reports:
        echo()
        print_adapter(report)


def print_adapter(report: AdapterReport) -> None:
    scale = "alpha/√r" if report.use_rslora else "alpha/r"
    head = f"adapter {report.name}: LoRA r={report.r}, alpha={number(report.alpha)} ({scale})"
    if report.use_dora:
        head += ", DoRA"
    echo(f"{head}, {len(report.modules)} target modules ({report.folder})")
    with_base = report.base is not None
    if with_base:
        assert report.base_match is not None
        echo(f"base: {report.base} (names: {report.base_match.describe()})")
    if report.modules:
        headers = ["module", "r", "scale", "‖ΔW‖", "stable rank"]
        headers += ["‖ΔW‖/‖W‖"] if with_base else []
        headers += ["flags"]
        rows = []
        for m in report.modules:
            row = [m.module, "-" if m.r is None else str(m.r), number(m.scale)]
            row += [number(m.delta_norm), number(m.stable_rank)]
            row += [number(m.relative)] if with_base else []
            row += ["; ".join(m.flags)]
            rows.append(row)
        right = set(range(1, len(headers) - 1))
        echo()
        print_table(headers, rows, right=right)
    if report.saved:
        echo()
        echo("modules_to_save (full tensors, replacing the base's):")
        for saved in report.saved:
            where = f" -> {saved['base_key']}" if saved["base_key"] else ""
            echo(f"  {saved['key']} {saved['dtype']} {saved['shape']}{where}")
    if report.other:
        echo(f"other tensors: {', '.join(report.other[:8])}")
    if report.unmatched:
        echo(f"unmatched targets (no base weight): {', '.join(report.unmatched)}")
    for note in report.notes:
        echo(f"  note: {note}")
