"""Model folders: which files a folder's checkpoint is made of, decided before anything is read.

``folder_layout`` recognises, in this order: a DCP folder (``.metadata``); a Hugging Face repo
(an index and its shards, ``model.safetensors`` / ``pytorch_model.bin`` and their diffusers and
variant spellings, or a ``-00001-of-00004`` shard set without an index; safetensors preferred
over .bin when a repo holds both); a Hugging Face cache folder (``models--org--name``: its
``refs/main`` snapshot); and otherwise the checkpoint files (.gguf among them) and
weight-holding sub-folders it holds: one file opens as that file, several (or sub-folders, as
in a diffusers pipeline) as one tree with a top-level node per component. Opening is
``reader``'s job; only index files and content sniffs of a single file are read here.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.errors import CheckpointError, CorruptError, NotACheckpointError, NotFoundError
from ckpt_gui.core.formats.detect import (
    INDEX_SUFFIXES,
    MiB,
    detect,
    is_plain_name,
    read_index,
    read_small_file,
)
from ckpt_gui.core.safety.filecheck import printable

# Names a checkpoint file in a folder may end with (content decides its format once chosen).
CHECKPOINT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".pth.tar",
    ".pt.tar",
    ".gguf",  # a llama.cpp model folder: one .gguf opens as that file
)
# A folder is listed once; one holding more entries than this is not a model folder.
MAX_FOLDER_ENTRIES = 10_000
# Components opened as one tree: each is scanned, mapped and keeps a descriptor or a mapping.
MAX_COMPONENTS = 256
MAX_CONFIG_BYTES = 4 * MiB  # a real config.json is a few KiB
ADAPTER_CONFIG = "adapter_config.json"  # how a PEFT adapter describes itself
# The weights file of a Hugging Face repo or diffusers component, with an optional variant
# (``model.fp16.safetensors``).
_HF_SINGLE = re.compile(
    r"(?:model|pytorch_model|diffusion_pytorch_model|adapter_model)(\.\w+)?\.(?:safetensors|bin)",
    re.IGNORECASE,
)
_SHARD = re.compile(r"(?P<prefix>.+)-(?P<n>\d+)-of-(?P<total>\d+)\.(?P<ext>safetensors|bin)")
# config.json entries worth seeing first; the rest follow in the file's order.
_CONFIG_FIRST = (
    "_class_name",
    "architectures",
    "model_type",
    "torch_dtype",
    "_diffusers_version",
    "transformers_version",
)
_CONFIG_SHOWN = 12


@dataclass(frozen=True)
class Component:
    """One top-level node of a composite folder: a checkpoint file, or a sub-folder."""

    name: str  # the node's name and key prefix: "unet", "epoch1"
    path: Path
    layout: Layout | None = None  # a sub-folder's own layout; None for a file


@dataclass(frozen=True)
class Layout:
    """What ``folder`` holds, and so how to open it."""

    folder: Path  # the folder to open (a cache folder's snapshot, not the cache folder)
    kind: str  # "dcp" | "sharded" | "single" | "components"
    format: str  # the docs/cli.md name: "dcp", "safetensors-sharded", the single file's, "folder"
    index: Path | None = None  # "sharded" with an index
    shards: tuple[str, ...] = ()  # "sharded" without an index: the shard set, in order
    file: str | None = None  # "single"
    components: tuple[Component, ...] = ()
    title: str = ""  # "components": "diffusers pipeline", "model folder", "folder of checkpoints"
    notes: tuple[str, ...] = ()
    hf: bool = False  # named the Hugging Face way, so a missing config is worth a note
    configs: tuple[str, ...] = ("config.json",)  # the JSON configs shown beside the weights


@dataclass
class FolderCheckpoint(Checkpoint):
    """A checkpoint opened through a folder (or an index): what the format name alone cannot
    say, a label (``safetensors ×4 shards``, ``diffusers pipeline: unet (safetensors), ...``),
    and the JSON configs read beside the weights, by path relative to the folder."""

    format_label: str = ""
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def format_label(ckpt: Checkpoint) -> str:
    """The format in words for people: the label of a folder, or the format name."""
    if isinstance(ckpt, FolderCheckpoint) and ckpt.format_label:
        return ckpt.format_label
    return ckpt.format


def folder_layout(folder: Path, *, nested: bool = False) -> Layout:
    """The layout of ``folder``; raises a CheckpointError when it holds no checkpoint.

    ``nested``: a component of another folder, whose own sub-folders are not looked into.
    """
    if os.path.lexists(folder / ".metadata"):  # even a FIFO or a device: refused when read
        return Layout(folder, "dcp", "dcp")
    files, subfolders = _list(folder)
    weights = [n for n in files if n.lower().endswith(CHECKPOINT_SUFFIXES)]
    indexes = [n for n in files if n.endswith(INDEX_SUFFIXES)]
    layout = _hf_layout(folder, weights, indexes)
    if layout is not None:
        return layout
    if not nested and not weights and {"snapshots", "blobs"} <= set(subfolders):
        return _cache_snapshot(folder)
    return _loose_layout(folder, weights, [] if nested else subfolders)


def _list(folder: Path) -> tuple[list[str], list[str]]:
    """File names and sub-folder names (symlinks followed), hidden entries left out."""
    files: list[str] = []
    folders: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for count, entry in enumerate(entries, 1):
                if count > MAX_FOLDER_ENTRIES:
                    raise NotACheckpointError(
                        f"{folder}: holds more than {MAX_FOLDER_ENTRIES:,} entries; not a model "
                        "folder"
                    )
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:  # a dangling link or an unreadable entry: a file, refused later
                    is_dir = False
                (folders if is_dir else files).append(entry.name)
    except FileNotFoundError:
        raise NotFoundError(f"{folder}: no such file or folder") from None
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot be read ({exc.strerror or exc})") from None
    return sorted(files, key=natural), sorted(folders, key=natural)


def natural(name: str) -> list[Any]:
    """Sort key that puts ``epoch2`` before ``epoch10``."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _hf_layout(folder: Path, weights: list[str], indexes: list[str]) -> Layout | None:
    """An index, a Hugging Face weights file or a shard set; safetensors first."""
    st_indexes = [n for n in indexes if n.endswith(".safetensors.index.json")]
    families = ((".safetensors", st_indexes), (".bin", [n for n in indexes if n not in st_indexes]))
    candidates = weights + indexes
    for family, family_indexes in families:
        if family_indexes:
            index = folder / family_indexes[0]
            shards = list(dict.fromkeys(read_index(index).values()))
            fmt = (
                "safetensors-sharded"
                if shards and all(s.endswith(".safetensors") for s in shards)
                else "torch-sharded"
            )
            notes = _not_shown(candidates, {index.name, *shards}, family)
            return Layout(folder, "sharded", fmt, index=index, notes=notes, hf=True)
        singles = [n for n in weights if _HF_SINGLE.fullmatch(n) and n.lower().endswith(family)]
        if singles:
            # The plain file before its variants (model.fp16.safetensors).
            name = min(singles, key=lambda n: (_variant(n) is not None, natural(n)))
            notes = _not_shown(candidates, {name}, family)
            # A PEFT adapter describes itself in adapter_config.json.
            adapter = name.lower().startswith("adapter_model")
            configs = (ADAPTER_CONFIG,) if adapter else ("config.json",)
            fmt = detect(folder / name)
            return Layout(folder, "single", fmt, file=name, notes=notes, hf=True, configs=configs)
        shard_set = _shard_set(folder, [n for n in weights if n.lower().endswith(family)])
        if shard_set:
            fmt = "safetensors-sharded" if family == ".safetensors" else "torch-sharded"
            notes = _not_shown(candidates, set(shard_set), family)
            return Layout(folder, "sharded", fmt, shards=tuple(shard_set), notes=notes, hf=True)
    return None


