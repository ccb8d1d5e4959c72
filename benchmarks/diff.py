"""Speed and memory of ``iter_diff`` next to a naive torch loop, measured in the same run.

    python benchmarks/diff.py [--gb 2.1] [--repeat 2] [--chunk N]

A is the generated float32 transformer checkpoint of ``benchmarks/common.py``; B is the same model
"trained a little more": every tensor moved by about 0.1 % except the embedding, which stays
bit-identical (the "did fine-tuning touch the embeddings?" case). Both are memory-mapped with a
warm page cache. Throughput is over the combined input (A's bytes + B's bytes). The naive
baseline is the loop one writes by hand: ``torch.load`` both files, then per tensor
``torch.equal`` and the four metrics with one torch expression each.
Goal: >= 3 GB/s, peak anonymous memory (RssAnon) bounded like the statistics sweep (< 256 MB).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    BENCH_DATA,
    PeakRssAnon,
    make_big_checkpoint,
    print_table,
    timed,
    warm_page_cache,
)
from ckpt_gui.core.diff import DiffReport, diff_checkpoints  # noqa: E402
from ckpt_gui.core.diff.metrics import DEFAULT_CHUNK_ELEMS  # noqa: E402
from ckpt_gui.core.reader import open_checkpoint  # noqa: E402

_SLAB = 1 << 24
FROZEN = "embed_tokens"  # tensors whose key contains this stay identical in B


def make_trained_copy(path_a: Path, path_b: Path) -> Path:
    """B = A + N(0, 2e-5) noise (about 0.1 % of the weights' scale), the embedding untouched.
    Built on file-backed scratch mappings so the generator's own memory stays at one slab."""
    if path_b.exists():
        return path_b
    partial = path_b.with_name(path_b.name + ".partial")
    scratch = path_b.with_name(path_b.name + ".scratch")
    scratch.mkdir(exist_ok=True)
    try:
        a = torch.load(path_a, mmap=True, weights_only=True)
        g = torch.Generator().manual_seed(1234)
        state = {}
        for i, (key, t) in enumerate(a.items()):
            out = torch.from_file(str(scratch / str(i)), shared=True, size=t.numel(), dtype=t.dtype)
            flat = t.reshape(-1)
            for start in range(0, t.numel(), _SLAB):
                piece = flat[start : start + _SLAB]
                if FROZEN not in key:
                    piece = piece + 2e-5 * torch.randn(piece.numel(), generator=g)
                out[start : start + piece.numel()] = piece
            state[key] = out.view(t.shape)
        torch.save(state, partial)
        partial.replace(path_b)
    finally:
        for f in scratch.glob("*"):
            f.unlink()
        scratch.rmdir()
    return path_b


def ours(path_a: Path, path_b: Path, chunk: int) -> DiffReport:
    with open_checkpoint(path_a) as a, open_checkpoint(path_b) as b:
        return diff_checkpoints(a, b, chunk_elems=chunk)


def naive(path_a: Path, path_b: Path) -> dict[str, tuple[float, ...]]:
    """Load both, then the same metrics with plain torch, one expression each."""
    sa = torch.load(path_a, weights_only=True)
    sb = torch.load(path_b, weights_only=True)
    out = {}
    for key, a in sa.items():
        b = sb[key]
        if torch.equal(a, b):
            out[key] = (0.0, 0.0, 0.0, 1.0)
            continue
        d = (a - b).abs()
        out[key] = (
            d.max().item(),
            d.mean().item(),
            ((a - b).norm() / a.norm()).item(),
            torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item(),
        )
    return out


def check(report: DiffReport, reference: dict[str, tuple[float, ...]]) -> float:
    """Largest relative disagreement between our rel_l2 and the naive one."""
    worst = 0.0
    for e in report.entries:
        if e.metrics is None or e.rel_l2 is None:
            continue
        ref = reference[e.key][2]
        if ref:
            worst = max(worst, abs(e.rel_l2 - ref) / ref)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.1, help="size of each checkpoint")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs (ours)")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK_ELEMS, help="chunk elements")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    path_a = make_big_checkpoint(gb=args.gb)
    path_b = make_trained_copy(path_a, BENCH_DATA / f"diff-b-float32-{args.gb:g}gb.pt")
    total = warm_page_cache(path_a) + warm_page_cache(path_b)
    with open_checkpoint(path_a) as a:
        nbytes = a.totals().nbytes
        tensors = a.totals().tensors
    print(
        f"A: {path_a.name}  B: {path_b.name}  {tensors} tensors, "
        f"{nbytes / 1e9:.2f} GB each, {2 * nbytes / 1e9:.2f} GB compared "
        f"({total / 1e9:.2f} GB on disk, warm); torch threads {torch.get_num_threads()}"
    )
    rows = []
    with PeakRssAnon() as peak:
        seconds, report = timed(ours, path_a, path_b, args.chunk, repeat=args.repeat)
    rows.append(
        {
            "method": f"iter_diff (chunks of {args.chunk:,})",
            "seconds": seconds,
            "GB/s": 2 * nbytes / 1e9 / seconds,
            "peak RssAnon MB": peak.above_baseline_mb,
        }
    )
    counts = report.counts()
    print(f"report: {report.summary()}")
    if not args.skip_naive:
        with PeakRssAnon() as peak:
            seconds, reference = timed(naive, path_a, path_b)
        rows.append(
            {
                "method": "naive: torch.load both + torch ops",
                "seconds": seconds,
                "GB/s": 2 * nbytes / 1e9 / seconds,
                "peak RssAnon MB": peak.above_baseline_mb,
            }
        )
        worst = check(report, reference)
        print(f"rel_l2 agrees with the naive loop to {worst:.1e} (relative, worst tensor)")
    print()
    print_table(rows)
    goal = rows[0]["GB/s"] >= 3 and rows[0]["peak RssAnon MB"] < 256
    print(
        f"\ngoal >= 3 GB/s with peak RssAnon < 256 MB: {'met' if goal else 'NOT met'}; "
        f"{counts['identical']} identical, {counts['changed']} changed"
    )
    assert math.isfinite(rows[0]["GB/s"])


if __name__ == "__main__":
    main()
