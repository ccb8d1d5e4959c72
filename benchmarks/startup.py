"""From launch to the first painted window, next to ``python -c "import torch"`` in the same run.

    QT_QPA_PLATFORM=offscreen python benchmarks/startup.py [--runs 5] [--demo | PATH]

Each run launches ``python -m ckpt_gui`` (on PATH, a small generated checkpoint by default) with
``CKPT_GUI_STARTUP_PROBE=exit``: the app writes when things happened (``ckpt_gui/qt/startup.py``)
and quits once the full window has painted. Figures, medians over the runs, seconds from launch:
- first paint: the main window (menus, empty tab area) is on screen;
- torch imported: the background import of torch is done;
- full window painted: the tabs of the files named on the command line have painted (they
  open once torch has loaded);
and the baselines measured in the same run: ``python -c "import torch"`` and
``python -c "import ckpt_gui.qt.main_window"`` (the window's own imports: no torch).
Goal: first paint before torch has finished importing, and within 0.8 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table  # noqa: E402

GOAL_S = 0.8


def launch(args: list[str]) -> dict[str, float]:
    env = dict(os.environ, CKPT_GUI_STARTUP_PROBE="exit")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "ckpt_gui", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    moments = {"exit": time.time() - start}
    for line in done.stderr.splitlines():
        if line.startswith("ckpt-gui-probe "):
            _, name, when = line.split()[:3]
            moments[name] = float(when) - start
    if "window-painted" not in moments:
        raise RuntimeError(f"the window never painted:\n{done.stderr[-2000:]}")
    return moments


def timed(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="the checkpoint to open")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="launch with --demo instead")
    args = parser.parse_args()
    if args.demo:
        argv = ["--demo"]
    else:
        path = args.path or Path(__file__).resolve().parent.parent / "bench-data" / "startup.pt"
        if args.path is None and not path.exists():
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"w": torch.randn(64, 64), "b": torch.zeros(64)}, path)
        argv = [str(path)]
    runs = [launch(argv) for _ in range(args.runs)]
    torch_s = [timed("import torch") for _ in range(args.runs)]
    window_s = [timed("import ckpt_gui.qt.main_window") for _ in range(args.runs)]

    def median(name: str) -> float:
        return statistics.median(r.get(name, float("nan")) for r in runs)

    figures = (
        ("first paint", median("first-paint")),
        ("torch imported (background)", median("torch-imported")),
        ("tabs painted", median("window-painted")),
        ('baseline: python -c "import torch"', statistics.median(torch_s)),
        ("baseline: import ckpt_gui.qt.main_window", statistics.median(window_s)),
    )
    rows = [{"moment": name, "s from launch": round(value, 3)} for name, value in figures]
    print(f"{' '.join(argv)}: {args.runs} runs, medians, {os.cpu_count()} CPUs")
    print_table(rows)
    first, torch_done = median("first-paint"), median("torch-imported")
    met = first <= GOAL_S and first < torch_done
    print(
        f"goal: first paint before torch is imported and <= {GOAL_S} s -> "
        f"{'met' if met else 'NOT met'} (first paint {first:.3f} s, torch {torch_done:.3f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
