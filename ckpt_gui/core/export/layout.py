"""How the kept tensors are laid out in files: safetensors headers, Hugging Face shards and their
index, and the size the result will have (exact for safetensors, close for pt)."""

from __future__ import annotations

import json
import struct

from ckpt_gui.core.export.options import ExportPlan
from ckpt_gui.core.formats.safetensors_file import CODES, PACKED
from ckpt_gui.core.tree import Node, TensorInfo, itemsize

# The torch dtypes safetensors can hold, by name, with their codes: the reader's table.
SAFETENSORS_DTYPES = CODES
# HF's metadata marker; transformers refuses safetensors files without it.
SAFETENSORS_METADATA = {"format": "pt"}


def shard_names(format: str, count: int) -> tuple[list[str], str]:
    """Hugging Face's file names for ``count`` shards and their index."""
    if format == "safetensors":
        stem, ext, index = "model", "safetensors", "model.safetensors.index.json"
    else:
        stem, ext, index = "pytorch_model", "bin", "pytorch_model.bin.index.json"
    return [f"{stem}-{i + 1:05d}-of-{count:05d}.{ext}" for i in range(count)], index


def safetensors_header(entries: list[tuple[str, str, tuple[int, ...]]]) -> bytes:
    """The 8-byte length and the space-padded JSON header for ``(name, dtype, shape)`` entries
    whose data follows back to back in the same order."""
    header: dict[str, object] = {"__metadata__": SAFETENSORS_METADATA}
    offset = 0
    for name, dtype, shape in entries:
        numel = 1
        for s in shape:
            numel *= s
        end = offset + numel * itemsize(dtype)
        packed = PACKED.get(dtype, 1)  # the header counts values, not packed elements
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": [*shape[:-1], shape[-1] * packed] if shape else [],
            "data_offsets": [offset, end],
        }
        offset = end
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text


def index_json(plan: ExportPlan) -> bytes:
    """The Hugging Face index of a sharded export: total tensor bytes and the weight map."""
    shards = plan.files[:-1]
    index = {
        "metadata": {"total_size": plan.tensor_bytes},
        "weight_map": {k.name: shards[k.shard] for k in plan.kept},
    }
    return (json.dumps(index, indent=2) + "\n").encode("utf-8")


def assign_shards(plan: ExportPlan) -> None:
    """Fill shards in order, HF style: a new shard when the next tensor would overflow this one;
    tensors sharing a storage go in their owner's shard."""
    size = plan.options.shard_size
    if not size or not plan.ok:
        return
    shard, used = 0, 0
    where: dict[str, int] = {}
    for kept in plan.kept:
        if kept.shares_with is not None:
            kept.shard = where[kept.shares_with]
            continue
        if used and used + kept.nbytes > size:
            shard, used = shard + 1, 0
        kept.shard, used = shard, used + kept.nbytes
        where[kept.name] = shard
    names, index = shard_names(plan.options.format, shard + 1)
    plan.files = [*names, index]


def estimate_size(root: Node, plan: ExportPlan) -> None:
    """Exact for safetensors (the header is built here); close for pt (zip and pickle overhead
    are estimated, tensor bytes are exact)."""
    if not plan.ok:
        return
    opts = plan.options
    if opts.format == "safetensors":
        plan.size_exact = True
        total = 0
        for shard in range(len(plan.files) - 1 if plan.files else 1):
            entries = [(k.name, k.dtype, k.shape) for k in plan.kept if k.shard == shard]
            total += len(safetensors_header(entries)) + sum(
                k.nbytes for k in plan.kept if k.shard == shard
            )
    else:
        # torch.save overhead, measured with torch 2.x: ~1.3 KB per file, ~250 B per storage
        # (zip headers, 64-byte alignment), ~15 B plus the key per tensor in the pickle.
        infos = {n.key: n.tensor for n in root.tensors()}
        total = 1261 * max(1, len(plan.files) - 1)
        extents: dict[tuple[object, int], tuple[int, int, int]] = {}
        for kept in plan.kept:
            info = infos[kept.key]
            assert info is not None
            total += 15 + len(kept.name if plan.flat else plan.structure[kept.key])
            lo, hi = _extent(info)
            group = (info.storage_id if info.storage_id is not None else id(kept), kept.shard)
            old = extents.get(group)
            item = itemsize(kept.dtype)
            if old is not None:
                lo, hi = min(old[0], lo), max(old[1], hi)
            extents[group] = (lo, hi, item)
        total += sum(250 + (hi - lo) * item for lo, hi, item in extents.values())
        total += sum(16 + len(plan.structure[src]) for src, _ in plan.kept_values)
    if plan.files:
        total += len(index_json(plan))
    plan.size_after = total


def _extent(info: TensorInfo) -> tuple[int, int]:
    """The storage elements ``[lo, hi)`` a tensor view touches."""
    if info.numel == 0:
        return info.storage_offset, info.storage_offset
    stride = info.stride or (1,) * len(info.shape)
    span = 1 + sum((s - 1) * st for s, st in zip(info.shape, stride))
    return info.storage_offset, info.storage_offset + span
