"""Names that tell files apart: ``checkpoint.pth`` alone, but ``run1/checkpoint.pth`` and
``run2/checkpoint.pth`` when two files of that name are open (tabs, compare headers, legends)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ckpt_gui.core.remote.location import RemotePath


def name_key(path: str | os.PathLike[str] | RemotePath) -> Path:
    """The key ``short_names`` files a path under (absolute, symlinks left as they are; a
    remote location as it is)."""
    if isinstance(path, RemotePath):
        return path  # type: ignore[return-value]  # it has the name and parts of a Path
    return Path(os.path.abspath(path))


def short_names(paths: Iterable[str | os.PathLike[str] | RemotePath]) -> dict[Path, str]:
    """For each path, its name, prefixed with the fewest parent folders that make it unique
    among ``paths`` with the same name (keyed by ``name_key``)."""
    keys = list(dict.fromkeys(name_key(p) for p in paths))
    by_name: dict[str, list[Path]] = {}
    for key in keys:
        by_name.setdefault(key.name or str(key), []).append(key)
    out: dict[Path, str] = {}
    for name, same in by_name.items():
        if len(same) == 1:
            out[same[0]] = name
            continue
        for key in same:
            out[key] = _shortest_unique(key, [k for k in same if k != key])
    return out


def _shortest_unique(key: Path, others: list[Path]) -> str:
    parts = key.parts
    for depth in range(2, len(parts) + 1):
        tail = parts[-depth:]
        if all(other.parts[-depth:] != tail for other in others):
            # The distinguishing folder and the name; folders in between are elided.
            if depth == 2:
                return "/".join(tail)
            return f"{tail[0]}/…/{tail[-1]}"
    return str(key)
