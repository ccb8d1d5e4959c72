"""Speed and memory of ``trajectory`` over a training run, next to ``cat`` of the same files.

    python benchmarks/trajectory.py [--count 20] [--mb 500] [--path RUN_FOLDER] [--delete]
                                    [--repeat 3]

Generates (once, in ``bench-data/run-COUNTxMB/``) a run of COUNT float32 checkpoints of MB
megabytes each, every tensor moving a little from one checkpoint to the next, and times:
- the baseline, ``cat FILE... > /dev/null`` of every file, with the page cache dropped for the
  files first (``posix_fadvise(DONTNEED)``, no root needed) and again warm;
- the whole trajectory (``iter_trajectory``, no run cache), cold and warm, with its peak
  anonymous memory (RssAnon) above the baseline; warm, ``cat`` and the trajectory (without
  and with writing the run cache) run interleaved ``--repeat`` times, best shown, medians too;
- the run reopened from the run cache (a fresh temporary cache folder per measurement).
Goals: total time <= 1.3x the cat baseline, peak RssAnon < 300 MB, cached reopen < 1 s.
The default size is cut down when the disk has no room for it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DATA, PeakRssAnon, cpu_seconds, print_table  # noqa: E402
from ckpt_gui.core.chunks import drain  # noqa: E402
from ckpt_gui.core.run import RunCache, Trajectory, iter_trajectory  # noqa: E402

WIDTH = 1024
VOCAB = 8192


def shapes_for(mb: float) -> dict[str, tuple[int, ...]]:
    """A transformer-like state_dict of width 1024 with as many blocks as ``mb`` megabytes of
    float32 allow (an 8192-word embedding, then blocks of ~50 MB, the last one cut short)."""
    w = WIDTH
    block = {
        "ln.weight": (w,),
        "attn.qkv.weight": (3 * w, w),
        "attn.out.weight": (w, w),
        "mlp.fc_in.weight": (4 * w, w),
        "mlp.fc_in.bias": (4 * w,),
        "mlp.fc_out.weight": (w, 4 * w),
    }
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (VOCAB, w)}
    budget = mb * 1e6 / 4 - VOCAB * w
    i = 0
    while budget > 0:
        for key, shape in block.items():
            if budget <= 0:
                break
            rows = min(shape[0], max(1, int(budget // math.prod(shape[1:]))))
            shapes[f"blocks.{i}.{key}"] = (rows, *shape[1:])
            budget -= math.prod((rows, *shape[1:]))
        i += 1
    return shapes


def make_run(folder: Path, count: int, mb: float) -> list[Path]:
    """COUNT checkpoints ``model_step_N.pt``: weights W0 ~ N(0, 0.02), each next one
    W + N(0, 1e-4) (one tensor at a time in memory beyond the checkpoint being written)."""
    paths = [folder / f"model_step_{100 * (i + 1)}.pt" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    shapes = shapes_for(mb)
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}
    for path in paths:
        partial = path.with_name(path.name + ".partial")
        torch.save(state, partial)
        partial.replace(path)
        for t in state.values():
            t.add_(torch.randn(t.shape, generator=g), alpha=1e-4)
    return paths


def drop_cache(paths: list[Path]) -> None:
    """Evict the files from the page cache (clean pages only, hence the sync first)."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cat_seconds(paths: list[Path]) -> float:
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["cat", *map(str, paths)], stdout=null, check=True)
    return time.perf_counter() - start


