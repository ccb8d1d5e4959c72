"""The startup thread imports torch, then pyqtgraph, then freezes what exists: the first tab or
compare does not import pyqtgraph on the GUI thread, and full collections no longer walk the
libraries' objects (a 100 ms stall of every thread, holding the GIL)."""

from __future__ import annotations

import gc
import sys

from ckpt_gui.qt import startup


def test_the_libraries_load_and_their_objects_are_frozen() -> None:
    before = gc.get_freeze_count()
    try:
        startup.preload_libraries().join(timeout=120)
        assert "torch" in sys.modules and "pyqtgraph" in sys.modules
        assert startup._loaded.is_set()
        assert gc.get_freeze_count() > max(before, 100_000)  # torch alone has more objects
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
