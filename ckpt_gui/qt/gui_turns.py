"""The GUI thread's turn (for ``ckpt_gui.qt.workers``): a worker that has sent a batch, or is
about to start, waits with the GIL free until the GUI thread has got through what was queued
for it before, the repaints included; ``give_turn`` sets the worker's event once it has."""

from __future__ import annotations

import functools
import threading
from collections import deque

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt

_GUI_TURN = QEvent.Type(QEvent.registerEventType())
# A low-priority event goes behind what is queued; posted once more when it arrives, it also
# goes behind what handling that queue posted (the repaint a batch asked for).
_GUI_TURN_HOPS = 2


def give_turn(turn: threading.Event) -> None:
    """Set ``turn`` once the GUI thread has handled what is queued for it now, and painted.
    Called on the GUI thread."""
    _turns().give(turn, _GUI_TURN_HOPS)


class _Turns(QObject):
    """Hands out the turns. The events go to this object, which lives as long as the module,
    never to a worker, which may be gone before they arrive."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: deque[tuple[threading.Event, int]] = deque()  # in the order posted

    def give(self, turn: threading.Event, hops: int) -> None:
        self._waiting.append((turn, hops))
        # Low priority: behind the repaints (Qt posts them at low priority too) queued before.
        QCoreApplication.postEvent(self, QEvent(_GUI_TURN), Qt.EventPriority.LowEventPriority.value)

    def customEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() != _GUI_TURN or not self._waiting:
            return
        turn, hops = self._waiting.popleft()
        if hops > 1:
            self.give(turn, hops - 1)
        else:
            turn.set()


@functools.cache
def _turns() -> _Turns:
    """The one ``_Turns``, made on the GUI thread (by the first worker started)."""
    return _Turns()