def run_trajectory(
    paths: list[Path], cache: RunCache | bool, cold: bool = False
) -> tuple[float, float, float, Trajectory]:
    """Wall seconds, CPU seconds and peak RssAnon above the baseline (MB) of one run. Time and
    memory come from two runs (``cold``: each from a dropped page cache): the memory poller
    wakes every 2 ms and takes Python's lock, which slowed the measured run by up to 20 %."""
    if cold:
        drop_cache(paths)
    cpu, start = cpu_seconds(), time.perf_counter()
    report = drain(iter_trajectory(paths, cache=cache))
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if cold:
        drop_cache(paths)
    with PeakRssAnon() as mem:
        drain(iter_trajectory(paths, cache=False if isinstance(cache, RunCache) else cache))
    return seconds, cpu, mem.above_baseline_mb, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="checkpoints in the run (20)")
    parser.add_argument("--mb", type=float, default=500, help="megabytes per checkpoint (500)")
    parser.add_argument("--path", help="benchmark this run folder instead of a generated one")
    parser.add_argument("--delete", action="store_true", help="delete the generated run afterwards")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs of each (best shown)")
    args = parser.parse_args()

    if args.path:
        folder = Path(args.path)
        paths = sorted(p for p in folder.iterdir() if p.is_file())
    else:
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(BENCH_DATA).free
        mb = args.mb
        if args.count * mb * 1e6 * 1.05 > free - 4e9:  # leave 4 GB to everything else
            mb = max(10.0, (free - 4e9) / 1.05 / 1e6 / args.count)
            print(f"not enough disk for {args.count} x {args.mb:g} MB: {mb:.0f} MB each instead")
        folder = BENCH_DATA / f"run-{args.count}x{mb:.0f}mb"
        start = time.perf_counter()
        paths = make_run(folder, args.count, mb)
        print(f"run ready in {time.perf_counter() - start:.0f} s: {folder}")
    gb = sum(p.stat().st_size for p in paths) / 1e9
    print(
        f"{len(paths)} checkpoints, {gb:.2f} GB, {os.cpu_count()} cores, torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.1f} (other processes share the cores)"
    )

    drop_cache(paths)
    cat_cold = cat_seconds(paths)
    cold = run_trajectory(paths, cache=False, cold=True)
    # Warm: cat, the trajectory and the trajectory writing the run cache, interleaved, best of
    # --repeat each (with the median): on this kind of virtual machine the same warm pass
    # varies by 20-30 % from one run to the next, the baseline as much.
    cats: list[float] = []
    warms: list[tuple[float, float, float, Trajectory]] = []
    firsts: list[tuple[float, float, float, Trajectory]] = []
    cat_seconds(paths)  # the files back in the page cache after the cold runs
    for _ in range(args.repeat):
        cats.append(cat_seconds(paths))
        warms.append(run_trajectory(paths, cache=False))
        with tempfile.TemporaryDirectory() as tmp:
            firsts.append(run_trajectory(paths, cache=RunCache(Path(tmp))))
            reopened = run_trajectory(paths, cache=RunCache(Path(tmp)))
        assert reopened[3].opened == [] and len(reopened[3].tensors) == len(firsts[-1][3].tensors)
    cat_warm = min(cats)
    warm, first = min(warms, key=lambda r: r[0]), min(firsts, key=lambda r: r[0])

    rows = [
        ["cat every file, page cache dropped", cat_cold, gb / cat_cold, 1.0, "-", "-", ""],
        ["trajectory, page cache dropped", *_row(cold, gb, cat_cold), "<= 1.3x, < 300 MB"],
        ["cat every file, warm (best)", cat_warm, gb / cat_warm, 1.0, "-", "-", ""],
        ["trajectory, warm (best)", *_row(warm, gb, cat_warm), "<= 1.3x, < 300 MB"],
        ["trajectory, warm, writing the run cache (best)", *_row(first, gb, cat_warm), ""],
        ["reopened from the run cache", reopened[0], "-", "-", reopened[1], reopened[2], "< 1 s"],
    ]
    print()
    print_table(rows, ["", "seconds", "GB/s", "x cat", "CPU s", "peak RssAnon +MB", "goal"])
    cat_mid, warm_mid = _median(cats), _median([r[0] for r in warms])
    print(
        f"warm, {args.repeat} runs each: cat median {cat_mid:.2f} s, trajectory median "
        f"{warm_mid:.2f} s ({warm_mid / cat_mid:.2f}x the median cat), writing the cache median "
        f"{_median([r[0] for r in firsts]):.2f} s"
    )
    tensors = len(cold[3].tensors)
    print(f"{tensors} tensors x {len(paths)} checkpoints")
    if args.delete and not args.path:
        shutil.rmtree(folder)
    elif not args.path:
        print(f"the run stays in {folder} for the next time ({gb:.1f} GB; --delete removes it)")


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _row(measured: tuple[float, float, float, Trajectory], gb: float, base: float) -> list:
    seconds, cpu, mb, _ = measured
    return [seconds, gb / seconds, seconds / base, cpu, mb]


if __name__ == "__main__":
    main()
