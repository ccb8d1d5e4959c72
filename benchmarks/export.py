"""Speed and memory of a parameters-only export, next to baselines measured in the same run.

    python benchmarks/export.py [--gb 2.1] [--keep]

On a generated float32 training checkpoint of at least ``--gb`` GB (a transformer state_dict
plus Adam's two moments per parameter, so the parameters are a third of the file) it times:
- ``iter_export`` with the Parameters-only preset, as .pt and as .safetensors: open, write
  (fsynced), re-open and verify every tensor, rename;
- ``cp`` of the same file (and ``cp`` followed by an fsync of the copy, which the export does);
- ``torch.load`` + ``torch.save`` of the model's state_dict, what one writes by hand.
Each with the peak anonymous memory (RssAnon) above the baseline. The page cache is warm.
Goals: export time <= 1.5x ``cp``; peak RssAnon < 256 MB above the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.1, help="size of the training checkpoint")
    parser.add_argument("--keep", action="store_true", help="keep the exported files")
    args = parser.parse_args()
    src = make_training_checkpoint(args.gb)
    out = BENCH_DATA / "export-out"
    out.mkdir(exist_ok=True)
    size = src.stat().st_size
    print(
        f"source: {src.name}, {size / 1e9:.2f} GB, torch {torch.__version__}, {os.cpu_count()} CPUs"
    )
    warm_page_cache(src)

    rows = []
    results: dict[str, ExportResult] = {}
    for fmt in ("pt", "safetensors"):
        dst = out / f"params.{fmt}"

        def export(dst: Path = dst, fmt: str = fmt) -> None:
            results[fmt] = run_export(src, dst, fmt)

        rows.append(measure(f"ckpt-gui export --params-only ({fmt})", export, dst, args.keep))
    cp = out / "cp.pt"
    rows.append(measure("cp", lambda: run_cp(src, cp, False), cp))
    rows.append(measure("cp + fsync", lambda: run_cp(src, cp, True), cp))
    loaded = out / "load-save.pt"
    rows.append(
        measure("torch.load + torch.save (model)", lambda: run_load_save(src, loaded), loaded)
    )
    cp_seconds = rows[2]["seconds"]
    for row in rows:
        row["x cp"] = row["seconds"] / cp_seconds
    print_table(rows)
    for fmt, result in results.items():
        print(f"{fmt}: " + "; ".join(result.describe()[1:]))
    worst = max(rows[0]["x cp"], rows[1]["x cp"])
    peak = max(rows[0]["peak RssAnon MB"], rows[1]["peak RssAnon MB"])
    print(
        f"goal: export <= 1.5x cp: {'met' if worst <= 1.5 else 'NOT met'} ({worst:.2f}x); "
        f"peak RssAnon < 256 MB: {'met' if peak < 256 else 'NOT met'} ({peak:.0f} MB)"
    )
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
