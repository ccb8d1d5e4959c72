"""Finding the LoRA adapters an opened checkpoint holds: the adapter folder itself (or its
weights file beside ``adapter_config.json``), the extra adapters PEFT saves in sub-folders
named after them, and, for a folder of several adapter folders, each of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ckpt_gui.core.adapters.config import CONFIG_NAME, AdapterConfig, read_adapter_config
from ckpt_gui.core.adapters.modules import AdapterTensors, split_tensors
from ckpt_gui.core.adapters.patterns import AdapterConfigError
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.formats.folders import FolderCheckpoint, natural
from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.tree import Node

MAX_SUB_ADAPTERS = 64


class AdapterError(CheckpointError):
    """Not an adapter, or one that cannot be analysed or merged; one line for the user."""


@dataclass
class Adapter:
    """One LoRA adapter: its config and its tensors, sorted, as nodes of ``checkpoint``."""

    name: str  # PEFT's adapter name: "default" at the top of a folder, else the sub-folder's
    folder: Path  # where adapter_config.json is
    config: AdapterConfig
    checkpoint: Checkpoint  # the tree its tensors are in
    prefix: str  # key prefix of its tensors in that tree ("" or "second.")
    tensors: AdapterTensors

    @property
    def files(self) -> list[Path]:
        """Every file the adapter is read from (so that an export never writes over one)."""
        return [*(self.checkpoint.files or [self.checkpoint.path]), self.config.path]


@dataclass
class AdapterSet:
    """The adapters found, and the checkpoints opened for those in sub-folders (closed by
    ``close``; the checkpoint they were found in is the caller's)."""

    adapters: list[Adapter]
    notes: list[str] = field(default_factory=list)
    _owned: list[Checkpoint] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for ckpt in self._owned:
            ckpt.close()
        self._owned.clear()

    def __enter__(self) -> AdapterSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_adapters(ckpt: Checkpoint) -> AdapterSet:
    """The LoRA adapters of ``ckpt`` (see the module's docstring). Raises ``AdapterError`` when
    it holds none, ``AdapterConfigError`` when a config is malformed."""
    found = AdapterSet([])
    try:
        _collect(ckpt, found)
    except BaseException:
        found.close()
        raise
    if not found.adapters:
        raise AdapterError(
            f"{printable(str(ckpt.path), 200)}: not a LoRA adapter (no {CONFIG_NAME} with "
            "lora_A/lora_B tensors beside it)"
        )
    return found


def _collect(ckpt: Checkpoint, found: AdapterSet) -> None:
    top = config_path(ckpt)
    if top is not None:
        adapter = _adapter("default", top, ckpt, "", list(ckpt.root.tensors()))
        found.adapters.append(adapter)
        if ckpt.path.is_dir():
            _sub_folder_adapters(ckpt.path, found)
        return
    if isinstance(ckpt, FolderCheckpoint) and ckpt.format == "folder":
        # A folder of adapter folders (PEFT saves only the named ones there): one each.
        for node in ckpt.root.children:
            folder = ckpt.path / node.name
            if os.path.isfile(folder / CONFIG_NAME) and _has_factors(node):
                tensors = list(node.tensors())
                found.adapters.append(
                    _adapter(node.name, folder / CONFIG_NAME, ckpt, node.name + ".", tensors)
                )


def is_lora_adapter(ckpt: Checkpoint) -> bool:
    """Whether ``ckpt`` is a LoRA adapter (kind "lora-adapter"): LoRA factors with
    ``adapter_config.json`` beside them, or a folder of such adapter folders. Only names are
    looked at; the config is read when the adapter is analysed."""
    if config_path(ckpt) is not None:
        return True
    if isinstance(ckpt, FolderCheckpoint) and ckpt.format == "folder" and ckpt.root.children:
        return all(
            os.path.isfile(ckpt.path / n.name / CONFIG_NAME) and _has_factors(n)
            for n in ckpt.root.children
        )
    return False


def config_path(ckpt: Checkpoint) -> Path | None:
    """The ``adapter_config.json`` that describes ``ckpt``'s own tensors, if any: the one in
    its folder, or beside its file when the file holds LoRA factors."""
    path = ckpt.path
    if path.is_dir():
        if isinstance(ckpt, FolderCheckpoint) and ckpt.format == "folder":
            return None
        candidate = path / CONFIG_NAME
    else:
        candidate = path.parent / CONFIG_NAME
    if not os.path.lexists(candidate) or not _has_factors(ckpt.root):
        return None
    return candidate


def _has_factors(node: Node) -> bool:
    return any(".lora_" in n.key or n.key.startswith("lora_") for n in node.tensors())


def _adapter(name: str, config: Path, ckpt: Checkpoint, prefix: str, nodes: list[Node]) -> Adapter:
    parsed = read_adapter_config(config)
    if not parsed.is_lora:
        raise AdapterError(
            f"{printable(str(config), 200)}: a PEFT {parsed.peft_type} adapter; only LoRA "
            "adapters are analysed and merged"
        )
    tensors = split_tensors(nodes, prefix, parsed.modules_to_save)
    return Adapter(name, config.parent, parsed, ckpt, prefix, tensors)


def _sub_folder_adapters(folder: Path, found: AdapterSet) -> None:
    """PEFT's ``save_pretrained`` puts each adapter but "default" in a sub-folder of its name."""
    # Imported here: the reader marks adapters using this package.
    from ckpt_gui.core.reader import open_checkpoint

    try:
        names = sorted(
            (e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")),
            key=natural,
        )
    except OSError:
        return
    subs = [n for n in names if os.path.isfile(folder / n / CONFIG_NAME)]
    if len(subs) > MAX_SUB_ADAPTERS:
        found.notes.append(f"{len(subs)} adapter sub-folders; only the first {MAX_SUB_ADAPTERS}")
        subs = subs[:MAX_SUB_ADAPTERS]
    for sub in subs:
        try:
            ckpt = open_checkpoint(folder / sub)
        except AdapterConfigError:
            raise
        except CheckpointError as exc:
            found.notes.append(f"{printable(sub, 80)}/: not opened ({exc})")
            continue
        found._owned.append(ckpt)
        if config_path(ckpt) is None:
            continue
        adapter = _adapter(sub, folder / sub / CONFIG_NAME, ckpt, "", list(ckpt.root.tensors()))
        found.adapters.append(adapter)
    if len(found.adapters) > 1:
        others = ", ".join(printable(a.name, 80) for a in found.adapters[1:])
        found.notes.append(
            f"more adapters in sub-folders: {others} (their tensors show when the sub-folder "
            "is opened)"
        )
