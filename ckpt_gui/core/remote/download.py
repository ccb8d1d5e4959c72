"""The whole of a remote file, for the formats that cannot be read a range at a time (legacy
and TorchScript files, GGUF, a real load the user trusts): fetched into the cache in steps (a
progress and cancel point each) and given a name of its own beside it, which opens like any
local file."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

from ckpt_gui.core.remote.location import RemotePath
from ckpt_gui.core.remote.store import RemoteFile


def iter_download(url: str) -> Generator[tuple[int, int], None, Path]:
    """Yields ``(bytes fetched, file size)``; returns the local copy's path. Closing the
    generator stops the download; what was fetched stays cached for the next try."""
    remote = RemoteFile(url)
    done = remote.size - sum(hi - lo for lo, hi in remote.cached.missing(0, remote.size))
    yield done, remote.size
    for n in remote.fetch_steps(0, remote.size):
        done += n
        yield done, remote.size
    folder = remote.cached.data_path.parent / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    name = RemotePath(url).name or "download"
    copy = folder / f"{remote.cached.data_path.stem[:8]}-{name}"
    if not copy.exists():
        partial = copy.with_name(copy.name + f".{os.getpid()}.partial")
        try:
            os.link(remote.cached.data_path, partial)  # the cached bytes, under a name
        except OSError:
            import shutil

            shutil.copyfile(remote.cached.data_path, partial)
        os.replace(partial, copy)
    return copy
