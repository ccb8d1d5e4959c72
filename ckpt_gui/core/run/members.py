"""Which checkpoints make a run, what identifies each on disk, and the order they run in.

A run is a list of paths (files, or folders that hold one checkpoint such as a Hugging Face
``checkpoint-500/``), or one folder of them. Order comes from the checkpoints themselves where
they say (a step, else an epoch), then from the numbers in their names, then from modification
times; ``order_run`` says which it used.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckpt_gui.core.errors import CheckpointError, NotACheckpointError, NotFoundError
from ckpt_gui.core.formats.folders import MAX_FOLDER_ENTRIES, folder_layout, natural

# Top-level keys that count training progress, most precise first (``order_run``).
STEP_KEYS = ("global_step", "step", "iteration", "iter", "steps")
EPOCH_KEYS = ("epoch", "epochs")
ORDER_MODES = ("step", "epoch", "name", "mtime")
# A Hugging Face Trainer output folder: each ``checkpoint-<step>`` sub-folder is one checkpoint.
_HF_CHECKPOINT = re.compile(r"checkpoint-\d+")
_NUMBER = re.compile(r"\d+")


class RunError(CheckpointError):
    """The paths do not make a run (fewer than two checkpoints)."""


@dataclass(frozen=True)
class RunCheckpoint:
    """One checkpoint of a run, in run order. ``order_key`` says where ``order_value`` came from:
    a key in the checkpoint (``global_step``, ``epoch``, ``trainer_state.json:global_step``),
    ``"name"`` (the number in the name, or the name itself when names share no pattern) or
    ``"mtime"`` (seconds since the epoch)."""

    path: Path
    order_key: str
    order_value: int | float | str | None

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)


def run_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The checkpoints of a run, in the order found (``order_run`` sorts them).

    Several paths: one checkpoint each. One folder: a Hugging Face Trainer output folder gives
    its ``checkpoint-N/`` sub-folders; any other folder gives the checkpoint files and
    checkpoint sub-folders ``formats.folders`` finds in it (a folder that is one checkpoint, a
    model folder, is a run of one). Raises ``RunError`` for fewer than two.
    """
    if not paths:
        raise RunError("a run needs at least 2 checkpoints; no path given")
    found = [Path(p) for p in paths]
    if len(found) == 1:
        only = found[0]
        if not only.exists():
            raise NotFoundError(f"{only}: no such file or folder")
        if only.is_dir():
            found = _folder_members(only)
    if len(found) < 2:
        where = f" in {paths[0]}" if len(paths) == 1 else ""
        raise RunError(f"a run needs at least 2 checkpoints; found {len(found)}{where}")
    return found


def _folder_members(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            subfolders = [
                e.name
                for _, e in zip(range(MAX_FOLDER_ENTRIES + 1), entries)
                if not e.name.startswith(".") and e.is_dir()
            ]
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot be read ({exc.strerror or exc})") from None
    trainer = sorted((n for n in subfolders if _HF_CHECKPOINT.fullmatch(n)), key=natural)
    if trainer:
        return [folder / n for n in trainer]
    try:
        layout = folder_layout(folder)
    except NotACheckpointError:
        return []
    if layout.kind != "components":
        return [layout.folder]  # the folder is one checkpoint
    return [c.path for c in layout.components]


def identity(path: Path) -> list[Any]:
    """What says a checkpoint is unchanged: its resolved path, size and modification time in
    nanoseconds; for a folder, those of every file under it. The cache is keyed by it."""
    resolved = path.resolve()
    try:
        st = os.stat(resolved)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(st.st_mode):
        return [str(resolved), st.st_size, st.st_mtime_ns]
    files: list[list[Any]] = []
    for root, dirs, names in os.walk(resolved):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            try:
                fst = os.stat(os.path.join(root, name))
            except OSError:
                continue  # a dangling link: opening says what is wrong, if it matters
            rel = os.path.relpath(os.path.join(root, name), resolved)
            files.append([rel, fst.st_size, fst.st_mtime_ns])
            if len(files) > MAX_FOLDER_ENTRIES:
                raise NotACheckpointError(
                    f"{path}: holds more than {MAX_FOLDER_ENTRIES:,} files; not one checkpoint"
                )
    return [str(resolved), files]


def order_run(
    paths: Sequence[Path], found: Sequence[Mapping[str, int | float]]
) -> tuple[str, list[int], list[RunCheckpoint]]:
    """How the run is ordered (one of ``ORDER_MODES``), the permutation that puts ``paths`` in
    run order, and each checkpoint (in run order) with the value it was ordered by.

    ``found[i]`` holds the progress counters read from checkpoint i (``global_step``, ``epoch``,
    ``trainer_state.json:global_step``, ...). A step orders the run when every checkpoint has
    one and they are not all equal; then an epoch, the same way; then the numbers in the names
    (natural sort: ``epoch_2`` before ``epoch_10``) when every name has one; then the
    modification times. Ties keep natural name order.
    """
    names = [p.name or str(p) for p in paths]
    for mode, keys in (("step", STEP_KEYS), ("epoch", EPOCH_KEYS)):
        picked = [c for c in (_counter(f, keys) for f in found) if c is not None]
        if len(picked) == len(paths) and len({value for _, value in picked}) > 1:
            perm = sorted(range(len(paths)), key=lambda i: (picked[i][1], natural(names[i])))
            return mode, perm, [RunCheckpoint(paths[i], *picked[i]) for i in perm]
    if all(_NUMBER.search(n) for n in names):
        perm = sorted(range(len(paths)), key=lambda i: natural(names[i]))
        values_by_name = _name_numbers([names[i] for i in perm])
        return (
            "name",
            perm,
            [RunCheckpoint(paths[i], "name", v) for i, v in zip(perm, values_by_name)],
        )
    mtimes = [_mtime(p) for p in paths]
    perm = sorted(range(len(paths)), key=lambda i: (mtimes[i], natural(names[i])))
    return "mtime", perm, [RunCheckpoint(paths[i], "mtime", mtimes[i]) for i in perm]


def _counter(
    found: Mapping[str, int | float], keys: Sequence[str]
) -> tuple[str, int | float] | None:
    """The first of ``keys`` found (also as ``file:key``, e.g. from trainer_state.json)."""
    for key in keys:
        for where, value in found.items():
            if (where == key or where.endswith(":" + key)) and _finite(value):
                return where, value
    return None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _name_numbers(names: Sequence[str]) -> list[int | str]:
    """Each name's number when all names follow one pattern and differ in one number
    (``model_epoch_2.pth``, ``model_epoch_10.pth``); otherwise the names themselves."""
    templates = {_NUMBER.sub("#", n) for n in names}
    numbers = [_NUMBER.findall(n) for n in names]
    if len(templates) == 1:
        varying = [j for j in range(len(numbers[0])) if len({int(ns[j]) for ns in numbers}) > 1]
        if len(varying) == 1:
            return [int(ns[varying[0]]) for ns in numbers]
    return list(names)


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return math.inf
