"""Shared test setup. Qt is never imported here: ``tests/core`` must pass without it."""

from __future__ import annotations

import os

# Before anything imports Qt: no display is needed, in CI or on a developer's machine.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
