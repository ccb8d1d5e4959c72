"""Progress bars that repaint with the rest of the window, not on their own.

``QProgressBar.setValue`` (and ``setRange``, when it resets the bar) calls ``repaint()``: a
synchronous paint that flushes every dirty widget of the window, there and then. Set from a slot
that has just changed a big model, it paints the views over that model in the same turn of the
event loop as the change, before their delayed layout, and again after it (tens of
milliseconds in a compare tab of thousands of rows).
"""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar


def set_progress(bar: QProgressBar, value: int, maximum: int | None = None) -> None:
    """Set ``bar`` to ``value`` (and its range to ``0..maximum``, when given; ``0..0`` is a busy
    indicator); the bar repaints on the next paint of the window, like any other widget."""
    if bar.value() == value and (maximum is None or (bar.minimum(), bar.maximum()) == (0, maximum)):
        return
    enabled = bar.updatesEnabled()
    bar.setUpdatesEnabled(False)  # repaint() does nothing while updates are off
    try:
        if maximum is not None:
            bar.setRange(0, maximum)
        bar.setValue(value)
    finally:
        bar.setUpdatesEnabled(enabled)
    if enabled:
        bar.update()
