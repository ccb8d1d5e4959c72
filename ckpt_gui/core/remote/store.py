"""One remote file, read through fsspec: its size and version when opened, its bytes fetched
on demand through the cache, and every failure of the network or the server as one line that
names the location without its credentials.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ckpt_gui.core.errors import Cancelled, CheckpointError, NotFoundError
from ckpt_gui.core.remote.cache import Cache, default_folder
from ckpt_gui.core.remote.location import shown

FETCH_STEP = 8 << 20  # one request at most: a cancel or a progress report between two
_cache: Cache | None = None
_cache_lock = threading.Lock()


class RemoteError(CheckpointError):
    """The network or the server failed: a timeout, a refusal, a dropped connection, a file
    that changed on the server while it was read."""


def shared_cache() -> Cache:
    """The process's cache of remote bytes: the user cache folder (a new one when that
    changes, as the tests change it), ``cache.default_limit`` bytes."""
    global _cache
    with _cache_lock:
        if _cache is None or _cache.folder != default_folder():
            _cache = Cache()
        return _cache


def filesystem(url: str) -> tuple[Any, str]:
    """fsspec's file system for ``url`` and the path within it."""
    try:
        import fsspec
    except ImportError:
        raise RemoteError(
            f"{shown(url)}: reading remote checkpoints needs fsspec; install ckpt-gui[remote]"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise RemoteError(f"{shown(url)}: {type(exc).__name__}: {_missing(exc)}") from None
    return fs, path


def _missing(exc: BaseException) -> str:
    text = str(exc)
    if "Install" in text or "install" in text or isinstance(exc, ImportError):
        return "the package for this kind of location is not installed (ckpt-gui[remote])"
    return "not a location fsspec can read"


def call(url: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with any failure turned into one ``CheckpointError`` line (the
    exception's own text is left out: it can carry the full URL and its credentials)."""
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, KeyError):
        # fsspec's HTTP file system says "not found" for a refusal too.
        raise NotFoundError(f"{shown(url)}: not found on the server, or access denied") from None
    except PermissionError:
        raise RemoteError(f"{shown(url)}: access denied (check your credentials)") from None
    except (Cancelled, CheckpointError):
        raise
    except Exception as exc:  # noqa: BLE001 - aiohttp, botocore, gcsfs: one line each
        raise RemoteError(f"{shown(url)}: {what} failed ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if status in (401, 403):
        return f"HTTP {status}: access denied"
    if status == 404:
        return "HTTP 404: not found"
    if status == 412:
        return "HTTP 412: the file changed on the server"
    if isinstance(status, int):
        return f"HTTP {status}"
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return "timed out"
    return f"{type(exc).__name__}: the connection failed"


def version_of(info: dict[str, Any]) -> str:
    """What changes when the file on the server does (its ETag, else its time)."""
    for field in ("ETag", "etag", "blob_id", "sha256", "md5Hash", "LastModified", "mtime"):
        value = info.get(field)
        if value:
            return str(value)
    return ""


class RemoteFile:
    """A remote file, opened: ``read(begin, end)`` returns its bytes, fetching what the cache
    lacks. Every fetch checks afterwards that the file is still the version first seen."""

    def __init__(self, url: str, cache: Cache | None = None, info: dict | None = None) -> None:
        self.url = url
        self.fs, self.path = filesystem(url)
        if info is None or info.get("size") is None:  # an HTTP listing knows no sizes
            info = call(url, "reading its size", self.fs.info, self.path)
        if info.get("type") == "directory":
            raise RemoteError(f"{shown(url)}: a folder, not a file")
        self.size = int(info.get("size") or 0)
        self.version = version_of(info)
        self.cached = (cache or shared_cache()).file(url, self.size, self.version)
        self.fetched = 0  # bytes transferred by this object
        self._fetching = threading.Lock()

    def read(self, begin: int, end: int) -> bytes:
        """Bytes ``[begin, end)`` (clipped to the file), fetched where the cache lacks them."""
        begin, end = max(0, begin), min(end, self.size)
        if end <= begin:
            return b""
        for _ in self.fetch_steps(begin, end):
            pass
        return self.cached.get(begin, end)

    def fetch_steps(self, begin: int, end: int) -> Iterator[int]:
        """Fetch ``[begin, end)`` into the cache a step (one request) at a time, yielding each
        step's bytes (nothing for what is cached): a caller's progress and cancel points."""
        for lo, hi in self.cached.missing(max(0, begin), min(end, self.size)):
            for at in range(lo, hi, FETCH_STEP):
                stop = min(hi, at + FETCH_STEP)
                with self._fetching:  # two threads wanting the same bytes fetch them once
                    for piece in self.cached.missing(at, stop):
                        self._fetch(*piece)
                yield stop - at

    def _fetch(self, begin: int, end: int) -> None:
        data = call(self.url, "reading", self.fs.cat_file, self.path, start=begin, end=end)
        if len(data) != end - begin:
            raise RemoteError(
                f"{shown(self.url)}: the server sent {len(data)} bytes of the "
                f"{end - begin} asked for (the file changed or the connection dropped)"
            )
        self._check_version()
        self.cached.put(begin, data)
        self.fetched += len(data)

    def _check_version(self) -> None:
        info = call(self.url, "checking its version", self.fs.info, self.path)
        if int(info.get("size") or 0) != self.size or version_of(info) != self.version:
            raise RemoteError(
                f"{shown(self.url)}: the file changed on the server while it was read"
            )

    def reader(self) -> io.BufferedReader:
        """A seekable binary file reading this one (through ``read``), for code that takes
        file objects: zipfile, the pickle scan, torch's loader."""
        return io.BufferedReader(_Raw(self), buffer_size=64 << 10)


class Fetch:
    """``TensorInfo.fetch`` of a remote tensor: calling it fetches its range in steps;
    ``missing()`` says how many of its bytes the cache lacks."""

    def __init__(self, remote: RemoteFile, begin: int, end: int) -> None:
        self.remote, self.begin, self.end = remote, begin, end

    def __call__(self) -> Iterator[int]:
        return self.remote.fetch_steps(self.begin, self.end)

    def missing(self) -> int:
        return sum(hi - lo for lo, hi in self.remote.cached.missing(self.begin, self.end))


class _Raw(io.RawIOBase):
    def __init__(self, remote: RemoteFile) -> None:
        self.remote, self.position = remote, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.remote.read(self.position, self.position + view.nbytes)
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.remote.size}
        self.position = max(0, base[whence] + offset)
        return self.position

    def tell(self) -> int:
        return self.position
