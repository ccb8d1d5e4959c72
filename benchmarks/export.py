"""Speed and memory of a parameters-only export, next to baselines measured in the same run.

    python benchmarks/export.py [--gb 2.1] [--only params|train] [--keep] [--repeat 3]

Two generated float32 checkpoints of at least ``--gb`` GB:
- ``params``: a bare transformer state_dict, 100 % parameters, so a params-only export writes
  every byte of the file (the case that shows the cost of writing);
- ``train``: the same model inside a training checkpoint with Adam's two moments per parameter
  (the parameters are a third of the file).
For each, with a warm page cache and no dirty pages pending:
- ``iter_export`` with the Parameters-only options, as .pt and as .safetensors (open, write,
  fsync, re-open and verify every tensor, rename), in this process (torch already imported);
- the same from the command line, ``python -m ckpt_gui export SRC DST --params-only``: the
  whole process, ``import torch`` included;
- baselines: ``cp`` of the file, ``cp`` followed by an fsync of the copy (what an export must
  do at least), and ``torch.load`` + ``torch.save`` of the model, what one writes by hand.
Each with the peak anonymous memory (RssAnon) above the baseline. The exports and the ``cp``
baselines run interleaved ``--repeat`` times: the best of each is shown, with the median.
Goals (issue 18): export <= 1.3x ``cp`` + fsync of the same file; peak RssAnon < 256 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    BENCH_DATA,
    PeakRssAnon,
    make_big_checkpoint,
    print_table,
    warm_page_cache,
)
from ckpt_gui.core.export import ExportOptions, ExportResult, iter_export  # noqa: E402

_SLAB = 1 << 24


def make_training_checkpoint(gb: float) -> Path:
    """``{"model", "optimizer" (Adam: step, exp_avg, exp_avg_sq), "epoch", "global_step"}`` of at
    least ``gb`` GB, built on file-backed scratch mappings so that making it needs no RAM."""
    target = BENCH_DATA / f"train-float32-{gb:g}gb.pt"
    if target.exists():
        return target
    model_file = make_big_checkpoint(gb=gb / 3 + 0.01)
    model = torch.load(model_file, mmap=True, weights_only=True)
    scratch = BENCH_DATA / "train.scratch"
    scratch.mkdir(exist_ok=True)
    try:
        state = {}
        for i, p in enumerate(model.values()):
            moments = {}
            for name, fn in (("exp_avg", lambda x: x * 0.1), ("exp_avg_sq", torch.square)):
                m = torch.from_file(
                    str(scratch / f"{i}.{name}"), shared=True, size=p.numel(), dtype=p.dtype
                )
                flat = p.reshape(-1)
                for start in range(0, p.numel(), _SLAB):
                    m[start : start + _SLAB] = fn(flat[start : start + _SLAB])
                moments[name] = m.view(p.shape)
            state[i] = {"step": torch.tensor(1000.0), **moments}
        groups = [{"lr": 3e-4, "betas": (0.9, 0.999), "params": list(range(len(model)))}]
        obj = {
            "model": model,
            "optimizer": {"state": state, "param_groups": groups},
            "epoch": 3,
            "global_step": 1000,
        }
        partial = target.with_name(target.name + ".partial")
        torch.save(obj, partial)
        partial.replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def run_export(src: Path, dst: Path, fmt: str) -> ExportResult:
    steps = iter_export(src, dst, ExportOptions(mode="params", format=fmt))
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def run_cp(src: Path, dst: Path, fsync: bool) -> None:
    subprocess.run(["cp", str(src), str(dst)], check=True)
    if fsync:
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def run_load_save(src: Path, dst: Path) -> None:
    obj = torch.load(src, map_location="cpu", weights_only=True)
    torch.save(obj["model"], dst)


def measure(name: str, fn, out: Path, keep: bool = False) -> dict:
    """Wall time and peak RssAnon of ``fn()`` writing ``out``, with a warm source and no dirty
    pages pending from the previous run."""
    os.sync()
    with PeakRssAnon() as peak:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    written = out.stat().st_size if out.exists() else 0
    if not keep:
        _remove(out)
    return {
        "what": name,
        "seconds": seconds,
        "written GB": written / 1e9,
        "peak RssAnon MB": peak.above_baseline_mb,
    }


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def run_cli(src: Path, dst: Path, fmt: str) -> None:
    command = [sys.executable, "-m", "ckpt_gui", "export", str(src), str(dst), "--params-only"]
    subprocess.run([*command, "--format", fmt], check=True, capture_output=True)


def bench_source(
    kind: str, src: Path, out: Path, keep: bool, repeat: int
) -> tuple[list[dict], list[str]]:
    """The rows for one source, each with its ratio to ``cp`` + fsync, and the export reports.
    The exports and ``cp`` + fsync run interleaved ``repeat`` times, the best run of each shown
    with the median: on this kind of virtual machine writing a gigabyte of fresh page cache
    takes up to twice as long right after another gigabyte was freed, whoever writes it."""
    warm_page_cache(src)
    cp = out / "cp.pt"
    reports: list[tuple[str, list[ExportResult]]] = []
    runs: dict[str, list[dict]] = {}
    jobs: list[tuple[str, Any, Path]] = [
        ("baseline: cp", lambda: run_cp(src, cp, False), cp),
        ("baseline: cp + fsync", lambda: run_cp(src, cp, True), cp),
    ]
    for fmt in ("pt", "safetensors"):
        dst = out / f"params.{fmt}"
        results: list[ExportResult] = []

        def in_process(dst: Path = dst, fmt: str = fmt, results: list = results) -> None:
            results.append(run_export(src, dst, fmt))

        jobs.append((f"iter_export params-only ({fmt})", in_process, dst))
        jobs.append(
            (
                f"ckpt-gui export --params-only --format {fmt} (process)",
                lambda dst=dst, fmt=fmt: run_cli(src, dst, fmt),
                dst,
            )
        )
        reports.append((fmt, results))
    for _ in range(repeat):
        for name, fn, dst in jobs:
            runs.setdefault(name, []).append(measure(name, fn, dst, keep))
    rows = []
    for measured in runs.values():
        best = min(measured, key=lambda r: r["seconds"])
        seconds = sorted(r["seconds"] for r in measured)
        rows.append({**best, "median s": seconds[len(seconds) // 2]})
    loaded = out / "load-save.pt"
    save = run_load_save if kind == "train" else run_load_save_all
    rows.append(measure("baseline: torch.load + torch.save", lambda: save(src, loaded), loaded))
    cp_sync = rows[1]["seconds"]
    for row in rows:
        row["x cp+fsync"] = row["seconds"] / cp_sync
    lines = [f"{fmt}: " + "; ".join(results[0].describe()[1:]) for fmt, results in reports]
    return rows, lines


def run_load_save_all(src: Path, dst: Path) -> None:
    torch.save(torch.load(src, map_location="cpu", weights_only=True), dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.1, help="size of the checkpoints")
    parser.add_argument("--only", choices=("params", "train"), help="one of the two sources")
    parser.add_argument("--keep", action="store_true", help="keep the exported files")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs (best shown)")
    args = parser.parse_args()
    sources = {
        "params": lambda: make_big_checkpoint(gb=args.gb),
        "train": lambda: make_training_checkpoint(args.gb),
    }
    out = BENCH_DATA / "export-out"
    out.mkdir(exist_ok=True)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; warm page cache")
    verdicts = []
    for kind, make in sources.items():
        if args.only and kind != args.only:
            continue
        src = make()
        print(f"\n{kind}: {src.name}, {src.stat().st_size / 1e9:.2f} GB")
        rows, reports = bench_source(kind, src, out, args.keep, args.repeat)
        print_table(rows)
        for line in reports:
            print(line)
        exports = [r for r in rows if not r["what"].startswith("baseline")]
        worst = max(exports, key=lambda r: r["x cp+fsync"])
        peak = max(r["peak RssAnon MB"] for r in exports if "process" not in r["what"])
        verdicts.append(
            f"{kind}: export <= 1.3x cp + fsync: "
            f"{'met' if worst['x cp+fsync'] <= 1.3 else 'NOT met'} "
            f"(worst {worst['x cp+fsync']:.2f}x, {worst['what']}); "
            f"peak RssAnon < 256 MB: {'met' if peak < 256 else 'NOT met'} ({peak:.0f} MB)"
        )
    print()
    for line in verdicts:
        print("goal: " + line)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
