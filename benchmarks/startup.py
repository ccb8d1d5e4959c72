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

    python benchmarks/startup.py --cli [--runs 5]

The command line, whole process, medians over the runs: ``--help``, ``--version``, ``inspect``
and ``scan`` of a safetensors file, ``inspect`` of a folder of 100 safetensors shards with its
index, next to ``python -c pass`` and ``python -c "import torch"`` measured in the same run.
Goals (issue 18): ``--help`` <= 0.2 s, ``inspect`` of a safetensors file <= 0.3 s, the
100-shard folder <= 1 s (none of these needs torch).
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
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


CLI_GOALS = {"--help": 0.2, "inspect FILE.safetensors": 0.3, "inspect 100-shard folder": 1.0}


def cli_fixtures() -> tuple[Path, Path]:
    """A safetensors file of 300 tensors and a folder of 100 shards with its index."""
    data = Path(__file__).resolve().parent.parent / "bench-data"
    one, folder = data / "cli-300.safetensors", data / "shards-100"
    if one.exists() and (folder / "model.safetensors.index.json").exists():
        return one, folder
    import json

    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({f"layers.{i}.weight": torch.randn(64, 64) for i in range(300)}, one)
    weight_map = {}
    for shard in range(100):
        name = f"model-{shard + 1:05d}-of-00100.safetensors"
        tensors = {f"layers.{shard}.{k}.weight": torch.randn(32, 32) for k in range(20)}
        save_file(tensors, folder / name)
        weight_map.update(dict.fromkeys(tensors, name))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return one, folder


def cli_main(runs: int) -> int:
    one, folder = cli_fixtures()
    commands = {
        "--help": ["--help"],
        "--version": ["--version"],
        "inspect FILE.safetensors": ["inspect", str(one)],
        "scan FILE.safetensors": ["scan", str(one)],
        "inspect 100-shard folder": ["inspect", str(folder)],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    baselines = {
        'baseline: python -c "pass"': "pass",
        'baseline: python -c "import torch"': "import torch",
    }
    for name in baselines:
        seconds[name] = []
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "ckpt_gui", *argv], check=True, capture_output=True
            )
            seconds[name].append(time.perf_counter() - start)
        for name, code in baselines.items():
            seconds[name].append(timed(code))
    rows = [
        {"command": name, "s (median)": round(statistics.median(v), 3)}
        for name, v in seconds.items()
    ]
    print(f"ckpt-gui command line, whole process: {runs} runs, medians, {os.cpu_count()} CPUs")
    print_table(rows)
    for name, goal in CLI_GOALS.items():
        value = statistics.median(seconds[name])
        print(
            f"goal: {name} <= {goal} s -> {'met' if value <= goal else 'NOT met'} ({value:.3f} s)"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="the checkpoint to open")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="launch with --demo instead")
    parser.add_argument("--cli", action="store_true", help="time the command line instead")
    args = parser.parse_args()
    if args.cli:
        return cli_main(args.runs)
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
