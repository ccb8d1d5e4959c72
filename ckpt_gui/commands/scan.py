"""``ckpt-gui scan PATH [--json]``: every global the file's pickles reference, with a verdict.

Nothing is unpickled: the scanner reads opcodes only. Exit status 0 when every global is safe,
1 when any is unsafe or unknown (errors exit 2 through ``cli.main``).
"""

from __future__ import annotations

import argparse

from ckpt_gui.commands.output import echo, echo_lines, print_json, print_table
from ckpt_gui.core.safety.scan import ScanReport, scan_path

HELP = "list every global the file's pickles reference, each safe, unsafe or unknown"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a checkpoint file or folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    report = scan_path(args.path)
    if args.json:
        print_json(report.to_json(), indent=1)
    else:
        print_report(report)
    return 0 if report.verdict == "safe" else 1


def print_report(report: ScanReport) -> None:
    """The readable table: one line per global, then notes and the verdict."""
    if report.globals:
        rows = [
            [g.verdict, f"{g.module}.{g.name}", g.where + (f" (x{g.count})" if g.count > 1 else "")]
            for g in report.globals
        ]
        print_table(["VERDICT", "GLOBAL", "WHERE"], rows, rule=False)
        echo()
    echo_lines(f"note: {note}" for note in report.notes)
    echo_lines(f"skipped: {skipped}" for skipped in report.skipped)
    counts = {v: sum(g.verdict == v for g in report.globals) for v in ("unsafe", "unknown", "safe")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    pickles = len(report.pickles)
    echo(
        f"{report.path}: {report.verdict.upper()} ({report.format}; {summary}; "
        f"{pickles} pickle{'s' if pickles != 1 else ''} scanned)"
    )
