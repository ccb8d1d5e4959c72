"""Time-to-tree and anonymous memory of opening a big checkpoint, and the per-tensor overhead of
checkpoints made of very many tiny tensors.

Big files: ``open_checkpoint`` next to plain ``torch.load(weights_only=True)`` and
``torch.load(..., mmap=True)``, each in a fresh process (so one measurement's heap cannot leak
into the next), all in the same run, warm page cache. Goals: within 2x of the bare mmap load,
and anonymous memory that does not grow with the file's size.

Scale (files that look like an attack): 500,000 one-byte tensors in a safetensors file, and a
torch.save'd dict of 100,000 views of one 64-byte storage. For each, in fresh processes: the
baseline a script would run (``safe_open`` listing every key and reading every tensor;
``torch.load(mmap=True)``, and ``torch.load`` + ``torch.save`` for the export), then
``open_checkpoint`` to a tree, ``iter_stats`` over every tensor, the CLI's exports, and the window
(``MainWindow.open_path`` offscreen, until the tab has every statistic). Goals for the 500 k tiny
tensors: tree < 5 s, statistics < 10 s.

    python benchmarks/open.py                 # everything
    python benchmarks/open.py --only scale    # the two scale files only
    python benchmarks/open.py --only big      # the big files and the 20,000-tensor one
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH_DATA,
    PeakRssAnon,
    cpu_seconds,
    make_big_checkpoint,
    print_table,
    warm_page_cache,
)

MODES = ("torch.load", "torch.load mmap", "open_checkpoint")
TINY_COUNT = 500_000
VIEW_COUNT = 100_000
# The scale cases: what each file is measured with, baselines first.
TINY_MODES = ("safe_open keys + read", "open_checkpoint", "iter_stats", "ckpt-gui stats", "window")
VIEW_MODES = (
    "torch.load mmap",
    "torch.load + torch.save",
    "open_checkpoint",
    "iter_stats",
    "ckpt-gui export --cpu-copy",
    "ckpt-gui export --params-only",
    "window",
)
GOALS = {("tiny", "open_checkpoint"): 5.0, ("tiny", "iter_stats"): 10.0}


def measure(mode: str, path: str) -> dict[str, float]:
    """One open in this process: seconds to a usable tree and peak RssAnon above baseline."""
    import torch

    from ckpt_gui.core.reader import open_checkpoint

    with PeakRssAnon() as peak:
        start = time.perf_counter()
        if mode == "torch.load":
            obj = torch.load(path, weights_only=True, map_location="cpu")
            count = len(obj)
        elif mode == "torch.load mmap":
            obj = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
            count = len(obj)
        else:
            ckpt = open_checkpoint(path)
            count = ckpt.totals().tensors
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "anon_mb": peak.above_baseline_mb, "tensors": count}


def measure_scale(mode: str, path: str) -> dict[str, Any]:
    """One scale measurement in this process: wall and CPU seconds, and what was counted."""
    if mode == "window":
        return measure_window(path)
    from ckpt_gui import cli
    from ckpt_gui.core.reader import open_checkpoint

    ckpt = open_checkpoint(path) if mode == "iter_stats" else None  # not timed: a row of its own
    cli._available_commands()  # the commands' imports are not timed either
    start, cpu = time.perf_counter(), cpu_seconds()
    count = run_scale(mode, path, ckpt)
    seconds, used = time.perf_counter() - start, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu": used, "count": count() if callable(count) else count}


def run_scale(mode: str, path: str, ckpt: Any) -> int | Callable[[], int]:
    """Run one scale measurement; what it counted, or how to count it once the clock stops."""
    import torch

    from ckpt_gui.core.reader import open_checkpoint

    if mode == "safe_open keys + read":
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            keys = list(f.keys())
            for key in keys:
                f.get_tensor(key)
        return len(keys)
    if mode == "torch.load mmap":
        return len(torch.load(path, weights_only=True, map_location="cpu", mmap=True))
    if mode == "torch.load + torch.save":
        obj = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
        with tempfile.TemporaryDirectory(dir=BENCH_DATA) as tmp:
            torch.save(obj, Path(tmp) / "copy.pt")
        return len(obj)
    if mode == "open_checkpoint":
        opened = open_checkpoint(path)
        return lambda: opened.totals().tensors
    if mode == "iter_stats":
        from ckpt_gui.core.stats import StatsResult, iter_stats

        return sum(isinstance(e, StatsResult) for e in iter_stats(ckpt.tensors()))
    if mode.startswith("ckpt-gui "):
        # The command as the command line runs it (from sys.argv, so with its garbage-collector
        # settings), its printed report thrown away; what it made is counted after the clock.
        from ckpt_gui import cli

        command, *flags = mode.split()[1:]
        tmp = Path(tempfile.mkdtemp(dir=BENCH_DATA))
        out = tmp / "out.pt"
        args = [command, path] + (
            [str(out), *flags, "--format", "pt"] if command == "export" else []
        )
        sys.argv = ["ckpt-gui", *args]
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            code = cli.main()
        if code != 0:
            raise RuntimeError(f"{mode} failed with exit status {code}")

        def count() -> int:
            try:
                if command == "stats":
                    return len(open_checkpoint(path).tensors())
                return len(torch.load(out, weights_only=True, mmap=True))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        return count
    raise ValueError(mode)


def measure_window(path: str) -> dict[str, Any]:
    """``MainWindow.open_path`` offscreen until the tab has every statistic (state READY), as
    ``gui_stall.py`` drives it, with the longest stall of the GUI thread meanwhile."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from benchmarks.gui_stall import GapProbe, run_until
    from ckpt_gui.qt.main_window import MainWindow
    from ckpt_gui.qt.widgets.checkpoint_view import READY

    settings = tempfile.mkdtemp()  # the recent-files list goes here, not to the user's
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, settings)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    run_until(app, lambda: True)
    probe = GapProbe()
    probe.start()
    start, cpu = time.perf_counter(), cpu_seconds()
    view = window.open_path(path)
    run_until(app, view.is_idle)
    seconds = time.perf_counter() - start
    probe.stop()
    used = cpu_seconds() - cpu
    if view.state != READY or view.model is None:
        raise RuntimeError(f"the window ended in state {view.state}: {view.error_message}")
    count = view.model.stats_count()
    window.close()
    shutil.rmtree(settings, ignore_errors=True)
    gap = max(probe.gaps_ms or [0.0])
    return {"seconds": seconds, "cpu": used, "count": count, "gap_ms": gap}


