"""Process memory: giving it back to the system once a checkpoint is closed, and keeping the
cyclic garbage collector out of the way while a large tree is built."""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False
_frozen = False  # freeze_heap() holds: what later paused blocks make is frozen as well


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


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (reference counting still frees
    everything that is not in a cycle). Building a tree of 500,000 nodes allocates millions of
    container objects, and each allocation burst would otherwise set off collections that
    traverse every object made so far: about half the time of opening such a file. Threads may
    nest it; the collector comes back, as it was, when the last one leaves, and what was made
    meanwhile goes straight to the oldest generation."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                # What the block made is mostly long-lived (a tree). Left in the youngest
                # generation, it would be walked by the next young, middle and full
                # collections in turn (seconds for a million nodes, with every thread
                # waiting); freezing and unfreezing moves it all to the oldest generation in
                # one step, where only the next full collection ever looks at it.
                gc.freeze()
                if not _frozen:
                    gc.unfreeze()
                gc.enable()


def freeze_heap() -> None:
    """Exempt every object alive now from the cyclic collector's future passes (``gc.freeze``).
    For a long-lived process holding a tree of a million nodes (the window): each full
    collection would otherwise walk all of it again, stalling every thread for a second.
    Objects made later are collected as usual, except what ``gc_paused`` blocks make, which
    is frozen too; ``thaw_heap`` undoes it all."""
    global _frozen
    with _gc_lock:
        _frozen = True
        gc.freeze()


def thaw_heap() -> None:
    """Give the frozen objects back to the collector (``gc.unfreeze``) and collect: a closed
    checkpoint's tree, full of parent-child cycles, goes now."""
    global _frozen
    with _gc_lock:
        _frozen = False
        gc.unfreeze()
    gc.collect()


def for_one_command() -> None:
    """Garbage collection for a process that runs one command and ends (the command line):
    everything alive now is frozen, and so are the trees opened later (``gc_paused``), and a
    full collection, which walks every object still tracked (half a million results and the
    rows printed from them), waits for a hundred times more young collections than by default.
    Young collections still free short-lived cycles as usual."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)
    freeze_heap()
