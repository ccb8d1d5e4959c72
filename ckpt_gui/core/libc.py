"""The C library calls the core makes through ctypes: hints to the kernel about how files and
mapped memory will be used. Each is None where the system has no such call (or no C library
ctypes can open); callers then skip the hint."""

from __future__ import annotations

import ctypes
from typing import Any

MADV_SEQUENTIAL = 2  # pages read once, in order (Linux and the BSDs)
MADV_WILLNEED = 3  # start reading these pages now (the same on Linux, the BSDs and macOS)
SYNC_FILE_RANGE_WRITE = 2  # start writing these dirty pages to the disk (Linux)


def _function(name: str, argtypes: list[Any]) -> Any:
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


# madvise(address, length, advice)
madvise = _function("madvise", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])
# sync_file_range(fd, offset, nbytes, flags)
sync_file_range = _function(
    "sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
)
