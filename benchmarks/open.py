"""Time-to-tree and anonymous memory of opening a big checkpoint.

Compares ``open_checkpoint`` with plain ``torch.load(weights_only=True)`` and with
``torch.load(..., mmap=True)``, each in a fresh process (so one measurement's heap cannot leak
into the next), all in the same run, warm page cache. Goals: within 2x of the bare mmap load,
and anonymous memory that does not grow with the file's size.

    python benchmarks/open.py    # 2.1 GB and 0.5 GB checkpoints, and one of 20,000 small tensors
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH_DATA,
    PeakRssAnon,
    make_big_checkpoint,
    print_table,
    warm_page_cache,
)

MODES = ("torch.load", "torch.load mmap", "open_checkpoint")


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


def run_in_fresh_process(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def many_tensors(count: int = 20_000) -> Path:
    """A checkpoint of many small tensors: here the per-tensor costs (pickle, scan) dominate."""
    import torch

    path = BENCH_DATA / f"many-{count}.pt"
    if not path.exists():
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        torch.save({f"layers.{i}.weight": torch.zeros(16) for i in range(count)}, path)
    return path


def main() -> None:
    rows = []
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
    print_table(
        rows,
        headers=["file", "tensors", "how", "time to tree (ms)", "peak RssAnon above baseline (MB)"],
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        main()