def _variant(name: str) -> str | None:
    match = _HF_SINGLE.fullmatch(name)
    return match[1] if match else None


def _shard_set(folder: Path, names: list[str]) -> list[str] | None:
    """The ``PREFIX-00001-of-0000N`` files of one shard set (plain prefixes before variants),
    every one of them present."""
    sets: dict[tuple[str, str, str], dict[int, str]] = {}
    for name in names:
        m = _SHARD.fullmatch(name)
        if m:
            sets.setdefault((m["prefix"], m["ext"], m["total"]), {})[int(m["n"])] = name
    if not sets:
        return None
    prefix, ext, total = min(sets, key=lambda k: ("." in k[0], natural(k[0]), k[1]))
    found = sets[prefix, ext, total]
    first_missing = next(i for i in itertools.count(1) if i not in found)
    if first_missing <= int(total):
        missing = f"{prefix}-{str(first_missing).zfill(len(total))}-of-{total}.{ext}"
        raise CorruptError(
            f"{folder}: shard {printable(missing)} is missing ({len(found)} of {int(total)} "
            "shards in the folder, and no index)"
        )
    return [found[i] for i in range(1, int(total) + 1)]


def _not_shown(candidates: list[str], used: set[str], family: str) -> tuple[str, ...]:
    rest = [n for n in candidates if n not in used]
    if not rest:
        return ()
    shown = ", ".join(printable(n, 80) for n in rest[:8])
    more = f" and {len(rest) - 8} more" if len(rest) > 8 else ""
    why = ""
    if family == ".safetensors" and any(n.endswith((".bin", ".bin.index.json")) for n in rest):
        why = " (the .safetensors weights are shown; Hugging Face repos often hold both)"
    return (f"not shown: {shown}{more}{why}",)


