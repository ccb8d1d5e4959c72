"""Printing helpers shared by the subcommands: aligned tables and strict JSON."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Collection, Sequence
from typing import Any

from ckpt_gui.core.safety.filecheck import printable


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> None:
    """Print ``rows`` under ``headers`` in aligned columns; ``right``: right-aligned columns."""
    # Keys and values come from the file: escape anything that could drive the terminal.
    rows = [[printable(cell, None) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    sys.stdout.write("\n".join(out) + "\n")


def json_value(value: Any) -> Any:
    """A value JSON can hold: non-finite floats and unknown objects become repr strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return repr(value)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
