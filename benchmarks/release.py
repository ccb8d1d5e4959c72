"""What a tab leaves behind: open a big checkpoint, Reload (F5) it N times, close the tab, then
count what still holds the file.

    QT_QPA_PLATFORM=offscreen python benchmarks/release.py [--gb 1.0] [--reloads 10]
        [--format pt|safetensors|structural] [--path FILE] [--keep]

Each load waits for the statistics and selects the largest tensor (histogram and values panels
drawn), as a user would. Figures, side by side with the baseline: RssAnon (anonymous resident
memory, /proc/self/status), mappings of the file (/proc/self/maps), descriptors open on it
(/proc/self/fd). The baseline is taken after a smaller file of the same format was opened and
closed, so that what a process pays once is not counted as a leak ("before anything" shows it).
Goal: after closing, no mapping, no descriptor, and RssAnon within 50 MB of the baseline. The
generated files go under ``bench-data/`` and are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QCoreApplication, QEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from benchmarks.common import BENCH_DATA, make_big_checkpoint, print_table, rss_anon_kb  # noqa: E402
from ckpt_gui.qt.main_window import MainWindow  # noqa: E402
from ckpt_gui.qt.widgets.checkpoint_view import CheckpointView  # noqa: E402


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def file_mappings(inode: tuple[int, int]) -> int:
    """Lines of /proc/self/maps that map the file ``inode`` (counted even once it is deleted)."""
    dev, ino = inode
    count = 0
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or int(fields[4]) != ino:
                continue
            major, minor = (int(x, 16) for x in fields[3].split(":"))
            count += os.makedev(major, minor) == dev
    return count


def open_descriptors(inode: tuple[int, int]) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += (st.st_dev, st.st_ino) == inode
    return count


def rss_file_mb() -> float:
    """Resident pages of mapped files (the leaked mappings' pages show here, not in RssAnon)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    return 0.0


def settle(app: QApplication, seconds: float = 0.3) -> None:
    """Run the event loop (deleteLater, queued signals) and collect cycles."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        time.sleep(0.01)
    gc.collect()


def wait_for(app: QApplication, predicate, timeout: float = 300.0) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("timed out")
        app.processEvents()
        time.sleep(0.005)


def write_file(kind: str, gb: float, name: str = "release") -> Path:
    """A float32 checkpoint of about ``gb`` GB in ``bench-data/``: the transformer layout for
    ``pt`` and ``safetensors`` (0.46 GB at least), eight flat tensors for ``structural``."""
    if kind == "structural":
        return make_structural(BENCH_DATA / f"{name}-structural-{gb:g}gb.pt", gb)
    suffix = ".safetensors" if kind == "safetensors" else ".pt"
    return make_big_checkpoint(BENCH_DATA / f"{name}-{gb:g}gb{suffix}", gb=gb)


class Config:
    """Something torch's weights_only loader refuses, so the window uses the structural view."""

    def __init__(self) -> None:
        self.depth = 3


def make_structural(path: Path, gb: float) -> Path:
    import torch

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        n = int(gb * 1e9 / 4 / 8)
        state: dict[str, object] = {f"w{i}": torch.randn(n) for i in range(8)}
        state["cfg"] = Config()
        torch.save(state, path)
    return path


def look(app: QApplication, view: CheckpointView) -> None:
    """Wait for the statistics, then select the largest tensor and wait for its panels."""
    wait_for(app, view.is_idle)
    view.select_largest_tensor()
    wait_for(app, lambda: not view.panels_busy())
    settle(app, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--format", choices=("pt", "safetensors", "structural"), default="pt")
    parser.add_argument("--path", type=Path, help="an existing file instead of a generated one")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    path = args.path or write_file(args.format, args.gb)
    # Opened and closed first: what a process pays once (imports, plot widgets, the worker
    # threads' allocator arenas) is then in the baseline, and what remains later is a leak.
    warm_up = write_file("structural" if args.format == "structural" else args.format, 0.1, "warm")
    inode, warm_inode = _inode(path), _inode(warm_up)

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.resize(1200, 800)
    window.show()
    settle(app)
    cold = rss_anon_kb()
    view = window.open_path(warm_up)
    look(app, view)
    window.close_current()
    del view
    settle(app, 1.0)
    base = rss_anon_kb()
    rows: list[dict[str, object]] = [
        {"when": "before anything", "RssAnon MB": cold / 1024},
        {
            "when": "warm-up file closed (baseline)",
            "RssAnon MB": base / 1024,
            "+MB": 0.0,
            "RssFile MB": rss_file_mb(),
            "maps": file_mappings(warm_inode),
            "fds": open_descriptors(warm_inode),
        },
    ]

    def row(when: str) -> None:
        now = rss_anon_kb()
        rows.append(
            {
                "when": when,
                "RssAnon MB": now / 1024,
                "+MB": (now - base) / 1024,
                "RssFile MB": rss_file_mb(),
                "maps": file_mappings(inode),
                "fds": open_descriptors(inode),
            }
        )

    start = time.perf_counter()
    view = window.open_path(path)
    for i in range(args.reloads + 1):
        if i:
            window.reload_action.trigger()  # F5
        look(app, view)
        if i in (0, 1, 2) or i == args.reloads:
            row("opened" if i == 0 else f"after reload {i}")
    window.close_tab(window.tabs.indexOf(view))
    del view  # what a user has no handle on
    settle(app, 1.0)
    row("tab closed")
    size = path.stat().st_size / 1e9
    took = time.perf_counter() - start
    print(f"{path.name}: {size:.2f} GB, {args.reloads} reloads, {took:.0f} s")
    print_table(rows, ["when", "RssAnon MB", "+MB", "RssFile MB", "maps", "fds"])
    window.close()
    if not args.keep:
        warm_up.unlink()
        if args.path is None:
            path.unlink()


if __name__ == "__main__":
    main()
