"""Helpers shared by the benchmark scripts: a big generated checkpoint, memory probes, a table.

Generated files go under ``bench-data/`` at the repository root (ignored by git) and are reused
from one run to the next.
"""

from __future__ import annotations

import json
import math
import os
import resource
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATA = ROOT / "bench-data"

WIDTH = 2048
VOCAB = 32000
_SLAB = 1 << 24  # elements generated at a time: 64 MB of float32
_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
}


def transformer_shapes(gb: float, dtype: torch.dtype = torch.float32) -> dict[str, tuple[int, ...]]:
    """A GPT-like state_dict layout of width 2048 with a 32000x2048 embedding, with as many
    blocks as it takes to reach ``gb`` gigabytes (ten blocks for the default 2.1 GB)."""
    w = WIDTH
    block = {
        "ln_1.weight": (w,),
        "ln_1.bias": (w,),
        "attn.q_proj.weight": (w, w),
        "attn.k_proj.weight": (w, w),
        "attn.v_proj.weight": (w, w),
        "attn.o_proj.weight": (w, w),
        "attn.o_proj.bias": (w,),
        "ln_2.weight": (w,),
        "ln_2.bias": (w,),
        "mlp.fc_in.weight": (4 * w, w),
        "mlp.fc_in.bias": (4 * w,),
        "mlp.fc_out.weight": (w, 4 * w),
        "mlp.fc_out.bias": (w,),
    }
    per_block = sum(math.prod(s) for s in block.values())
    embed = VOCAB * w
    blocks = max(1, math.ceil((gb * 1e9 / dtype.itemsize - embed - w) / per_block))
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, w)}
    for i in range(blocks):
        shapes.update({f"model.layers.{i}.{k}": s for k, s in block.items()})
    shapes["model.norm.weight"] = (w,)
    return shapes


def _slabs(key: str, numel: int, dtype: torch.dtype, seed: int) -> Iterator[torch.Tensor]:
    """The values of one tensor in slabs: weights ~ N(0, 0.02), norms 1, biases 0."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, numel, _SLAB):
        n = min(_SLAB, numel - start)
        if key.endswith("bias"):
            yield torch.zeros(n, dtype=dtype)
        elif ".ln_" in key or key.endswith("norm.weight"):
            yield torch.ones(n, dtype=dtype)
        else:
            yield (torch.randn(n, generator=g) * 0.02).to(dtype)


def make_big_checkpoint(
    path: str | os.PathLike[str] | None = None,
    gb: float = 2.1,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a transformer-like state_dict of at least ``gb`` GB unless ``path`` exists.

    ``.safetensors`` files are streamed tensor by tensor; ``.pt`` files are built on a
    file-backed scratch mapping and saved with ``torch.save``. Either way the generator's own
    memory stays at one 64 MB slab, whatever the size.
    """
    name = f"big-{str(dtype).removeprefix('torch.')}-{gb:g}gb.pt"
    target = Path(path) if path is not None else BENCH_DATA / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    shapes = transformer_shapes(gb, dtype)
    partial = target.with_name(target.name + ".partial")
    if target.suffix == ".safetensors":
        _write_safetensors(partial, shapes, dtype)
    else:
        _write_torch(partial, shapes, dtype)
    partial.replace(target)
    return target


def _write_safetensors(
    path: Path, shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype
) -> None:
    header: dict[str, Any] = {}
    offset = 0
    for key, shape in shapes.items():
        size = math.prod(shape) * dtype.itemsize
        header[key] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for seed, (key, shape) in enumerate(shapes.items()):
            for slab in _slabs(key, math.prod(shape), dtype, seed):
                f.write(slab.view(torch.uint8).numpy().tobytes())


def _write_torch(path: Path, shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype) -> None:
    scratch = path.with_name(path.name + ".scratch")
    scratch.mkdir(exist_ok=True)
    try:
        state: dict[str, torch.Tensor] = {}
        for seed, (key, shape) in enumerate(shapes.items()):
            numel = math.prod(shape)
            # A MAP_SHARED file mapping per tensor: its pages live in the page cache, not in
            # anonymous memory, and each tensor keeps a storage of its own as in a real model.
            t = torch.from_file(str(scratch / str(seed)), shared=True, size=numel, dtype=dtype)
            done = 0
            for slab in _slabs(key, numel, dtype, seed):
                t[done : done + slab.numel()] = slab
                done += slab.numel()
            state[key] = t.view(shape)
        torch.save(state, path)
    finally:
        for f in scratch.glob("*"):
            f.unlink()
        scratch.rmdir()


def rss_anon_kb() -> int:
    """This process's anonymous resident memory (heap, not page cache) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("RssAnon not in /proc/self/status")


class PeakRssAnon:
    """Polls ``rss_anon_kb`` on a thread (RssAnon has no kernel-kept peak) while the block runs.

    ``with PeakRssAnon() as peak: ...`` then ``peak.above_baseline_mb``.
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.baseline_kb = 0
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, rss_anon_kb())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRssAnon:
        self.baseline_kb = self.peak_kb = rss_anon_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, rss_anon_kb())

    @property
    def above_baseline_mb(self) -> float:
        return (self.peak_kb - self.baseline_kb) / 1024


def cpu_seconds() -> float:
    """CPU time this process has used (all threads, user + system). Unlike wall time it hardly
    changes when other processes share the cores, so it tells designs apart on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def warm_page_cache(path: str | os.PathLike[str]) -> int:
    """Read every file under ``path`` once so timings see a warm page cache; returns bytes."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    total = 0
    buf = bytearray(1 << 24)
    for file in files:
        with open(file, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total


def timed(fn: Any, *args: Any, repeat: int = 1, **kwargs: Any) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def print_table(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    headers: Sequence[str] | None = None,
) -> None:
    """Print rows (dicts, whose keys are the headers, or sequences with ``headers``) aligned;
    numbers right-aligned."""
    if not rows:
        return
    if isinstance(rows[0], Mapping):
        headers = list(rows[0]) if headers is None else headers
        cells = [[r.get(h, "") for h in headers] for r in rows]  # type: ignore[union-attr]
    else:
        cells = [list(r) for r in rows]
    headers = list(headers or [""] * len(cells[0]))
    text = [[_cell(v) for v in row] for row in cells]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] in ("", "-") for row in cells)
        for i in range(len(headers))
    ]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    print(line([str(h) for h in headers]))
    print(line(["-" * w for w in widths]))
    for row in text:
        print(line(row))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
