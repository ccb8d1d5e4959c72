"""``ckpt-gui export SRC DST ...``: write a clean, verified copy (see docs/cli.md).

Exit 0 only when the verified result is in place; any refusal or failure is one line and exit 2
(``ExportError`` is a ``CheckpointError``, which ``cli.main`` reports).
"""

from __future__ import annotations

import argparse
from collections.abc import Generator
from typing import TYPE_CHECKING

from ckpt_gui.commands.output import echo, echo_lines, end_progress, show_progress
from ckpt_gui.core.export.head_start import HeadStart, head_start
from ckpt_gui.core.export.options import (
    CASTS,
    NUMPY_CHOICES,
    ON_OVERFLOW,
    ExportError,
    ExportOptions,
    parse_size,
)
from ckpt_gui.core.preload import import_in_background
from ckpt_gui.core.reader import open_checkpoint

if TYPE_CHECKING:
    from ckpt_gui.core.export.run import ExportProgress, ExportResult

HELP = "write a clean, verified copy: parameters only or a CPU copy, cast, filtered, sharded"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="the checkpoint to export")
    parser.add_argument("dst", metavar="DST", help="the file to write (a folder with --shard-size)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--params-only",
        dest="mode",
        action="store_const",
        const="params",
        help="the model's state_dict alone (the default)",
    )
    mode.add_argument(
        "--cpu-copy",
        dest="mode",
        action="store_const",
        const="all",
        help="the whole checkpoint, every tensor on the CPU, every other value kept",
    )
    parser.add_argument("--dtype", choices=CASTS, help="cast floating tensors to this dtype")
    parser.add_argument(
        "--format",
        choices=("pt", "safetensors"),
        help="torch.save zip or safetensors (default: from DST's extension; "
        "safetensors when sharded)",
    )
    parser.add_argument(
        "--include", action="append", default=[], metavar="GLOB", help="keep only matching keys"
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="drop matching keys"
    )
    parser.add_argument(
        "--strip-prefix", default="", metavar="P", help="remove P from state_dict keys (module.)"
    )
    parser.add_argument(
        "--add-prefix",
        default="",
        metavar="P",
        help="prepend P to state_dict keys (with --strip-prefix: replace a prefix)",
    )
    parser.add_argument(
        "--shard-size",
        metavar="SIZE",
        help="write a folder of shards of at most SIZE (5GB, 500MB) with a Hugging Face index",
    )
    parser.add_argument(
        "--state-dict",
        metavar="KEY",
        help="with --params-only: which state_dict to keep when the file has several "
        "(e.g. model_state_dict, ema; default: the model's)",
    )
    parser.add_argument(
        "--on-overflow",
        choices=ON_OVERFLOW,
        default="error",
        help="what a --dtype cast does with finite values beyond the target's range: refuse "
        "(error, the default), saturate at the largest finite value (clamp) or write ±inf (inf)",
    )
    parser.add_argument(
        "--numpy",
        choices=NUMPY_CHOICES,
        help="what NumPy arrays in the exported part become: kept as NumPy arrays (keep; torch "
        "then loads them only through torch.serialization.safe_globals) or tensors (tensors)",
    )
    parser.add_argument(
        "--merge-into",
        metavar="BASE",
        help="SRC is a LoRA adapter: write BASE with it merged (W + scale·B·A per module)",
    )
    parser.add_argument(
        "--dequantize",
        action="store_true",
        help="SRC is quantized (fp8, mxfp4, gptq, awq, compressed-tensors, bitsandbytes, GGUF): "
        "write its weights dequantized (their dtype, or --dtype), in place of the raw parts",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace DST if it exists (it is refused otherwise)"
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow running code from the file (only for files you trust)",
    )


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    """The core's options from the command line."""
    try:
        shard_size = parse_size(args.shard_size) if args.shard_size else None
    except ValueError as exc:
        raise ExportError(f"--shard-size: {exc}") from None
    if args.state_dict is not None and args.mode == "all":
        raise ExportError("--state-dict chooses what --params-only keeps; a CPU copy keeps all")
    fmt = args.format
    if fmt is None:
        fmt = "safetensors" if shard_size or str(args.dst).endswith(".safetensors") else "pt"
    return ExportOptions(
        mode=args.mode or "params",
        format=fmt,
        dtype=args.dtype,
        state_dict=args.state_dict,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        strip_prefix=args.strip_prefix,
        add_prefix=args.add_prefix,
        shard_size=shard_size,
        on_overflow=args.on_overflow,
        numpy=args.numpy,
    )


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if args.dequantize and args.merge_into is not None:
        raise ExportError("--dequantize and --merge-into cannot be combined")
    # A plain export's tensor bytes are copied without torch (``head_start``: by a child
    # process, forked before any thread starts) while torch loads on a thread.
    head = HeadStart()
    if not args.dequantize and args.merge_into is None and not args.trust:
        head = head_start(args.src, args.dst, options, overwrite=args.force)
    with head:
        loading = import_in_background("ckpt_gui.core.export.run")
        loading.join()
        return _export(args, options, head)


def _export(args: argparse.Namespace, options: ExportOptions, head: HeadStart) -> int:
    from ckpt_gui.core.export.dequantize import iter_dequantize_export
    from ckpt_gui.core.export.merge import iter_merge_export
    from ckpt_gui.core.export.run import iter_export

    if args.dequantize:
        with open_checkpoint(args.src, trust=args.trust) as ckpt:
            result = _drain(iter_dequantize_export(ckpt, args.dst, options, overwrite=args.force))
        echo_lines(result.describe())
        return 0
    if args.merge_into is not None:
        with (
            open_checkpoint(args.src, trust=args.trust) as adapter,
            open_checkpoint(args.merge_into, trust=args.trust) as base,
        ):
            steps = iter_merge_export(adapter, base, args.dst, options, overwrite=args.force)
            result = _drain(steps)
        echo_lines(result.describe())
        return 0
    with open_checkpoint(args.src, trust=args.trust) as ckpt:
        steps = iter_export(ckpt, args.dst, options, overwrite=args.force, head_start=head)
        result = _drain(steps)
    echo_lines(result.describe())
    plan = result.plan
    others = [c for c in plan.candidates if c != plan.state_dict]
    if options.mode == "params" and others:
        names = ", ".join(repr(c) for c in others)
        echo(f"note: the file also holds {names}; choose one with --state-dict")
    return 0


def _drain(steps: Generator[ExportProgress, None, ExportResult]) -> ExportResult:
    """Run the export, showing progress on a terminal."""
    try:
        while True:
            try:
                progress = next(steps)
            except StopIteration as stop:
                result: ExportResult = stop.value
                break
            show_progress(f"{progress.phase} {progress.fraction:4.0%}")
    finally:
        steps.close()  # on Ctrl-C: removes the temporary file now, not at garbage collection
    end_progress()
    return result
