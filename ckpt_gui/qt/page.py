"""``Page``: what the main window needs of a tab, whatever the tab shows.

The window knows its tabs only through this contract: their state and progress for the status
bar, whether they are idle (the screenshot waits for it), and what each menu command means on
them: Reload, Cancel, Copy, Find, Expand and Collapse, Compare With, Export, Scan Report. A page
that has no use for a command keeps the default, which does nothing, so a new kind of page (a
run, an adapter) plugs in through ``MainWindow.add_page`` without touching the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QWidget

from ckpt_gui.core.display_names import name_key


class Page(QWidget):
    """One tab. Subclasses implement ``title``, ``start``, ``cancel``, ``shutdown`` and
    ``is_idle``, report progress with ``_report`` and changes of state with ``_set_state``."""

    state_changed = Signal(str)
    progress = Signal(str, int, int)  # message, done, total (total 0: busy without a count)
    loaded = Signal()  # the page's files are open (its work may go on)
    title_changed = Signal()  # title() or tooltip() say something else now (Swap, a drop)
    # Compare ``a`` with ``b`` in a new tab, filtered to ``key`` (a row's Compare With…).
    compare_requested = Signal(object, object, str)

    # True when the user allowed a real load for this page (``--trust``, the trust dialog):
    # what it exports is then read the same way.
    trust: bool = False

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ""
        self._progress: tuple[str, int, int] = ("", 0, 0)
        self._names: dict[Path, str] = {}

    # --- what the window shows --------------------------------------------------------------
    def title(self) -> str:
        raise NotImplementedError

    def tooltip(self) -> str:
        """The tab's tooltip (plain text)."""
        return self.title()

    def source(self) -> Path | None:
        """The one checkpoint this page shows: what Compare With and Export start from, and
        what opening the same path again brings to the front. None for other pages."""
        return None

    def paths(self) -> list[Path]:
        """The files the page shows by name (tabs tell same-named files apart by them)."""
        source = self.source()
        return [] if source is None else [source]

    def set_names(self, names: Mapping[Path, str]) -> None:
        """How to call each file, told apart from every other file open in the window
        (``core.display_names.short_names``); the window calls it when tabs come and go."""
        self._names = dict(names)

    def name_of(self, path: Path) -> str:
        """``path``'s name as the window tells it apart: ``run1/checkpoint.pth``."""
        return self._names.get(name_key(path)) or path.name or str(path)

    def progress_state(self) -> tuple[str, int, int]:
        """The last progress reported: (message, done, total)."""
        return self._progress

    def is_idle(self) -> bool:
        """Nothing left to open or compute (the screenshot waits for this)."""
        raise NotImplementedError

    def is_busy(self) -> bool:
        return not self.is_idle()

    def panels_busy(self) -> bool:
        """A panel is still computing for the selection (the screenshot waits for it)."""
        return False

    # --- the window's commands --------------------------------------------------------------
    def start(self) -> None:
        """Begin the page's work (the window calls it once the tab is shown)."""
        raise NotImplementedError

    def reload(self) -> None:
        """File > Reload: read the files again."""
        self.start()

    def cancel(self) -> None:
        """The status bar's Cancel: stop what is running."""
        raise NotImplementedError

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Abort every worker of the page and wait for their threads (tab or window closing)."""
        raise NotImplementedError

    def copy_keys(self) -> list[str]:
        """The selected keys (what Edit > Copy copies when the rows have focus)."""
        return []

    def copy_text(self) -> str:
        """Edit > Copy (Ctrl+C): what has focus, as text. By default the selected keys, one a
        line; a page copies selected text or cells instead when they have focus."""
        return "\n".join(self.copy_keys())

    def export_sources(self) -> list[Path]:
        """File > Export: the files the page can export (the window asks which when several)."""
        source = self.source()
        return [] if source is None else [source]

    def compare_with(self, path: Path) -> bool:
        """File > Compare With… chose ``path``: True when the page took it itself (a compare
        tab replaces B); False, and the window opens a new compare tab from ``source()``."""
        return False

    def focus_filter(self) -> None:
        """Edit > Filter: put the cursor in the page's filter."""

    def expand_all(self) -> None:
        """View > Expand All."""

    def collapse_all(self) -> None:
        """View > Collapse All."""

    def show_scan_report(self) -> QDialog | None:
        """View > Scan Report: the dialog shown, or None when the page has no single file."""
        return None

    def select_largest_tensor(self) -> object | None:
        """Select what the screenshot should show; None when there is nothing to select."""
        return None

    # --- for subclasses ---------------------------------------------------------------------
    def _report(self, text: str, done: int, total: int) -> None:
        self._progress = (text, done, total)
        self.progress.emit(text, done, total)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)
