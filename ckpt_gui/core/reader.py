"""``open_checkpoint``: any checkpoint a PyTorch user has, as one tree, without running code from
the file and without reading tensor data until a node is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from ckpt_gui.core.checkpoint import Checkpoint, size_on_disk
from ckpt_gui.core.errors import CorruptError, NotFoundError, UnsupportedFormatError
from ckpt_gui.core.formats import pickled, safetensors_file
from ckpt_gui.core.formats.detect import detect, find_index, read_index
from ckpt_gui.core.recognise import recognise
from ckpt_gui.core.safety.filecheck import check_regular_file
from ckpt_gui.core.tree import Node, TensorInfo, join_key


def open_checkpoint(
    path: str | os.PathLike[str], *, structural: bool = True, trust: bool = False
) -> Checkpoint:
    """Open ``path`` (a file, a sharded folder or its index, or a DCP folder).

    Nothing from the file runs: torch's ``weights_only`` loader first; when it refuses, the
    structural view (``structural=True``) or an ``UnsafeError``. ``trust=True`` allows a real
    load instead, and must only come from an explicit decision of the user.
    Raises a ``CheckpointError`` subclass with a one-line message for anything that is not a
    readable checkpoint.
    """
    path = Path(path)
    fmt = detect(path)
    if fmt in ("torch-zip", "torch-legacy", "torchscript"):
        ckpt = pickled.open_pickled(path, fmt, structural=structural, trust=trust)
    elif fmt in _OPENERS:
        ckpt = _OPENERS[fmt](path, fmt)
    else:
        raise UnsupportedFormatError(f"{path}: {fmt} files are not supported")
    kind = recognise(ckpt.root)
    if ckpt.kind == "object":
        ckpt.kind = kind
    _note_optimizer_mapping(ckpt)
    _note_overrides(ckpt)
    return ckpt


def _note_overrides(ckpt: Checkpoint) -> None:
    """Say where the file set attributes that hide an object's own methods: a program calling
    them would see something else than the entries the tree (and ``load_state_dict``) reads."""
    for node in ckpt.root.walk():
        if node.overrides:
            names = ", ".join(node.overrides[:4])
            where = node.key or "the top object"
            ckpt.notes.append(
                f"{where}: the file sets {names} on the object, hiding its own "
                f"{'methods' if len(node.overrides) > 1 else 'method'}; shown is what the "
                "object really holds"
            )


def _open_safetensors(path: Path, fmt: str) -> Checkpoint:
    entries, metadata = safetensors_file.read_header(path)
    mapped = safetensors_file.MappedFile(path)
    root = _flat_root(safetensors_file.tensor_infos(path, entries, mapped).items())
    ckpt = Checkpoint(path=path, format=fmt, root=root, size_on_disk=size_on_disk(path))
    ckpt._closers.append(mapped.close)
    if metadata:
        ckpt.notes.append("metadata: " + ", ".join(f"{k}={v}" for k, v in metadata.items()))
    return ckpt


def _open_sharded(path: Path, fmt: str) -> Checkpoint:
    folder = path if path.is_dir() else path.parent
    index = find_index(folder) if path.is_dir() else path
    weight_map: dict[str, str] | None = None
    if index is not None:
        # Read again (not trusted from detect): checked to be a small regular file whose shard
        # names are plain file names in the folder.
        weight_map = read_index(index)
        shards = list(dict.fromkeys(weight_map.values()))
    else:
        shards = sorted(p.name for p in folder.glob("*.safetensors"))
    infos: dict[str, TensorInfo] = {}
    closers = []
    for shard in shards:
        shard_path = folder / shard
        try:  # a FIFO or a device as a shard would block or never end; refused from stat
            check_regular_file(shard_path)
        except NotFoundError:
            raise CorruptError(f"{path}: shard {shard} is missing") from None
        if shard.endswith(".safetensors"):
            entries, _ = safetensors_file.read_header(shard_path)
            mapped = safetensors_file.MappedFile(shard_path)
            closers.append(mapped.close)
            infos.update(safetensors_file.tensor_infos(shard_path, entries, mapped))
        else:
            # The same policy as any torch file: scanned, checked, weights_only, structural.
            part = pickled.open_pickled(
                shard_path, detect(shard_path), structural=True, trust=False
            )
            closers.append(part.close)
            if part.root.kind != "dict":
                raise CorruptError(f"{shard_path}: a shard that is not a state_dict")
            infos.update((n.key, n.tensor) for n in part.root.tensors() if n.tensor is not None)
    keys = list(weight_map) if weight_map is not None else list(infos)
    missing = [k for k in keys if k not in infos]
    if missing:
        raise CorruptError(f"{path}: {missing[0]!r} is in the index but in no shard")
    root = _flat_root((k, infos[k]) for k in keys)
    ckpt = Checkpoint(path=folder, format=fmt, root=root, size_on_disk=size_on_disk(folder))
    ckpt.files = ([index] if index is not None else []) + [folder / s for s in shards]
    ckpt._closers.extend(closers)
    ckpt.notes.append(f"{len(shards)} shards")
    return ckpt


def _open_dcp(path: Path, fmt: str) -> Checkpoint:
    # Imported here: torch.distributed.checkpoint costs half a second to import.
    from ckpt_gui.core.formats import dcp

    meta = dcp.read_metadata(path)
    root = Node(name="", key="", kind="dict")
    inner: dict[str, Node] = {"": root}  # nested dicts made so far, by key
    for key, item in dcp.dcp_entries(path, meta):
        # planner_data holds each flat key's path in the original nested state_dict.
        parts = _dcp_path(meta, key)
        parent = root
        for part in parts[:-1]:
            child_key = join_key(parent.key, part)
            if child_key not in inner:
                inner[child_key] = parent.add(Node(name=part, key=child_key, kind="dict"))
            parent = inner[child_key]
        if isinstance(item, TensorInfo):
            parent.add(Node(name=parts[-1], key=key, kind="tensor", tensor=item))
        else:
            parent.add(Node(name=parts[-1], key=key, kind="value", value=item))
    ckpt = Checkpoint(path=path, format=fmt, root=root, size_on_disk=size_on_disk(path))
    ckpt.files = [path / ".metadata", *dcp.storage_files(path, meta)]
    return ckpt


def _dcp_path(meta: object, key: str) -> list[str]:
    planner = getattr(meta, "planner_data", None) or {}
    parts = planner.get(key) if isinstance(planner, dict) else None
    if isinstance(parts, (list, tuple)) and parts and ".".join(map(str, parts)) == key:
        return [str(p) for p in parts]
    return [key]


def _open_tar(path: Path, fmt: str) -> Checkpoint:
    raise UnsupportedFormatError(
        f"{path}: a pre-1.6 tar-format torch file; torch cannot read it without running code"
    )


def _flat_root(items: object) -> Node:
    root = Node(name="", key="", kind="dict")
    for key, info in items:  # type: ignore[attr-defined]
        root.add(Node(name=key, key=key, kind="tensor", tensor=info))
    return root


def _note_optimizer_mapping(ckpt: Checkpoint) -> None:
    for node in ckpt.root.walk():
        if node.label != "optimizer":
            continue
        state = node.child("state")
        mapped = state is not None and any(c.param for c in state.children)
        where = node.key or "the file"
        if mapped:
            ckpt.notes.append(f"optimizer ids in {where} mapped to parameter names")
        elif state is not None and state.children:
            ckpt.notes.append(f"optimizer ids in {where} could not be matched to parameters")


_OPENERS = {
    "safetensors": _open_safetensors,
    "safetensors-sharded": _open_sharded,
    "torch-sharded": _open_sharded,
    "dcp": _open_dcp,
    "torch-tar": _open_tar,
}
