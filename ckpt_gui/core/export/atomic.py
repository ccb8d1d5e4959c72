"""Never lose anything: refuse destinations that are the source, and write every result to a
temporary name in the destination folder that becomes the real name only once it is complete,
flushed, fsynced and verified. On any error, cancel or interruption the temporary file goes.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from ckpt_gui.core.export.options import ExportError
from ckpt_gui.core.remote.location import RemotePath

TEMP_SUFFIX = ".partial"


def check_destination(
    source: Path,
    destination: Path,
    sharded: bool,
    names: list[str],
    *,
    overwrite: bool = False,
    source_files: Sequence[Path] = (),
) -> None:
    """Raise ``ExportError`` when writing ``destination`` could touch ``source``: the same path,
    a symlink or hard link to it, a file inside a source folder, or (``sharded``) a destination
    folder that holds the source. ``source_files``: every file the source reads (its shards,
    index, DCP storage files, wherever their links lead); no file written may be one of them,
    however it is spelled. ``names``: the files a sharded export writes. Without ``overwrite``,
    an existing destination file (or shard, or index) is refused too."""
    if isinstance(source, RemotePath):
        raise ExportError(
            f"{source}: a remote checkpoint; download it first, then export the local copy"
        )
    src, dst = source.resolve(), destination.resolve()
    if src == dst or _same_file(source, destination):
        raise ExportError(f"{destination}: this is the source file; choose another destination")
    reads = [source, *source_files]
    for target in [destination / n for n in names] if sharded else [destination]:
        read = _one_of(target, reads)
        if read is not None:
            what = "the source file" if read == source else f"{read}, a file the source reads"
            raise ExportError(f"{target}: this is {what}; choose another destination")
    if src.is_dir() and src in dst.parents:
        raise ExportError(f"{destination}: inside the source folder {source}; choose another")
    if sharded:
        if destination.exists() and not destination.is_dir():
            raise ExportError(f"{destination}: a file; a sharded export writes a folder")
        if dst in src.parents:
            raise ExportError(f"{destination}: this folder holds the source; choose another")
        parent = destination.parent
    else:
        if destination.is_dir():
            raise ExportError(f"{destination}: a folder; give a file name to export to")
        parent = destination.parent
    if not parent.exists():
        raise ExportError(f"{parent}: no such folder")
    if not parent.is_dir():
        raise ExportError(f"{parent}: not a folder")
    if not overwrite:
        existing = [destination / n for n in names] if sharded else [destination]
        for path in existing:
            if os.path.lexists(path):
                raise ExportError(f"{path}: already exists; use --force to replace it")


def _one_of(target: Path, files: list[Path]) -> Path | None:
    """The file of ``files`` that ``target`` is (by its resolved path, or the same inode: a hard
    link), or None."""
    real = os.path.realpath(target)
    for file in files:
        if os.path.realpath(file) == real or _same_file(file, target):
            return file
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_error(destination: Path, exc: OSError) -> ExportError:
    """One line for a failed write: the destination and what the system said."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        reason = "not enough free space"
    return ExportError(f"{destination}: cannot write the export ({reason}); nothing was written")


def temp_prefix(destination: Path) -> str:
    """``.model.safetensors.pid1234.``: the temporary name says whose it is, so a later export
    can tell one left by a killed process from one being written right now."""
    return f".{destination.name}.pid{os.getpid()}."


