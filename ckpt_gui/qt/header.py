"""Columns that read in full: widths fitted to their content, per-column eliding, a header menu
that chooses the columns, and header and splitter state kept in ``QSettings``.

Numbers, shapes and dtypes are facts that an ellipsis in the middle destroys (``[819…192]``),
so those columns never elide: they are fitted to their widest text instead. Only the columns
named in ``elide`` (keys, free text) may elide, at the end chosen, with the full text in the
tooltip.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping

from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSettings,
    Qt,
)
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QMenu,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QTreeView,
    QWidget,
)

# Room beside the text: the delegate's margins (3 px a side in Qt's styles) and a little air.
CELL_PADDING = 8
# Only the longest few texts of a column (by characters) are measured: measuring is the
# expensive part, and the widest text is nearly always among the longest.
MEASURED = 12


def settings() -> QSettings:
    return QSettings("ckpt-gui", "ckpt-gui")


class ElidingDelegate(QStyledItemDelegate):
    """Paints with ``mode`` as the text elide mode, whatever the view's (the view's own is
    ``ElideNone``, for the columns that must never elide)."""

    def __init__(self, mode: Qt.TextElideMode, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = mode

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        option = QStyleOptionViewItem(option)
        option.textElideMode = self.mode
        super().paint(painter, option, index)


def set_elide_modes(view: QAbstractItemView, elide: Mapping[int, Qt.TextElideMode]) -> None:
    """No column of ``view`` elides except those in ``elide``, at the end given."""
    view.setTextElideMode(Qt.TextElideMode.ElideNone)
    for column, mode in elide.items():
        view.setItemDelegateForColumn(column, ElidingDelegate(mode, view))


def text_width(view: QAbstractItemView, texts: Iterable[str], extra: int = 0) -> int:
    """The width a column needs to show the widest of ``texts`` in full."""
    longest = heapq.nlargest(MEASURED, (t for t in texts if t), key=len)
    metrics = view.fontMetrics()
    widest = max((metrics.horizontalAdvance(t) for t in longest), default=0)
    return widest + CELL_PADDING + extra


def header_width(view: QAbstractItemView, column: int) -> int:
    """The width the header needs for the column's title and its sort arrow, as the style
    measures them."""
    return _header(view).sectionSizeFromContents(column).width()


def room(view: QAbstractItemView) -> int:
    """The width the columns can share without a horizontal scroll bar, counting the vertical
    scroll bar even before it shows (rows still arriving)."""
    scroll = view.verticalScrollBar()
    bar = 0 if scroll.isVisible() else scroll.sizeHint().width()
    return view.viewport().width() - bar


class ColumnHeader(QObject):
    """What the views share about their header: fitting widths to content (leaving alone the
    columns the user sized by hand), the context menu that shows and hides columns, and the
    header's state in ``QSettings`` under ``name``."""

    def __init__(
        self,
        view: QAbstractItemView,
        name: str,
        titles: list[str],
        *,
        hidden_by_default: Iterable[int] = (),
        required: Iterable[int] = (0,),
        refit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(view)
        self.view = view
        self.header = _header(view)
        self.name = name
        self.titles = titles
        self.required = set(required)
        self.refit = refit  # fits the columns to the content again ("Fit Columns to Content")
        self._fitting = False
        self._restored = False
        self.user_sized: set[int] = set()
        self.header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.header.customContextMenuRequested.connect(self._show_menu)
        self.header.sectionResized.connect(self._on_resized)
        # Only a drag on the header (or a double click on a handle) is the user sizing a
        # column; the view stretching or restoring sections is not.
        self._pressed = False
        self.header.viewport().installEventFilter(self)
        self.header.sectionMoved.connect(lambda *_: self.save())
        self.header.sortIndicatorChanged.connect(lambda *_: self.save())
        self._hidden_by_default = set(hidden_by_default)

    # --- state ------------------------------------------------------------------------------
    def restore(self) -> None:
        """Apply the saved state (once the view has its columns), or the defaults."""
        if self._restored:
            return
        self._restored = True
        store = settings()
        state = store.value(f"{self.name}/header")
        sized = store.value(f"{self.name}/user_sized", [])
        self._fitting = True
        try:
            if isinstance(state, QByteArray) and self.header.restoreState(state):
                listed = [sized] if isinstance(sized, str) else sized
                if isinstance(listed, (list, tuple)):
                    self.user_sized = {int(s) for s in listed if str(s).isdigit()}
            else:
                for column in self._hidden_by_default:
                    self.header.setSectionHidden(column, True)
        finally:
            self._fitting = False

    def save(self) -> None:
        if not self._restored or self._fitting:
            return
        store = settings()
        store.setValue(f"{self.name}/header", self.header.saveState())
        store.setValue(f"{self.name}/user_sized", [str(c) for c in sorted(self.user_sized)])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick):
            self._pressed = True
        elif kind == QEvent.Type.MouseButtonRelease:
            self._pressed = False
        return False

    def _on_resized(self, column: int, _old: int, _new: int) -> None:
        if self._fitting or not self._restored or not self._pressed:
            return
        self.user_sized.add(column)
        self.save()

    # --- widths -----------------------------------------------------------------------------
    def title_width(self, column: int) -> int:
        return header_width(self.view, column)

    def fit(self, widths: Mapping[int, int]) -> None:
        """Set each column's width (never below its title's), except where the user chose."""
        self._fitting = True
        try:
            for column, width in widths.items():
                if column in self.user_sized:
                    continue
                self.header.resizeSection(column, max(width, self.title_width(column)))
        finally:
            self._fitting = False

    # --- columns ----------------------------------------------------------------------------
    def set_visible(self, column: int, visible: bool) -> None:
        self.header.setSectionHidden(column, not visible)
        self.save()

    def visible_columns(self) -> list[int]:
        return [c for c in range(len(self.titles)) if not self.header.isSectionHidden(c)]

    def menu(self) -> QMenu:
        """The header's context menu: a check box per column, and the widths reset."""
        menu = QMenu(self.header)
        for column, title in enumerate(self.titles):
            action = menu.addAction(title)
            action.setCheckable(True)
            action.setChecked(not self.header.isSectionHidden(column))
            action.setEnabled(column not in self.required)
            action.toggled.connect(lambda on, c=column: self.set_visible(c, on))
        menu.addSeparator()
        menu.addAction("Fit Columns to Content").triggered.connect(self.forget_widths)
        return menu

    def forget_widths(self) -> None:
        """Columns sized by hand go back to fitting their content."""
        self.user_sized.clear()
        self.save()
        if self.refit is not None:
            self.refit()

    def _show_menu(self, pos: QPoint) -> None:
        self.menu().exec(self.header.mapToGlobal(pos))


def restore_splitter(splitter: QSplitter, name: str) -> bool:
    """Apply the splitter's saved sizes; False when none were saved. From then on, moving the
    handle saves them."""
    state = settings().value(f"{name}/splitter")
    restored = isinstance(state, QByteArray) and splitter.restoreState(state)
    splitter.splitterMoved.connect(
        lambda *_: settings().setValue(f"{name}/splitter", splitter.saveState())
    )
    return bool(restored)


def _header(view: QAbstractItemView) -> QHeaderView:
    if isinstance(view, QTableView):
        return view.horizontalHeader()
    assert isinstance(view, QTreeView)
    return view.header()
