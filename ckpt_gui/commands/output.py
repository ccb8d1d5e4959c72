"""Everything the commands write goes through here: lines, aligned tables, progress and JSON.

Keys, values, metadata, the names of pickled globals, error messages that quote a file and file
names themselves all come from files, and any of them can hold escape sequences that clear the
screen, move the cursor or overwrite a warning. So text is escaped here, at output time, in one
place (``clean``), rather than wherever it happens to be formatted: a command formats freely and
cannot forget. JSON escapes control characters itself (``ensure_ascii``), so strings stay exact.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Collection, Iterable, Sequence
from typing import Any, TextIO

from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.units import float_text


def clean(text: object) -> str:
    """``text`` as a terminal may show it: every control character (newline too, so a key
    cannot forge a line of output) written out as ``\\x1b``, ``\\n``, ``\\x9b`` and so on."""
    return printable(str(text), None)


def number(x: float | None) -> str:
    """A statistic in a table cell: ``core.units.float_text``'s rule, ``-`` when there is none."""
    return "-" if x is None else float_text(x)


def _stream(err: bool) -> TextIO:
    return sys.stderr if err else sys.stdout


def flush() -> None:
    """Everything written so far out to the terminal or pipe (before the process ends without
    Python's teardown, which would have flushed it); a reader that went away is no error."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass  # ``| head``: nothing more to say


def echo(text: object = "", *, err: bool = False) -> None:
    """Print one line of text (escaped: a newline inside it shows as ``\\n``)."""
    _stream(err).write(clean(text) + "\n")


def echo_lines(lines: Iterable[object], *, err: bool = False) -> None:
    """Print each of ``lines`` as one line (each escaped)."""
    _stream(err).write("".join(clean(line) + "\n" for line in lines))


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    right: Collection[int] = (),
    rule: bool = True,
) -> None:
    """Print ``rows`` under ``headers`` in aligned columns; ``right``: right-aligned columns;
    ``rule``: a line of dashes under the headers."""
    # Escape before measuring, so the columns line up with what the terminal shows.
    headers = [clean(h) for h in headers]
    cells = [[clean(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    if cells and all(len(row) == len(headers) for row in cells):
        # Column by column (a table can have half a million rows): each width in one max().
        widths = [max(w, max(map(len, column))) for w, column in zip(widths, zip(*cells))]
    else:
        for row in cells:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    pads = [str.rjust if i in right else str.ljust for i in range(len(widths))]

    def line(parts: Sequence[str]) -> str:
        return "  ".join([pad(c, w) for pad, c, w in zip(pads, parts, widths)]).rstrip()

    out = [line(headers)]
    if rule:
        out.append(line(["-" * w for w in widths]))
    out.extend(line(row) for row in cells)
    sys.stdout.write("\n".join(out) + "\n")


def show_progress(text: object) -> None:
    """Show ``text`` in place on stderr when stderr is a terminal (nothing otherwise)."""
    if sys.stderr.isatty():
        sys.stderr.write("\r" + clean(text))
        sys.stderr.flush()


def end_progress(width: int = 20) -> None:
    """Erase what ``show_progress`` showed."""
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * width + "\r")
        sys.stderr.flush()


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


def print_json(obj: Any, indent: int | None = None) -> None:
    """Print ``obj`` as strict JSON (no NaN). ``ensure_ascii`` is what keeps it safe for a
    terminal: without it ``json.dumps`` would pass DEL and the C1 controls (``\\x9b``, an 8-bit
    CSI) through raw; with it every non-ASCII character is a ``\\uXXXX`` escape."""
    text = json.dumps(obj, allow_nan=False, ensure_ascii=True, indent=indent)
    sys.stdout.write(text + "\n")
