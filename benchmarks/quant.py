"""Dequantize-and-stat of a 4-bit GPTQ checkpoint, next to a baseline run alongside.

    python benchmarks/quant.py [--gb 2.0] [--repeat 2]

On a generated GPTQ checkpoint (int4 packed in int32, group 128, fp16 scales; memory-mapped,
warm page cache) it times:
- ``iter_stats`` over every logical tensor (every statistic): for 4-bit GPTQ, each group's
  moments read from the packed words by the C kernel (``core/quant/_nibbles.c``) on the chunk
  workers, no value dequantized;
- the same statistics the way they are computed without the kernel: row blocks dequantized to
  float32 on the chunk workers and reduced;
- the baseline: one bare ``t.sum()`` over every packed part, i.e. reading the file;
with the peak anonymous memory (RssAnon) above the baseline for each. Speeds are GB/s of packed
input (the file's bytes). Goal: >= 1 GB/s on two cores, < 300 MB above the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, rss_anon_kb, warm_page_cache  # noqa: E402
from benchmarks.stats import measure  # noqa: E402
from ckpt_gui.core.chunks import DEFAULT_CHUNK_ELEMS, drain  # noqa: E402
from ckpt_gui.core.quant import nibble_stats  # noqa: E402
from ckpt_gui.core.reader import open_checkpoint  # noqa: E402
from ckpt_gui.core.stats import StatsResult, _logical_steps, iter_stats  # noqa: E402
from ckpt_gui.core.tree import Node  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "bench-data"
HIDDEN, GROUP = 4096, 128


def make_gptq(gb: float) -> Path:
    """A GPTQ checkpoint of about ``gb`` GB: square 4096 x 4096 layers, written part by part
    (never all in memory), with a config.json saying gptq, 4 bits, group 128."""
    folder = DATA / f"gptq-{gb:g}gb"
    path = folder / "model.safetensors"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    layers = max(1, round(gb * 1e9 / (HIDDEN * HIDDEN // 2)))
    groups = HIDDEN // GROUP
    parts = {
        "qweight": ("I32", [HIDDEN // 8, HIDDEN]),
        "qzeros": ("I32", [groups, HIDDEN // 8]),
        "scales": ("F16", [groups, HIDDEN]),
        "g_idx": ("I32", [HIDDEN]),
    }
    header, offset, order = {}, 0, []
    for i in range(layers):
        for name, (dtype, shape) in parts.items():
            size = int(np.prod(shape)) * (2 if dtype == "F16" else 4)
            key = f"model.layers.{i}.mlp.down_proj.{name}"
            header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            order.append((name, size))
            offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    scales = (rng.random(groups * HIDDEN) * 0.02 + 0.001).astype(np.float16).tobytes()
    g_idx = (np.arange(HIDDEN, dtype=np.int32) // GROUP).tobytes()
    with open(path.with_suffix(".tmp"), "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, size in order:
            f.write(scales if name == "scales" else g_idx if name == "g_idx" else rng.bytes(size))
    path.with_suffix(".tmp").rename(path)
    config = {"torch_dtype": "float16", "quantization_config": {"quant_method": "gptq", "bits": 4,
              "group_size": GROUP, "desc_act": False, "sym": True}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return path


def stats_of_logical(nodes: list[Node]) -> None:
    results = [e for e in iter_stats(nodes) if isinstance(e, StatsResult)]
    assert len(results) == len(nodes) and all(r.stats.dequantized for r in results)


def stats_dequantizing(nodes: list[Node]) -> None:
    """The statistics of each weight from its dequantized values (the path without the kernel)."""
    for node in nodes:
        assert node.tensor is not None
        plain = dataclasses.replace(node.tensor.quant, moments=None)
        assert drain(_logical_steps(plain, DEFAULT_CHUNK_ELEMS, None)).dequantized


def read_packed(nodes: list[Node]) -> None:
    for node in nodes:
        node.load().sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="packed size of the checkpoint")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (best)")
    args = parser.parse_args()
    start = time.perf_counter()
    path = make_gptq(args.gb)
    print(f"checkpoint ready in {time.perf_counter() - start:.0f} s: {path}")
    warm_page_cache(path)
    with open_checkpoint(path) as ckpt:
        logical = [n for n in ckpt.tensors() if n.tensor is not None and n.tensor.quant]
        packed = [n for n in ckpt.root.tensors()]
        gb = sum(n.tensor.nbytes for n in packed if n.tensor is not None) / 1e9
        values = sum(n.tensor.numel for n in logical if n.tensor is not None)
        print(
            f"{len(logical)} gptq weights ({values / 1e9:.2f} G values), {gb:.2f} GB packed, "
            f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, RssAnon before: {rss_anon_kb() / 1024:.0f} MB, load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        read_packed(packed)  # map every part once before timing anything
        rows = [
            ("ckpt_gui iter_stats (packed words, all statistics)", stats_of_logical, ">= 1 GB/s"),
            ("the same from dequantized values (no kernel)", stats_dequantizing, ""),
            ("baseline: t.sum() over the packed parts", read_packed, ""),
        ]
        table = []
        for name, fn, goal in rows:
            nodes = packed if fn is read_packed else logical
            seconds, cpu, mb = measure(fn, nodes, args.repeat)
            table.append([name, gb / seconds, seconds, cpu / gb, mb, goal])
        print_table(table, ["", "GB/s packed", "seconds", "CPU s/GB", "peak RssAnon +MB", "goal"])
        speed, memory = table[0][1], table[0][4]
        print(
            f"kernel built: {nibble_stats.available()}; goal >= 1 GB/s and < 300 MB above the "
            f"baseline: {'met' if speed >= 1 and memory < 300 else 'NOT met'} "
            f"({speed:.2f} GB/s, {memory:.0f} MB)"
        )


if __name__ == "__main__":
    main()
