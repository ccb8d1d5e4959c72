"""Speed and memory of the statistics sweep and of histograms, next to baselines run alongside.

    python benchmarks/stats.py [--gb 2.1] [--path FILE] [--repeat 3]

On a generated float32 transformer checkpoint (memory-mapped, warm page cache) it times:
- the full sweep of every statistic over every tensor (``iter_stats``), next to (a) the naive
  per-op torch loop a user would write and (b) one bare ``t.sum()`` per tensor, the memory-speed
  ceiling; with the peak anonymous memory (RssAnon) above the baseline for each;
- the exact 128-bin histogram of the 262 MB embedding, next to ``torch.histc``, and the sampled
  histogram of every tensor.
Goals: sweep >= 5 GB/s, exact histogram >= 1 GB/s, sampled < 50 ms, sweep peak < 256 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    PeakRssAnon,
    cpu_seconds,
    make_big_checkpoint,
    print_table,
    rss_anon_kb,
    timed,
    warm_page_cache,
)
from ckpt_gui.core.chunks import DEFAULT_CHUNK_ELEMS, drain, map_chunks  # noqa: E402
from ckpt_gui.core.histogram import histogram  # noqa: E402
from ckpt_gui.core.reader import open_checkpoint  # noqa: E402
from ckpt_gui.core.stats import StatsResult, iter_stats  # noqa: E402
from ckpt_gui.core.tree import Node  # noqa: E402


def sweep_ours(nodes: list[Node]) -> dict:
    return {e.key: e.stats for e in iter_stats(nodes) if isinstance(e, StatsResult)}


def sweep_naive(nodes: list[Node]) -> None:
    """What one writes without thinking about memory traffic: one full pass per statistic."""
    for node in nodes:
        t = node.load()
        torch.aminmax(t)
        torch.std_mean(t)
        torch.isfinite(t).sum()
        (t == 0).sum()
        torch.histc(t, 128)


def sweep_sum(nodes: list[Node]) -> None:
    for node in nodes:
        node.load().sum()


def sweep_sum_chunked(nodes: list[Node]) -> None:
    """The same bare sum, but chunked over the same worker threads as ``iter_stats``: the
    ceiling for that threading model when other processes share the cores."""
    for node in nodes:
        t = node.load()
        drain(map_chunks(t, min(DEFAULT_CHUNK_ELEMS, max(t.numel(), 1)), _none, _sum))


def _none(size: int) -> None:
    return None


def _sum(state: None, chunk: torch.Tensor) -> None:
    chunk.sum()


def measure(fn, nodes: list[Node], repeat: int) -> tuple[float, float, float]:
    """Best wall seconds and least CPU seconds over ``repeat`` runs, and the highest RssAnon
    above the baseline seen (MB)."""
    best, cpu, peak = float("inf"), float("inf"), 0.0
    for _ in range(repeat):
        with PeakRssAnon() as mem:
            start = cpu_seconds()
            seconds, _ = timed(fn, nodes)
            cpu = min(cpu, cpu_seconds() - start)
        best, peak = min(best, seconds), max(peak, mem.above_baseline_mb)
    return best, cpu, peak


def timed_cpu(fn, repeat: int) -> tuple[float, float]:
    """Best wall seconds and least CPU seconds of ``repeat`` calls."""
    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        start_cpu, start = cpu_seconds(), time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, cpu_seconds() - start_cpu)
    return best, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.1, help="size of the generated checkpoint")
    parser.add_argument("--path", help="benchmark this checkpoint instead of a generated one")
    parser.add_argument("--repeat", type=int, default=3, help="runs per fast measurement (best)")
    parser.add_argument(
        "--bf16-gb", type=float, default=1.1, help="size of the bfloat16 checkpoint (0: skip)"
    )
    args = parser.parse_args()

    path = Path(args.path) if args.path else None
    if path is None:
        start = time.perf_counter()
        path = make_big_checkpoint(gb=args.gb)
        print(f"checkpoint ready in {time.perf_counter() - start:.0f} s: {path}")
    warm_page_cache(path)
    with open_checkpoint(path) as ckpt:
        nodes = ckpt.tensors()
        total = sum(n.tensor.nbytes for n in nodes if n.tensor is not None)
        gb = total / 1e9
        print(
            f"{len(nodes)} tensors, {gb:.2f} GB ({ckpt.format}), {os.cpu_count()} cores, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"RssAnon before: {rss_anon_kb() / 1024:.0f} MB, "
            f"load average {os.getloadavg()[0]:.1f} (other processes share the cores)"
        )
        sweep_sum(nodes)  # map every tensor once before timing anything

        ours = measure(sweep_ours, nodes, args.repeat)
        bare = measure(sweep_sum, nodes, args.repeat)
        chunked = measure(sweep_sum_chunked, nodes, args.repeat)
        naive = measure(sweep_naive, nodes, 1)
        print("\nFull sweep of every statistic over every tensor")
        rows = [
            ("ckpt_gui iter_stats (all statistics)", ours, ">= 5 GB/s"),
            ("(a) naive per-op torch loop", naive, ""),
            ("(b) bare t.sum() pass: the ceiling", bare, ""),
            ("(b') t.sum() per chunk, same threads", chunked, ""),
        ]
        print_table(
            [[name, gb / s, s, cpu / gb, mb, goal] for name, (s, cpu, mb), goal in rows],
            ["", "GB/s", "seconds", "CPU s/GB", "peak RssAnon +MB", "goal"],
        )
        cores = os.cpu_count() or 1
        print(
            f"speed-up over the naive loop: {naive[0] / ours[0]:.0f}x; share of the ceiling: "
            f"{bare[0] / ours[0]:.0%} of (b), {chunked[0] / ours[0]:.0%} of (b'); "
            f"with all {cores} cores free the sweep's CPU time allows "
            f"~{cores * gb / ours[1]:.1f} GB/s"
        )

        stats = sweep_ours(nodes)
        big = max(nodes, key=lambda n: n.tensor.nbytes if n.tensor is not None else 0)
        t = big.load()
        mb = t.nbytes / 1e6
        runs = [
            (
                "exact, range from its TensorStats",
                lambda: histogram(t, exact=True, stats=stats[big.key]),
                ">= 1 GB/s",
            ),
            ("exact, own range pass first", lambda: histogram(t, exact=True), ">= 1 GB/s"),
            ("torch.histc(t, 128)", lambda: torch.histc(t, 128), ""),
        ]
        rows = []
        for name, fn, goal in runs:
            s, cpu = timed_cpu(fn, args.repeat)
            rows.append([name, mb / 1e3 / s, s * 1e3, cpu * 1e3 / mb, goal])
        s, cpu = timed_cpu(lambda: histogram(t), args.repeat)
        rows.append([f"sampled ({histogram(t).elements:,} elements)", "-", s * 1e3, "-", "< 50 ms"])
        print(f"\nHistograms, 128 bins: {big.key} {tuple(t.shape)}, {mb:.0f} MB")
        print_table(rows, ["", "GB/s", "ms", "CPU s/GB", "goal"])
        sampled_ms = [timed(histogram, node.load())[0] * 1e3 for node in nodes]
        print(
            f"sampled histogram of each of the {len(nodes)} tensors, first call: "
            f"median {statistics.median(sampled_ms):.1f} ms, max {max(sampled_ms):.1f} ms"
        )
    if args.bf16_gb > 0 and not args.path:
        bf16_sweep(args.bf16_gb, args.repeat)


def bf16_sweep(gb: float, repeat: int) -> None:
    """The sweep over a bfloat16 checkpoint: every chunk is widened to float32 on the way, and
    memory must stay flat (a float32 copy of the embedding alone would be 262 MB)."""
    path = make_big_checkpoint(gb=gb, dtype=torch.bfloat16)
    warm_page_cache(path)
    with open_checkpoint(path) as ckpt:
        nodes = ckpt.tensors()
        size = sum(n.tensor.nbytes for n in nodes if n.tensor is not None) / 1e9
        sweep_sum(nodes)
        ours = measure(sweep_ours, nodes, repeat)
        bare = measure(sweep_sum, nodes, repeat)
    print(f"\nbfloat16 checkpoint, {len(nodes)} tensors, {size:.2f} GB")
    rows = [
        ("ckpt_gui iter_stats (all statistics)", ours, "< 256 MB"),
        ("(b) bare t.sum() pass", bare, ""),
    ]
    print_table(
        [[name, size / s, s, cpu / size, mb, goal] for name, (s, cpu, mb), goal in rows],
        ["", "GB/s", "seconds", "CPU s/GB", "peak RssAnon +MB", "goal"],
    )


if __name__ == "__main__":
    main()
