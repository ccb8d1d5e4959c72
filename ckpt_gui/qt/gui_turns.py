"""The GUI thread's turn (for ``ckpt_gui.qt.workers``): a worker that has sent a batch, or is
about to start, waits with the GIL free until the GUI thread has got through what was queued
for it before, the repaints included; ``give_turn`` sets the worker's event once it has.
``after_paint`` does the same for work of the GUI thread itself that can wait (a plot made
ahead of its first use): it runs once what is queued now, and its repaint, is done;
``release_later`` lets go of big results that way."""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer

_GUI_TURN = QEvent.Type(QEvent.registerEventType())
# What a turn waits for, one after the other (0: a low-priority event, which goes behind what
# is queued, repaints included; n: a timer of n ms, which fires after timers due before it):
# what is queued now; the zero timers handling it started (a view's delayed relayout, which then
# asks for its repaint); that repaint, which a window delivers on a timer of its own
# (QT_QPA_UPDATE_IDLE_TIME, 5 ms unless set); and what painting posted.
_UPDATE_IDLE_MS = int(os.environ.get("QT_QPA_UPDATE_IDLE_TIME", "5") or 5)
_STEPS = (0, 1, _UPDATE_IDLE_MS + 1, 0)


def give_turn(turn: threading.Event) -> None:
    """Set ``turn`` once the GUI thread has handled what is queued for it now, and painted.
    Called on the GUI thread."""
    _turns().next_step(turn.set, 0)


def after_paint(context: QObject, call: Callable[[], object], delay_ms: int = 0) -> None:
    """Call ``call`` on the GUI thread ``delay_ms`` after it has handled what is queued for it
    now and painted, on a turn of the event loop of its own: a repaint queued before (a whole
    tree's, tens of milliseconds) and ``call`` never add up to one stall. Nothing happens if
    ``context`` is gone by then."""

    def later() -> None:
        if shiboken6.isValid(context):
            # A timer, not a posted call: the event loop goes round (input, timers) first.
            QTimer.singleShot(max(1, delay_ms), context, call)

    _turns().next_step(later, 0)


def release_later(garbage: object) -> None:
    """Let go of ``garbage`` once the GUI thread has handled what is queued for it now, and
    painted: on a turn of the event loop of its own, and before a worker started after this
    call takes its first turn (turns are handed out in the order asked for). Freeing a big
    comparison's rows (tens of thousands of objects, about 10 ms here) then neither adds to the
    turn that replaced them nor waits on a worker for the GIL, object by object."""
    held = [garbage]
    _turns().next_step(held.clear, 0)


class _Turns(QObject):
    """Hands out the turns. The events go to this object, which lives as long as the module,
    never to a worker, which may be gone before they arrive."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: deque[tuple[Callable[[], object], int]] = deque()  # in the order posted

    def next_step(self, turn: Callable[[], object], step: int) -> None:
        """Wait for ``_STEPS[step]``, then the steps after it; then call ``turn``."""
        if step == len(_STEPS):
            turn()
        elif _STEPS[step]:
            QTimer.singleShot(_STEPS[step], self, lambda: self.next_step(turn, step + 1))
        else:
            self._waiting.append((turn, step + 1))
            QCoreApplication.postEvent(
                self, QEvent(_GUI_TURN), Qt.EventPriority.LowEventPriority.value
            )

    def customEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() == _GUI_TURN and self._waiting:
            self.next_step(*self._waiting.popleft())


@functools.cache
def _turns() -> _Turns:
    """The one ``_Turns``, made on the GUI thread (by the first worker started)."""
    return _Turns()
