"""Giving memory back to the system once a checkpoint is closed."""

from __future__ import annotations

import ctypes
import sys


def return_freed_memory() -> None:
    """Ask the C allocator to hand freed heap back to the system. glibc keeps what worker
    threads freed in per-thread arenas, so after a reload or a closed tab the process would
    stay tens of megabytes larger than it needs; elsewhere this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (musl has no malloc_trim): nothing to give back this way