def run_in_fresh_process(mode: str, path: Path, flag: str = "--one") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, flag, mode, str(path)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{mode} on {path.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def many_tensors(count: int = 20_000) -> Path:
    """A checkpoint of many small tensors: here the per-tensor costs (pickle, scan) dominate."""
    import torch

    path = BENCH_DATA / f"many-{count}.pt"
    if not path.exists():
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        torch.save({f"layers.{i}.weight": torch.zeros(16) for i in range(count)}, path)
    return path


def tiny_safetensors(count: int = TINY_COUNT) -> Path:
    """A safetensors file of ``count`` one-byte tensors (uint8, shape [1]), written by hand:
    ``safetensors.torch.save_file`` would take minutes over that many tensors."""
    path = BENCH_DATA / f"tiny-{count}.safetensors"
    if not path.exists():
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        header = {
            f"tiny.{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]}
            for i in range(count)
        }
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.write(bytes(i % 256 for i in range(count)))
        partial.replace(path)
    return path


def shared_views(count: int = VIEW_COUNT) -> Path:
    """A torch.save'd dict of ``count`` views of one 64-byte storage (16 float32 values)."""
    import torch

    path = BENCH_DATA / f"views-{count}.pt"
    if not path.exists():
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        base = torch.arange(16.0)
        partial = path.with_name(path.name + ".partial")
        torch.save({f"v{i}": base[i % 16 :] for i in range(count)}, partial)
        partial.replace(path)
    return path


def big_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for gb in (2.1, 0.5, None):
        if gb is None:
            path = many_tensors()
        else:
            path = make_big_checkpoint(BENCH_DATA / f"big-float32-{gb:g}gb.pt", gb=gb)
        size = warm_page_cache(path)
        results = {}
        for mode in MODES:
            # best of three fresh processes for the time; the memory figure of the same runs
            runs = [run_in_fresh_process(mode, path) for _ in range(3)]
            best = min(runs, key=lambda r: r["seconds"])
            results[mode] = best
            rows.append(
                {
                    "file": f"{size / 1e9:.2f} GB",
                    "tensors": int(best["tensors"]),
                    "how": mode,
                    "time to tree (ms)": round(best["seconds"] * 1000, 1),
                    "peak RssAnon above baseline (MB)": round(max(r["anon_mb"] for r in runs), 1),
                }
            )
        ratio = results["open_checkpoint"]["seconds"] / results["torch.load mmap"]["seconds"]
        rows.append({"file": "", "how": f"open_checkpoint / mmap load = {ratio:.2f}x (goal <= 2x)"})
    return rows


def scale_rows(repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cases = (
        ("tiny", f"{TINY_COUNT:,} one-byte tensors (safetensors)", tiny_safetensors(), TINY_MODES),
        ("views", f"{VIEW_COUNT:,} views of one storage (pt)", shared_views(), VIEW_MODES),
    )
    for case, title, path, modes in cases:
        warm_page_cache(path)
        for mode in modes:
            runs = [run_in_fresh_process(mode, path, "--scale") for _ in range(repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            goal = GOALS.get((case, mode))
            verdict = (
                ""
                if goal is None
                else f"< {goal:g} s: {'met' if best['seconds'] < goal else 'NOT met'}"
            )
            rows.append(
                {
                    "file": title,
                    "how": mode,
                    "wall s": round(best["seconds"], 2),
                    "cpu s": round(best["cpu"], 2),
                    "count": int(best["count"]),
                    "GUI gap ms": round(best["gap_ms"], 1) if "gap_ms" in best else "-",
                    "goal": verdict,
                }
            )
            print(f"  {case}: {mode}: {best['seconds']:.2f} s", file=sys.stderr, flush=True)
            title = ""
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("big", "scale"), help="run one group of files only")
    parser.add_argument("--repeat", type=int, default=1, help="fresh runs per scale figure")
    args = parser.parse_args()
    if args.only != "scale":
        print_table(
            big_rows(),
            headers=[
                "file",
                "tensors",
                "how",
                "time to tree (ms)",
                "peak RssAnon above baseline (MB)",
            ],
        )
    if args.only != "big":
        if args.only is None:
            print()
        print(f"scale ({os.cpu_count()} CPUs; count: tensors, or statistics for iter_stats/window)")
        print_table(scale_rows(args.repeat))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    elif len(sys.argv) == 4 and sys.argv[1] == "--scale":
        print(json.dumps(measure_scale(sys.argv[2], sys.argv[3])))
    else:
        main()
