"""Importing a heavy module (torch, and what imports it) on a thread of its own while the
caller does work that needs none of it: a command's first second is not spent waiting."""

from __future__ import annotations

import threading
from importlib import import_module


class Preload:
    """A module being imported on a thread; ``join()`` waits for it and raises what the import
    raised, as importing it here would have."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"import {name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            import_module(self.name)
        except BaseException as exc:  # noqa: BLE001 - handed to join(), raised there
            self.error = exc

    def join(self) -> None:
        # In short waits: a signal (Ctrl-C, SIGTERM) delivered to the importing thread would
        # not wake a wait without end, and its handler runs only on this, the main, thread.
        while self.thread.is_alive():
            self.thread.join(0.05)
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def import_in_background(name: str) -> Preload:
    """Start importing module ``name`` on a thread."""
    return Preload(name)