def remove_stale_partials(destination: Path) -> None:
    """Remove the temporary files (or folders) an earlier export to ``destination`` left when
    it was killed (SIGKILL, a power cut): those of processes that no longer run."""
    pattern = re.compile(re.escape(f".{destination.name}.pid") + r"(\d+)\..*" + TEMP_SUFFIX)
    try:
        entries = list(os.scandir(destination.parent))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass  # someone else's file we cannot remove: it is not ours to insist


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # it exists (another user's) or cannot be asked: leave its files alone
    return True


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Syncs:
    """fsyncs that run on their own threads while the export verifies what it wrote (they wait
    on the disk, not the processor); ``wait()`` joins them and raises the first error."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[OSError] = []

    def start(self, file: BinaryIO) -> None:
        """Flush ``file`` here (a full disk fails now), then fsync and close it on a thread."""
        file.flush()

        def sync() -> None:
            try:
                os.fsync(file.fileno())
            except OSError as exc:
                self._errors.append(exc)
            finally:
                file.close()

        thread = threading.Thread(target=sync, name="export-fsync", daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._errors:
            raise self._errors[0]


class AtomicFile:
    """A temporary file next to ``destination``; ``commit()`` renames it into place."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self.path: Path | None = None
        self.file: BinaryIO | None = None
        self._syncs = _Syncs()

    def __enter__(self) -> AtomicFile:
        if self.path is not None:  # entered already (a head start's file, adopted)
            return self
        try:
            remove_stale_partials(self.destination)
            fd, name = tempfile.mkstemp(
                dir=self.destination.parent,
                prefix=temp_prefix(self.destination),
                suffix=TEMP_SUFFIX,
            )
        except OSError as exc:
            raise write_error(self.destination, exc) from None
        self.path = Path(name)
        try:
            if hasattr(os, "fchmod"):  # mkstemp makes the file private; give it a normal mode
                os.fchmod(fd, 0o666 & ~_umask())
            self.file = os.fdopen(fd, "wb")
        except BaseException:  # an interrupt here must not leave the file behind either
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        return self

    def finish(self) -> None:
        """Flush, and start the fsync: ``commit()`` waits for the bytes to be on disk."""
        assert self.file is not None
        self._syncs.start(self.file)

    def commit(self) -> None:
        assert self.path is not None
        self._syncs.wait()
        os.replace(self.path, self.destination)
        self.path = None
        fsync_folder(self.destination.parent)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._syncs.wait()
        except OSError:
            pass  # the file is removed below anyway
        if self.file is not None and not self.file.closed:
            try:
                self.file.close()
            except OSError:
                pass  # a failed flush on a full disk: the file is removed below anyway
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class AtomicFolder:
    """A temporary folder next to ``destination`` for shards. ``commit()`` renames it into place
    when the destination does not exist (or is empty); into an existing folder (a model folder
    with its config.json) it moves each shard, and the index last, so the index never names a
    shard that is not there."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self.path: Path | None = None
        self._syncs = _Syncs()
        self._open: list[BinaryIO] = []  # opened and not finished: closed on the way out

    def __enter__(self) -> AtomicFolder:
        try:
            remove_stale_partials(self.destination)
            name = tempfile.mkdtemp(
                dir=self.destination.parent,
                prefix=temp_prefix(self.destination),
                suffix=TEMP_SUFFIX,
            )
        except OSError as exc:
            raise write_error(self.destination, exc) from None
        self.path = Path(name)
        return self

    def open(self, name: str) -> BinaryIO:
        """A new file in the folder; the folder closes it (``finish`` or on the way out)."""
        assert self.path is not None
        file = open(self.path / name, "wb")
        self._open.append(file)
        return file

    def finish(self, file: BinaryIO) -> None:
        """Flush ``file``, and start its fsync: ``commit()`` waits for it."""
        self._syncs.start(file)  # a flush that fails leaves it open, to be closed on the way out
        self._open.remove(file)

    def commit(self, names: list[str]) -> None:
        """Put the files ``names`` (shards first, index last) in the destination folder."""
        assert self.path is not None
        self._syncs.wait()
        dst = self.destination
        if not dst.exists() or (dst.is_dir() and not any(dst.iterdir())):
            os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp makes it private
            os.replace(self.path, dst)
            self.path = None
        else:
            for name in names:
                os.replace(self.path / name, dst / name)
            fsync_folder(dst)
        fsync_folder(dst.parent)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for file in self._open:
            try:
                file.close()
            except OSError:
                pass  # a failed flush on a full disk: the folder is removed below anyway
        self._open.clear()
        try:
            self._syncs.wait()
        except OSError:
            pass  # the folder is removed below anyway
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
