"""Command-line entry point: ``ckpt-gui [PATH ...]`` opens the window, ``ckpt-gui CMD ...`` works
headless. Subcommands live in ``ckpt_gui.commands`` and call the core only, never Qt.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from importlib import import_module
from types import ModuleType
from typing import NoReturn

from ckpt_gui import __version__
from ckpt_gui.commands.output import echo, flush
from ckpt_gui.core.errors import Cancelled, CheckpointError, first_line
from ckpt_gui.core.memory import for_one_command

# name -> module in ckpt_gui.commands; each module has HELP, add_arguments(parser), run(args).
COMMANDS = ("inspect", "stats", "diff", "export", "scan", "trajectory")


class UsageError(Exception):
    """Bad arguments: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every error is one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _available_commands(names: Sequence[str] = COMMANDS) -> dict[str, ModuleType]:
    """The command modules of ``names`` (each imports what it needs: only the one run is
    imported, so that a header-only command never pays for torch)."""
    found = {}
    for name in names:
        try:
            found[name] = import_module(f"ckpt_gui.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ckpt_gui.commands.{name}":
                raise
    return found


def _headless_parser(commands: dict[str, ModuleType]) -> _Parser:
    parser = _Parser(prog="ckpt-gui", description="Inspect PyTorch checkpoints.")
    parser.add_argument("--version", action="version", version=f"ckpt-gui {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in commands.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
    return parser


def gui_parser() -> _Parser:
    parser = _Parser(
        prog="ckpt-gui",
        description="Open checkpoints in the window. Subcommands: " + ", ".join(COMMANDS) + ".",
    )
    parser.add_argument("--version", action="version", version=f"ckpt-gui {__version__}")
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="checkpoints to open, one tab each"
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), help="open A and B in compare mode"
    )
    parser.add_argument(
        "--run",
        nargs="+",
        metavar="PATH",
        help="open a training run: a folder of checkpoints, or several checkpoints",
    )
    parser.add_argument("--demo", action="store_true", help="write the demo checkpoint and open it")
    parser.add_argument(
        "--screenshot",
        metavar="OUT.png",
        help="wait until loading and statistics are done, save a picture of the window, exit",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow running code from the files named here (only for files you trust); "
        "without it, a file torch's safe loader refuses opens in the structural view",
    )
    return parser


def _interrupt_on_sigterm() -> None:
    """A terminated command unwinds like Ctrl-C, so exports remove their temporary files."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def fail(message: str) -> int:
    """Report an error in one line on stderr (escaped: messages quote keys and file names)."""
    echo(f"ckpt-gui: error: {message}", err=True)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command (or open the window) that ``argv`` (the process's arguments when
    ``None``) asks for; the exit status. A headless command run for the process (``argv``
    ``None``) ends the process once its output is flushed (``_end_process``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in COMMANDS:
        code = _headless(args_list, argv is None)
        if argv is None:
            _end_process(code)
        return code
    try:
        args = gui_parser().parse_args(args_list)
    except UsageError as exc:
        return fail(str(exc))

    from ckpt_gui.qt.app import run_app  # Qt is imported only for the window

    return run_app(args)


def _end_process(code: int) -> NoReturn:
    """End the process of a finished command without Python's teardown: with torch imported,
    unwinding its modules took 0.3-0.4 s of every command here, after the last byte of output
    (every file the command wrote is closed and synced by then)."""
    flush()
    os._exit(code)


def _headless(args_list: list[str], whole_process: bool) -> int:
    """Run the headless command ``args_list`` names; its exit status, every failure one line
    on stderr. ``whole_process``: the process ends with it."""
    try:
        if whole_process:
            # The process ends with the command: the cyclic collector's full passes (a
            # second each over a tree of a million nodes) are kept out of its way.
            for_one_command()
        _interrupt_on_sigterm()
        # torch's deprecation chatter is not for the user: stderr carries our one line.
        warnings.simplefilter("ignore")
        commands = _available_commands([args_list[0]])
        if args_list[0] not in commands:
            return fail(f"the {args_list[0]!r} command is not available in this version")
        args = _headless_parser(commands).parse_args(args_list)
        return int(commands[args.command].run(args))
    except UsageError as exc:
        return fail(str(exc))
    except CheckpointError as exc:
        return fail(str(exc))
    except Cancelled:
        return fail("cancelled")
    except KeyboardInterrupt:
        return fail("interrupted")
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - a user never sees a traceback
        return fail(first_line(f"unexpected {type(exc).__name__}: {exc}"))
