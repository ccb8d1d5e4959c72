"""Guards the PySide6 pin in pyproject.toml.

PySide6-Essentials 6.12.0 on CPython 3.11 drops one reference to ``None`` on every Qt method
call that returns nothing (``setText``, ``update``...): about ten thousand calls, a few minutes
in the window, and CPython aborts in ``none_dealloc``. 6.11 does not, hence ``<6.12``.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject


def test_void_qt_calls_keep_every_reference_to_none(qapp) -> None:
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(1000):
        probe.setObjectName("probe")
    assert sys.getrefcount(None) >= before - 10  # a leak would lose 1000