def _cache_snapshot(folder: Path) -> Layout:
    """A Hugging Face cache folder (``blobs/``, ``refs/``, ``snapshots/``): the snapshot that
    ``refs/main`` names, or its only snapshot."""
    snapshots = folder / "snapshots"
    chosen, how = "", ""
    ref = folder / "refs" / "main"
    if os.path.lexists(ref):
        try:
            name = read_small_file(ref, 1024, "a refs file").decode("ascii").strip()
        except (CheckpointError, UnicodeDecodeError):
            name = ""
        if is_plain_name(name) and (snapshots / name).is_dir():
            chosen, how = name, "refs/main"
    if not chosen:
        _, names = _list(snapshots)
        if len(names) != 1:
            raise NotACheckpointError(
                f"{folder}: a Hugging Face cache folder with {len(names)} snapshots and no "
                f"usable refs/main; open one of the folders in {snapshots}"
            )
        chosen, how = names[0], "its only snapshot"
    inner = folder_layout(snapshots / chosen)
    note = f"Hugging Face cache: snapshot {printable(chosen, 80)} ({how})"
    return replace(inner, notes=(note, *inner.notes))


def _loose_layout(folder: Path, weights: list[str], subfolders: list[str]) -> Layout:
    """Checkpoint files and weight-holding sub-folders without Hugging Face names: one file is
    that file; anything more is one tree with a node per component."""
    for what, count in (("checkpoint files", len(weights)), ("sub-folders", len(subfolders))):
        if count > MAX_COMPONENTS:
            raise NotACheckpointError(
                f"{folder}: {count} {what}, more than {MAX_COMPONENTS} to open as one tree; "
                "open them one by one"
            )
    parts: list[tuple[str, Path, Layout | None]] = [(n, folder / n, None) for n in weights]
    notes: list[str] = []
    for sub in subfolders:
        try:
            inner = folder_layout(folder / sub, nested=True)
        except NotACheckpointError:
            continue  # tokenizer/, scheduler/: no weights
        if inner.kind == "components":
            notes.append(
                f"{printable(sub, 80)}/: {len(inner.components)} checkpoints of its own; "
                "open that folder to see them"
            )
            continue
        parts.append((sub, folder / sub, inner))
    if len(parts) > MAX_COMPONENTS:
        raise NotACheckpointError(
            f"{folder}: {len(parts)} components, more than {MAX_COMPONENTS} to open as one tree"
        )
    if not parts:
        raise NotACheckpointError(
            f"{folder}: a folder without a checkpoint (no .metadata, no index.json, no "
            ".safetensors, .bin, .pt or .gguf file, no sub-folder holding one)"
        )
    if len(parts) == 1 and parts[0][2] is None:
        name = parts[0][0]
        return Layout(folder, "single", detect(folder / name), file=name, notes=tuple(notes))
    components = _named(parts)
    if all(c.layout is not None for c in components):
        pipeline = os.path.lexists(folder / "model_index.json")
        title = "diffusers pipeline" if pipeline else "model folder"
    else:
        title = "folder of checkpoints"
    return Layout(
        folder, "components", "folder", components=components, title=title, notes=tuple(notes)
    )


def _named(parts: list[tuple[str, Path, Layout | None]]) -> tuple[Component, ...]:
    """Components named by file stem (``epoch1.pt`` -> ``epoch1``) or sub-folder name; files
    whose stems collide keep their whole names."""
    stems = [name if layout is not None else _stem(name) for name, _, layout in parts]
    taken = {s for s in stems if stems.count(s) > 1}
    components = [
        Component(name if stem in taken and layout is None else stem, path, layout)
        for stem, (name, path, layout) in zip(stems, parts)
    ]
    return tuple(sorted(components, key=lambda c: natural(c.name)))


def _stem(name: str) -> str:
    for suffix in sorted(CHECKPOINT_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def read_config(path: Path, label: str) -> tuple[dict[str, Any] | None, str | None]:
    """A small JSON config beside the weights (``config.json``, ``model_index.json``) and a
    note that shows it, or says why it is not shown; ``(None, None)`` when there is none.
    Never raises for a bad config: the weights open without it."""
    if not os.path.lexists(path):
        return None, None
    try:
        data = read_small_file(path, MAX_CONFIG_BYTES, "a config file")
        config = json.loads(data.decode("utf-8"))
    except CheckpointError as exc:
        return None, f"{label}: not shown: {exc}"
    except (ValueError, RecursionError):
        return None, f"{label}: not valid JSON; not shown"
    if not isinstance(config, dict):
        return None, f"{label}: not a JSON object; not shown"
    return config, f"{label}: {describe_config(config)}"


def describe_config(config: dict[str, Any]) -> str:
    """``architectures=[LlamaForCausalLM], model_type=llama, ... (and 30 more)``."""
    first = [k for k in _CONFIG_FIRST if k in config]
    keys = first + [k for k in config if k not in first]
    shown = [f"{printable(str(k), 40)}={_config_value(config[k])}" for k in keys[:_CONFIG_SHOWN]]
    more = f" (and {len(keys) - _CONFIG_SHOWN} more)" if len(keys) > _CONFIG_SHOWN else ""
    return (", ".join(shown) or "empty") + more


def _config_value(value: Any) -> str:
    if isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value):
        text = "[" + ", ".join(str(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{…}"
    else:
        text = str(value)
    return printable(text, 60)
