"""The on-disk cache of remote bytes: per remote file (by URL, size and version), a sparse local
file holding the ranges fetched so far and a list of those ranges. A range is listed only once
all of it is written, so nothing half-fetched is ever read back. The least recently used files
go first when the cache passes its size limit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

DEFAULT_LIMIT = 10 * 2**30
LIMIT_VARIABLE = "CKPT_GUI_REMOTE_CACHE_BYTES"  # the command line's way to set the limit


def default_folder() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ckpt-gui")) / "remote"


def default_limit() -> int:
    try:
        return max(0, int(os.environ.get(LIMIT_VARIABLE, DEFAULT_LIMIT)))
    except ValueError:
        return DEFAULT_LIMIT


class Cache:
    """A folder of cached remote files, at most ``limit`` bytes of fetched ranges in all."""

    def __init__(self, folder: Path | None = None, limit: int | None = None) -> None:
        self.folder = folder or default_folder()
        self.limit = default_limit() if limit is None else limit
        self._lock = threading.Lock()
        self._entries: dict[str, CachedFile] = {}
        # Bytes cached, as last counted on disk plus what was stored since: the folder is
        # counted again (every file's ranges read) only when this passes the limit.
        self._held: int | None = None

    def file(self, url: str, size: int, version: str) -> CachedFile:
        """The cached copy of ``url`` as it is now (another size or version: another copy)."""
        key = hashlib.sha256(f"{url}\0{size}\0{version}".encode()).hexdigest()[:32]
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                entry = self._entries[key] = CachedFile(self, self.folder / key, size)
            return entry

    def usage(self) -> int:
        """Bytes of fetched ranges in the cache."""
        return sum(_fetched(path) for path in self.folder.glob("*.ranges"))

    def clear(self) -> None:
        """Remove every cached file (those open now start again empty)."""
        with self._lock:
            for entry in self._entries.values():
                entry.forget()
            self._entries.clear()
            self._held = None
            shutil.rmtree(self.folder, ignore_errors=True)

    def stored(self, nbytes: int, keep: CachedFile) -> None:
        """``nbytes`` more were stored in ``keep``: trim the cache if it may be past its limit."""
        with self._lock:
            if self._held is None:
                self._held = self.usage()
            self._held += nbytes
            over = self._held > self.limit
        if over:
            self.trim(keep)
            with self._lock:
                self._held = self.usage()

    def trim(self, keep: CachedFile | None = None) -> None:
        """Drop the least recently used files until the cache is within its limit."""
        ranges = sorted(self.folder.glob("*.ranges"), key=_used)
        total = sum(_fetched(path) for path in ranges)
        for path in ranges:
            if total <= self.limit:
                break
            if keep is not None and path == keep.ranges_path:
                continue
            with self._lock:
                pinned = (
                    path.with_suffix("").name in self._entries
                    and self._entries[path.with_suffix("").name].pinned
                )
            if pinned:  # memory-mapped by an open checkpoint: it reads new ranges there
                continue
            total -= _fetched(path)
            stem = path.with_suffix("")
            with self._lock:
                entry = self._entries.pop(stem.name, None)
            if entry is not None:
                entry.forget()
            for suffix in (".ranges", ".data"):
                stem.with_suffix(suffix).unlink(missing_ok=True)


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _fetched(path: Path) -> int:
    try:
        return sum(hi - lo for lo, hi in json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return 0


class CachedFile:
    """One remote file's fetched ranges: ``missing`` says what to fetch, ``put`` stores a
    fetched range, ``get`` reads back ranges that are all there."""

    def __init__(self, cache: Cache, stem: Path, size: int) -> None:
        self.cache = cache
        self.data_path, self.ranges_path = stem.with_suffix(".data"), stem.with_suffix(".ranges")
        self.size = size
        self._lock = threading.Lock()
        self.ranges: list[list[int]] = []
        # Set while a checkpoint reads the data file through a memory map (GGUF): then it is
        # never evicted, or ranges fetched later would go to a new file the map never sees.
        self.pinned = False
        try:
            loaded = json.loads(self.ranges_path.read_text())
            if self.data_path.stat().st_size == size:
                self.ranges = [[int(lo), int(hi)] for lo, hi in loaded]
        except (OSError, ValueError, TypeError):
            pass

    def missing(self, begin: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[begin, end)`` not fetched yet."""
        out, at = [], begin
        with self._lock:
            for lo, hi in self.ranges:
                if hi <= at:
                    continue
                if lo >= end:
                    break
                if lo > at:
                    out.append((at, lo))
                at = max(at, hi)
        if at < end:
            out.append((at, end))
        return out

    def put(self, begin: int, data: bytes) -> None:
        with self._lock:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(self.data_path, flags, 0o600)
            try:
                if os.fstat(fd).st_size != self.size:
                    os.ftruncate(fd, self.size)  # sparse: only what is written takes room
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(fd, view, begin + len(data) - len(view)) :]
            finally:
                os.close(fd)
            self.ranges = _merge(self.ranges, [begin, begin + len(data)])
            partial = self.ranges_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
            partial.write_text(json.dumps(self.ranges))
            os.replace(partial, self.ranges_path)
        self.cache.stored(len(data), keep=self)

    def get(self, begin: int, end: int) -> bytes:
        with open(self.data_path, "rb") as f:
            f.seek(begin)
            return f.read(end - begin)

    def forget(self) -> None:
        with self._lock:
            self.ranges = []


def _merge(ranges: list[list[int]], new: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for lo, hi in sorted([*ranges, new]):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out
