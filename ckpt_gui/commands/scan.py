"""``ckpt-gui scan PATH [--json]``: every global the file's pickles reference, with a verdict.

Nothing is unpickled: the scanner reads opcodes only. Exit status 0 when every global is safe,
1 when any is unsafe or unknown (errors exit 2 through ``cli.main``).
"""

from __future__ import annotations

import argparse
import json

from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.safety.scan import ScanReport, scan_path

HELP = "list every global the file's pickles reference, each safe, unsafe or unknown"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a checkpoint file or folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    report = scan_path(args.path)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(format_report(report))
    return 0 if report.verdict == "safe" else 1


def format_report(report: ScanReport) -> str:
    """The readable table: one line per global, then the verdict."""
    rows = [
        (g.verdict, printable(f"{g.module}.{g.name}", None), printable(g.where, None), g.count)
        for g in report.globals
    ]
    lines = []
    if rows:
        width = min(max(len(r[1]) for r in rows), 60)
        lines.append(f"{'VERDICT':<8} {'GLOBAL':<{width}} WHERE")
        for verdict, name, where, count in rows:
            times = f" (x{count})" if count > 1 else ""
            lines.append(f"{verdict:<8} {name:<{width}} {where}{times}")
        lines.append("")
    for note in report.notes:
        lines.append(f"note: {printable(note, None)}")
    for skipped in report.skipped:
        lines.append(f"skipped: {printable(skipped, None)}")
    counts = {v: sum(g.verdict == v for g in report.globals) for v in ("unsafe", "unknown", "safe")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    pickles = len(report.pickles)
    lines.append(
        f"{printable(report.path)}: {report.verdict.upper()} ({report.format}; {summary}; "
        f"{pickles} pickle{'s' if pickles != 1 else ''} scanned)"
    )
    return "\n".join(lines)
