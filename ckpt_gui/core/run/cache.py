"""The run cache: what was measured of each checkpoint, pair and triple of checkpoints, kept in
the user cache folder (``$XDG_CACHE_HOME/ckpt-gui/runs/`` on Linux) so that reopening a run reads
a few small files and a checkpoint added to it costs only its own work.

One JSON file per unit: a checkpoint (its manifest and per-tensor statistics), a pair
(‖B−A‖² and identity per tensor) and a triple (⟨C−B, B−A⟩ per tensor), named by a hash of the
identities (resolved path, size, modification time) of the checkpoints in it, which the file
repeats and which is checked on reading. A changed file has a new identity and so new units.
Writes go to a temporary file renamed into place; a file that cannot be read or parsed, or
whose identity does not match, counts as absent and is written again. A unit read is marked
used (its modification time); past ``MAX_CACHE_BYTES`` in all, the least recently used units
are removed, once per run opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_VERSION = 1
# Above this a cache file is not read (a real one holds a few numbers per tensor).
MAX_CACHE_FILE = 512 << 20
MAX_CACHE_BYTES = 1 << 30  # all unit files together


def default_cache_dir() -> Path:
    """``ckpt-gui/runs`` in the user cache folder (``XDG_CACHE_HOME`` respected)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ckpt-gui")) / "runs"


class RunCache:
    """Unit files under ``folder``; ``folder=None`` keeps nothing (``--no-cache``)."""

    def __init__(self, folder: Path | None, limit: int = MAX_CACHE_BYTES) -> None:
        self.folder, self.limit = folder, limit
        self.reads = 0  # unit files found valid
        self.writes = 0
        self._pruned = False

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def _path(self, kind: str, ident: list[Any]) -> Path:
        assert self.folder is not None
        text = json.dumps([CACHE_VERSION, kind, ident], separators=(",", ":"))
        return self.folder / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:40]}.json"

    def load(self, kind: str, ident: list[Any]) -> dict[str, Any]:
        """The unit's data, or ``{}`` when there is none (or none that can be trusted)."""
        if self.folder is None:
            return {}
        path = self._path(kind, ident)
        try:
            if path.stat().st_size > MAX_CACHE_FILE:
                return {}
            with open(path, encoding="utf-8") as f:
                content = json.load(f)
        except (OSError, ValueError, RecursionError):
            return {}
        if (
            not isinstance(content, dict)
            or content.get("version") != CACHE_VERSION
            or content.get("kind") != kind
            or content.get("identity") != ident
            or not isinstance(content.get("data"), dict)
        ):
            return {}
        self.reads += 1
        try:
            os.utime(path)  # used: the last to go when the cache is pruned
        except OSError:
            pass
        return content["data"]  # type: ignore[no-any-return]

    def store(self, kind: str, ident: list[Any], data: dict[str, Any]) -> None:
        """Write the unit atomically. A cache that cannot be written is no error: the run
        just is not cached."""
        if self.folder is None:
            return
        path = self._path(kind, ident)
        content = {"version": CACHE_VERSION, "kind": kind, "identity": ident, "data": data}
        tmp: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{kind}-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                # NaN and Infinity stay as they are: only this module reads the file back.
                json.dump(content, f, separators=(",", ":"))
            os.replace(tmp, path)
            tmp = None
            self.writes += 1
            if not self._pruned:
                self._pruned = True
                self.prune()
        except OSError:
            pass
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def prune(self) -> None:
        """Remove the least recently used unit files until all of them fit in ``limit``."""
        if self.folder is None:
            return
        units = []
        for path in self.folder.glob("*.json"):
            try:
                st = path.stat()
            except OSError:
                continue
            units.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in units)
        for _, size, path in sorted(units):
            if total <= self.limit:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
