"""``MainWindow``: tabs of checkpoints, drag and drop, and the status bar with progress and
Cancel. It knows its tabs only as ``Page``s (``ckpt_gui.qt.page``): what a menu command does is
the current page's business. The menus, their shortcuts and recent files are ``WindowMenus``;
the File commands that ask something first (dialogs, the drop question) are ``FileCommands``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
)
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QWidget,
)

from ckpt_gui.core.display_names import short_names
from ckpt_gui.core.remote.location import RemotePath, as_location, is_remote
from ckpt_gui.qt import recent, theme, workers
from ckpt_gui.qt.page import Page
from ckpt_gui.qt.plain_text import plain_tooltip
from ckpt_gui.qt.widgets.progress import set_progress
from ckpt_gui.qt.window_menus import WindowMenus

if TYPE_CHECKING:  # the pages import torch: the window imports them once it is shown
    from ckpt_gui.qt.compare import CompareView
    from ckpt_gui.qt.run.view import RunView

WELCOME = (
    "<p style='font-size:15pt'>Open a checkpoint</p>"
    "<p style='color:{grey}'>File ▸ Open (Ctrl+O), or drop a file or a folder here.</p>"
)


class MainWindow(WindowMenus):
    """The window (its menu bar is ``WindowMenus``, its File dialogs ``FileCommands``)."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("ckpt-gui")
        self.setAcceptDrops(True)
        self.tabs = QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.setMovable(True)
        self.tabs.setDocumentMode(True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(lambda _: self._sync_status())
        self.welcome = QLabel()
        self.welcome.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)

        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)  # progress names files
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_current)
        bar = self.statusBar()
        bar.addWidget(self.status_label, 1)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        self._build_menus()
        self._sync_status()
        self._restyle()
        theme.follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        self.welcome.setText(WELCOME.format(grey=theme.colour("secondary")))

    # --- opening ----------------------------------------------------------------------------
    def open_path(self, path: str | Path, *, trust: bool = False) -> Page:
        """Open ``path`` in a new tab (or show the tab that already has it). ``trust=True``
        allows a real load: only ``--trust`` on the command line passes it. A URL opens where
        it lives."""
        path = as_location(path)
        if isinstance(path, RemotePath):
            from ckpt_gui.qt.remote_dialogs import apply_cache_limit

            apply_cache_limit()
        for page in self.pages():
            source = page.source()
            if source is not None and source.resolve() == path.resolve():
                self.tabs.setCurrentWidget(page)
                return page
        from ckpt_gui.qt.widgets.checkpoint_view import CheckpointView  # torch, once needed

        return self.add_page(CheckpointView(path, trust=trust))

    def open_compare(self, a: str | Path, b: str | Path, *, trust: bool = False) -> CompareView:
        """Compare ``a`` with ``b`` in a new tab (``trust``: as for ``open_path``)."""
        from ckpt_gui.qt.compare import CompareView  # torch, once needed

        page = CompareView(as_location(a), as_location(b), trust=trust)
        self.add_page(page)
        return page

    def open_run(self, paths: Sequence[str | Path], *, trust: bool = False) -> RunView:
        """A training run in a new tab: a folder of checkpoints, or several checkpoints."""
        from ckpt_gui.qt.run.view import RunView  # torch, once needed

        page = RunView([Path(p) for p in paths], trust=trust)
        self.add_page(page)
        return page

    def add_page(self, page: Page) -> Page:
        """Show ``page`` in a new tab, follow its progress in the status bar, and start it."""
        page.progress.connect(lambda *_: self._sync_status(page))
        page.state_changed.connect(lambda _: self._sync_status(page))
        page.loaded.connect(lambda: self._remember(page))
        page.title_changed.connect(self._retitle)
        page.compare_requested.connect(self._compare_key)
        index = self.tabs.addTab(page, page.title())
        self._retitle()
        self.tabs.setCurrentIndex(index)
        self.stack.setCurrentWidget(self.tabs)
        page.start()
        return page

    def _remember(self, page: Page) -> None:
        source = page.source()
        if source is not None:
            recent.remember(source)

    def _compare_key(self, a: Path, b: Path, key: str) -> None:
        """A row's Compare This Tensor With…: a compare tab showing that key."""
        page = self.open_compare(a, b)
        page.results.filter_bar.filter_edit.setText(key)

    def open_demo(self) -> Page:
        """The demo in a tab at once; its checkpoints are written on the tab's worker."""
        from ckpt_gui.core.demo_paths import default_demo_path, write_default_demo

        path = default_demo_path()
        for page in self.pages():
            if page.source() == path:
                self.tabs.setCurrentWidget(page)
                return page
        from ckpt_gui.qt.widgets.checkpoint_view import CheckpointView

        return self.add_page(CheckpointView(path, prepare=write_default_demo))

    # --- tabs -------------------------------------------------------------------------------
    def pages(self) -> list[Page]:
        """Every tab."""
        widgets = (self.tabs.widget(i) for i in range(self.tabs.count()))
        return [w for w in widgets if isinstance(w, Page)]

    def current_page(self) -> Page | None:
        widget = self.tabs.currentWidget()
        return widget if isinstance(widget, Page) else None

    def _current_source(self) -> Path | None:
        """The checkpoint of the current tab, when it shows one."""
        page = self.current_page()
        return None if page is None else page.source()

    def close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if widget is None:
            return
        if isinstance(widget, Page):
            widget.shutdown()  # abort its workers and wait: no thread outlives its tab
        self.tabs.removeTab(index)
        widget.deleteLater()
        self._retitle()
        if self.tabs.count() == 0:
            self.stack.setCurrentWidget(self.welcome)
        self._sync_status()

    def _retitle(self) -> None:
        """Tab titles and tooltips, with same-named files told apart by their folders."""
        pages = self.pages()
        names = short_names(path for page in pages for path in page.paths())
        for page in pages:
            page.set_names(names)
            index = self.tabs.indexOf(page)
            self.tabs.setTabText(index, page.title().replace("&", "&&"))
            self.tabs.setTabToolTip(index, plain_tooltip(page.tooltip()))

    def close_current(self) -> None:
        if self.tabs.count():
            self.close_tab(self.tabs.currentIndex())

    def reload_current(self) -> None:
        page = self.current_page()
        if page is not None:
            page.reload()

    def cancel_current(self) -> None:
        page = self.current_page()
        if page is not None:
            page.cancel()

    def is_idle(self) -> bool:
        return all(p.is_idle() for p in self.pages())

    # --- edit -------------------------------------------------------------------------------
    def copy_keys(self) -> None:
        """Edit > Copy: what has focus in the current tab (keys, selected text or cells)."""
        page = self.current_page()
        text = "" if page is None else page.copy_text()
        if text:
            QGuiApplication.clipboard().setText(text)
            lines = text.count("\n") + 1
            self.statusBar().showMessage(f"Copied {lines} line{'s' if lines > 1 else ''}", 3000)

    def scan_report(self) -> None:
        """View > Scan Report…: every global the current file's pickles name, with a verdict."""
        page = self.current_page()
        if page is None or page.show_scan_report() is None:
            what = "a checkpoint tab" if page is not None else "a checkpoint"
            self.statusBar().showMessage(f"Open {what} first, then ask for its scan report", 4000)

    def compute_all_stats(self) -> None:
        """View > Compute All Statistics: a remote tab computes only what is looked at."""
        page = self.current_page()
        compute = getattr(page, "compute_all_statistics", None)
        if compute is not None:
            compute()

    def focus_filter(self) -> None:
        page = self.current_page()
        if page is not None:
            page.focus_filter()

    def expand_all(self) -> None:
        page = self.current_page()
        if page is not None:
            page.expand_all()

    def collapse_all(self) -> None:
        page = self.current_page()
        if page is not None:
            page.collapse_all()

    # --- status bar -------------------------------------------------------------------------
    def _sync_status(self, sender: QWidget | None = None) -> None:
        view = self.current_page()
        if sender is not None and sender is not view:
            return
        if view is None:
            self.status_label.setText("")
            self.progress_bar.setVisible(False)
            self.cancel_button.setVisible(False)
            return
        text, done, total = view.progress_state()
        self.status_label.setText(text)
        self.progress_bar.setVisible(view.is_busy())
        self.cancel_button.setVisible(view.is_busy())
        set_progress(self.progress_bar, done, total)  # 0..0 shows a busy indicator

    # --- drag and drop ----------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if _dropped(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = _dropped(event.mimeData().urls())
        self.open_dropped(paths)
        if paths:
            event.acceptProposedAction()

    # --- closing ----------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Abort all work and wait for every worker thread."""
        for page in self.pages():
            page.shutdown()
        workers.abort_all()


def _dropped(urls: list[QUrl]) -> list[str]:
    """Dropped files and folders, and links to remote checkpoints (``https://``, ``s3://``…)."""
    out = []
    for url in urls:
        if url.isLocalFile() and url.toLocalFile():
            out.append(url.toLocalFile())
        elif is_remote(url.toString()):
            out.append(url.toString())
    return out
