"""``open_checkpoint``: any checkpoint a PyTorch user has, as one tree, without running code from
the file and without reading tensor data until a node is loaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from ckpt_gui.core.checkpoint import Checkpoint, size_on_disk
from ckpt_gui.core.errors import CorruptError, NotFoundError, UnsupportedFormatError
from ckpt_gui.core.formats import safetensors_file
from ckpt_gui.core.formats.detect import detect, detect_and_open, find_index, read_index
from ckpt_gui.core.formats.folders import (
    ADAPTER_CONFIG,
    FolderCheckpoint,
    Layout,
    folder_layout,
    format_label,
)
from ckpt_gui.core.formats.folders import read_config as read_config_file
from ckpt_gui.core.memory import gc_paused
from ckpt_gui.core.recognise import recognise
from ckpt_gui.core.remote.location import RemotePath, is_remote
from ckpt_gui.core.safety.filecheck import check_regular_file
from ckpt_gui.core.safety.scan import ScanReport
from ckpt_gui.core.tree import Node, TensorInfo, join_key

PICKLED = ("torch-zip", "torch-legacy", "torchscript")
SHARDED = ("safetensors-sharded", "torch-sharded")
# How a checkpoint made of several files was read: the least safe of its files' views.
_VIEWS = ("structural", "trusted", "weights_only", "header")


def open_checkpoint(
    path: str | os.PathLike[str], *, structural: bool = True, trust: bool = False
) -> Checkpoint:
    """Open ``path``: a file, a sharded folder or its index, a DCP folder, or any model folder
    (see ``formats.folders``: one file, shards, a diffusers pipeline, a folder of .pt files).

    Nothing from the file runs: torch's ``weights_only`` loader first; when it refuses, the
    structural view (``structural=True``) or an ``UnsafeError``. ``trust=True`` allows a real
    load instead, and must only come from an explicit decision of the user.
    Raises a ``CheckpointError`` subclass with a one-line message for anything that is not a
    readable checkpoint. A URL (``https://``, ``s3://``, ``gs://``, ``hf://``) opens where it
    lives (``core/remote``), fetching only what describes it.
    """
    if is_remote(path):
        from ckpt_gui.core.remote.open import open_remote

        url = path.url if isinstance(path, RemotePath) else os.fspath(path)
        with gc_paused():
            ckpt = open_remote(url, trust=trust)
            _find_quantized(ckpt)
            _describe(ckpt)
        return ckpt
    path = Path(path)
    with gc_paused():  # the tree is millions of small objects for a file of tiny tensors
        if path.is_dir():
            ckpt = _open_folder(folder_layout(path), structural=structural, trust=trust)
        else:
            fmt, opened = detect_and_open(path)
            try:
                ckpt = _open_file(path, fmt, structural=structural, trust=trust, opened=opened)
            finally:
                if opened is not None:
                    opened[0].close()
            if fmt in SHARDED:  # an index file: its folder's config.json, as for the folder
                _add_config(ckpt, path.parent, "", hf=True)
        if _is_adapter(ckpt):  # core/adapters reads its config when it is analysed
            ckpt.kind = "lora-adapter"
        if not ckpt.logical:  # GGUF finds its own
            _find_quantized(ckpt)
        _describe(ckpt)
    return ckpt


def _describe(ckpt: Checkpoint) -> None:
    """What the tree is (a state_dict, a training checkpoint, ...) and what to tell about it."""
    kind = recognise(ckpt.root)
    if ckpt.kind == "object":
        ckpt.kind = kind
    nodes = list(ckpt.root.walk())
    _note_optimizer_mapping(ckpt, nodes)
    _note_overrides(ckpt, nodes)


def _find_quantized(ckpt: Checkpoint) -> None:
    """The quantized weights (``core/quant``), with a note saying how many of which scheme."""
    from ckpt_gui.core.quant.detect import config_beside, find_quantized, might_be_quantized

    nodes = list(ckpt.root.tensors())
    if not might_be_quantized(nodes):
        return
    if isinstance(ckpt.path, RemotePath):
        from ckpt_gui.core.remote.open import remote_config

        config = remote_config(ckpt.path)
    else:
        config = config_beside(ckpt.path, getattr(ckpt, "configs", None))
    ckpt.logical = find_quantized(nodes, config)
    if ckpt.logical:
        from ckpt_gui.core.quant.view import summary

        ckpt.notes.append(summary(ckpt.logical))


def _is_adapter(ckpt: Checkpoint) -> bool:
    """A LoRA adapter (``adapters.found.is_lora_adapter``). The analysis, and torch with it,
    is imported only where an adapter's config could be: beside the file, or a folder of them."""
    folder = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
    if ckpt.format != "folder" and not os.path.lexists(folder / ADAPTER_CONFIG):
        return False
    from ckpt_gui.core.adapters.found import is_lora_adapter

    return is_lora_adapter(ckpt)


def _open_file(
    path: Path,
    fmt: str,
    *,
    structural: bool,
    trust: bool,
    opened: tuple[BinaryIO, int] | None = None,
) -> Checkpoint:
    """``path`` in format ``fmt``; ``opened``: the file as detection left it open, which a
    pickled file's scan reads (so that our side opens the file once; torch then opens it)."""
    if fmt in PICKLED:
        from ckpt_gui.core.formats import pickled  # torch: not needed for a header-only format

        return pickled.open_pickled(path, fmt, structural=structural, trust=trust, opened=opened)
    if fmt in _OPENERS:
        return _OPENERS[fmt](path, fmt)
    raise UnsupportedFormatError(f"{path}: {fmt} files are not supported")


def _open_folder(layout: Layout, *, structural: bool, trust: bool) -> Checkpoint:
    """A folder as ``folder_layout`` found it, with its config.json shown in the notes."""
    if layout.kind == "components":
        return _open_components(layout, structural=structural, trust=trust)
    ckpt = _open_layout(layout, structural=structural, trust=trust)
    if layout.kind != "dcp":
        _add_config(ckpt, layout.folder, "", hf=layout.hf, names=layout.configs)
    ckpt.notes.extend(layout.notes)
    return ckpt


def _open_layout(layout: Layout, *, structural: bool, trust: bool) -> Checkpoint:
    """A folder that holds one checkpoint: DCP, shards, or one file (opened exactly as that
    file, through the same loading policy, then labelled with the folder's path)."""
    if layout.kind == "dcp":
        return _open_dcp(layout.folder, "dcp")
    if layout.kind == "sharded":
        return _open_sharded(layout.index or layout.folder, layout.format, layout.shards)
    assert layout.kind == "single" and layout.file is not None
    part = _open_file(
        layout.folder / layout.file, layout.format, structural=structural, trust=trust
    )
    values = {f.name: getattr(part, f.name) for f in dataclasses.fields(Checkpoint)}
    ckpt = FolderCheckpoint(**values, format_label=part.format)
    ckpt.path, ckpt.files = layout.folder, list(part.files or [part.path])
    ckpt._closers = list(part._closers)
    part._closers.clear()
    return ckpt


def _add_config(
    ckpt: Checkpoint,
    folder: Path,
    where: str,
    *,
    hf: bool,
    names: Sequence[str] = ("config.json",),
) -> None:
    """Show ``folder``'s configs (config.json, a pipeline's model_index.json, a PEFT adapter's
    adapter_config.json) in the notes and in ``configs``; ``where`` is the folder relative to
    the opened one (``"unet/"``). A missing, unreadable or malformed config is a note, never an
    error; ``hf``: a missing first config is worth a note too."""
    assert isinstance(ckpt, FolderCheckpoint)
    for i, name in enumerate(names):
        path = folder / name
        config, note = read_config_file(path, where + name)
        if os.path.lexists(path):
            ckpt.files.append(path)  # even unread: an export must not replace it
        if config is not None:
            ckpt.configs[where + name] = config
        if note is not None:
            ckpt.notes.append(note)
        elif hf and i == 0:
            what = f"{where.rstrip('/')}: no" if where else "no"
            ckpt.notes.append(f"{what} {name} beside the weights")
    ckpt.size_on_disk = _files_size(ckpt.files)


def _open_components(layout: Layout, *, structural: bool, trust: bool) -> Checkpoint:
    """One tree with a top-level node per component (a file, or a sub-folder holding one
    checkpoint), each opened by the opener and loading policy it would have on its own."""
    ckpt = FolderCheckpoint(
        path=layout.folder,
        format="folder",
        root=Node(name="", key="", kind="dict"),
        size_on_disk=0,
        kind=layout.title,
    )
    labels, views, notes, scans = [], [], [], []
    _add_config(ckpt, layout.folder, "", hf=False, names=("model_index.json", "config.json"))
    try:
        for component in layout.components:
            name, sub = component.name, component.layout
            if sub is None:
                check_regular_file(component.path)  # a FIFO says so, before detect opens it
                part = _open_file(
                    component.path, detect(component.path), structural=structural, trust=trust
                )
            else:
                part = _open_layout(sub, structural=structural, trust=trust)
            _graft(ckpt, name, part)
            labels.append(f"{name} ({format_label(part)})")
            views.append(part.view)
            if part.view_note:
                notes.append(f"{name}: {part.view_note}")
            if part.scan is not None:
                # Where each global is, relative to the opened folder.
                single = sub is not None and sub.kind == "single"
                prefix = (
                    f"{component.path.name}:"
                    if sub is None
                    else f"{name}/{sub.file}:"
                    if single
                    else f"{name}/"
                )
                scans.append((prefix, part.scan))
            ckpt.notes.extend(f"{name}: {note}" for note in part.notes)
            if sub is not None and sub.kind != "dcp":
                _add_config(ckpt, component.path, f"{name}/", hf=sub.hf, names=sub.configs)
    except BaseException:
        ckpt.close()
        raise
    ckpt.notes.extend(layout.notes)
    ckpt.view = min(views, key=_VIEWS.index) if views else "header"
    ckpt.view_note = "; ".join(notes) or None
    ckpt.scan = _merged_scan(str(layout.folder), scans) if scans else None
    head = layout.title
    if head == "folder of checkpoints":
        head = f"folder of {len(labels)} checkpoints"
    ckpt.format_label = f"{head}: {', '.join(labels)}"
    ckpt.size_on_disk = _files_size(ckpt.files)
    return ckpt


def _graft(ckpt: Checkpoint, name: str, part: Checkpoint) -> None:
    """Move ``part``'s tree under a node ``name`` of ``ckpt``'s root (keys ``name.key``), and
    take over its files and its closers."""
    node = part.root
    node.name = name
    seen: set[int] = set()
    for n in node.walk():
        n.key = join_key(name, n.key) if n.key else name
        if n.shares_storage_with:
            n.shares_storage_with = join_key(name, n.shares_storage_with)
        info = n.tensor
        if info is not None and info.storage_id is not None and id(info) not in seen:
            # Storage ids are per file (the structural view numbers them "0", "1", ...).
            seen.add(id(info))
            info.storage_id = (name, info.storage_id)
    ckpt.root.add(node)
    ckpt.files.extend(part.files or [part.path])
    ckpt._closers.extend(part._closers)
    part._closers.clear()


def _merged_scan(path: str, scans: Sequence[tuple[str, ScanReport]]) -> ScanReport:
    """One scan report for several files, each entry's ``where`` prefixed with its file."""
    report = ScanReport(path=path, format="folder")
    for prefix, part in scans:
        report.globals.extend(dataclasses.replace(g, where=prefix + g.where) for g in part.globals)
        report.pickles.extend(prefix + p for p in part.pickles)
        report.notes.extend(prefix + n for n in part.notes)
        report.max_tuple_depth = max(report.max_tuple_depth, part.max_tuple_depth)
        report.allocations.extend(part.allocations)
    return report


def _files_size(files: Sequence[Path]) -> int:
    """Bytes of the files a checkpoint reads (each counted once, links followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _note_overrides(ckpt: Checkpoint, nodes: Sequence[Node]) -> None:
    """Say where the file set attributes that hide an object's own methods: a program calling
    them would see something else than the entries the tree (and ``load_state_dict``) reads.
    ``nodes``: every node of the tree, in walk order."""
    for node in nodes:
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
    root = flat_root(safetensors_file.tensor_infos(path, entries, mapped).items())
    ckpt = Checkpoint(path=path, format=fmt, root=root, size_on_disk=size_on_disk(path))
    ckpt._closers.append(mapped.close)
    if metadata:
        ckpt.notes.append("metadata: " + ", ".join(f"{k}={v}" for k, v in metadata.items()))
    return ckpt


def _open_sharded(path: Path, fmt: str, shard_set: Sequence[str] = ()) -> Checkpoint:
    """Shards as one file: an index (``path``, or the one in the folder ``path``) and the
    shards it names, or the ``shard_set`` found without one."""
    folder = path if path.is_dir() else path.parent
    index = (None if shard_set else find_index(folder)) if path.is_dir() else path
    weight_map: dict[str, str] | None = None
    if index is not None:
        # Read again (not trusted from detect): checked to be a small regular file whose shard
        # names are plain file names in the folder.
        weight_map = read_index(index)
        shards = list(dict.fromkeys(weight_map.values()))
    else:
        shards = list(shard_set) or sorted(p.name for p in folder.glob("*.safetensors"))
    infos: dict[str, TensorInfo] = {}
    closers: list[Callable[[], None]] = []
    formats: list[str] = []
    views: list[str] = []
    view_notes: list[str] = []
    scans: list[tuple[str, ScanReport]] = []
    try:
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
                formats.append("safetensors")
            else:
                # The same policy as any torch file: scanned, checked, weights_only, structural.
                shard_fmt = detect(shard_path)
                from ckpt_gui.core.formats import pickled

                part = pickled.open_pickled(shard_path, shard_fmt, structural=True, trust=False)
                closers.append(part.close)
                formats.append(shard_fmt)
                views.append(part.view)
                if part.view_note:
                    view_notes.append(f"{shard}: {part.view_note}")
                if part.scan is not None:
                    scans.append((f"{shard}:", part.scan))
                if part.root.kind != "dict":
                    raise CorruptError(f"{shard_path}: a shard that is not a state_dict")
                infos.update((n.key, n.tensor) for n in part.root.tensors() if n.tensor is not None)
        keys = list(weight_map) if weight_map is not None else list(infos)
        missing = [k for k in keys if k not in infos]
        if missing:
            raise CorruptError(f"{path}: {missing[0]!r} is in the index but in no shard")
    except BaseException:
        for close in closers:  # the shards opened so far
            close()
        raise
    root = flat_root((k, infos[k]) for k in keys)
    kinds = sorted(set(formats), key=formats.index)
    ckpt = FolderCheckpoint(
        path=folder,
        format=fmt,
        root=root,
        size_on_disk=0,
        format_label=f"{'/'.join(kinds) or fmt} ×{len(shards)} shard{'s' * (len(shards) != 1)}",
    )
    ckpt.files = ([index] if index is not None else []) + [folder / s for s in shards]
    ckpt.size_on_disk = _files_size(ckpt.files)
    ckpt._closers.extend(closers)
    if views:  # .bin shards: read as the least safe of them was
        ckpt.view = min(views, key=_VIEWS.index)
        ckpt.view_note = "; ".join(view_notes) or None
    if scans:
        ckpt.scan = _merged_scan(str(folder), scans)
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


def _open_gguf(path: Path, fmt: str) -> Checkpoint:
    from ckpt_gui.core.formats.gguf_file import open_gguf  # numpy and gguf: only for GGUF

    return open_gguf(path, fmt)


def _open_tar(path: Path, fmt: str) -> Checkpoint:
    raise UnsupportedFormatError(
        f"{path}: a pre-1.6 tar-format torch file; torch cannot read it without running code"
    )


def flat_root(items: object) -> Node:
    root = Node(name="", key="", kind="dict")
    for key, info in items:  # type: ignore[attr-defined]
        root.add(Node(name=key, key=key, kind="tensor", tensor=info))
    return root


def _note_optimizer_mapping(ckpt: Checkpoint, nodes: Sequence[Node]) -> None:
    for node in nodes:
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
    "gguf": _open_gguf,
}
