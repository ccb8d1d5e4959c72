"""The compare view's bars: the paths with Swap and key matching, the summary lines, and the
row filters (category toggles with counts, a values toggle, and the browser's key filter)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.diff import (
    CHANGED,
    DTYPE,
    IDENTICAL,
    ONLY_A,
    ONLY_B,
    SHAPE,
    DiffReport,
    KeyMatch,
    parse_map,
)
from ckpt_gui.qt import theme
from ckpt_gui.qt.compare.categories import COLOURS, SHORT_TITLES
from ckpt_gui.qt.filter_keys import clear_on_escape
from ckpt_gui.qt.formatting import format_value
from ckpt_gui.qt.models.filter_proxy import MODES
from ckpt_gui.qt.plain_text import plain_tooltip
from ckpt_gui.qt.widgets.progress import set_progress
from ckpt_gui.qt.workers import PROGRESS_STEPS

TOGGLE_ORDER = (CHANGED, IDENTICAL, ONLY_A, ONLY_B, SHAPE, DTYPE)
TOGGLE_TIPS = {
    CHANGED: "Tensors whose values differ (bit for bit)",
    IDENTICAL: "Tensors with the same bytes in A and B",
    ONLY_A: "Keys in A that have no partner in B",
    ONLY_B: "Keys in B that have no partner in A",
    SHAPE: "Tensors whose shapes differ",
    DTYPE: "Tensors whose dtypes differ (compared in a common wider dtype)",
}


def _rgba(colour: str, alpha: int) -> str:
    c = QColor(colour)
    return f"rgba({c.red()}, {c.green()}, {c.blue()}, {alpha})"


class PathsBar(QWidget):
    """A and B by name (full paths in tooltips), Swap, progress, and how keys are matched.
    ``match_changed`` carries ``"auto"``, ``"exact"`` or a ``KeyMatch`` from the map box."""

    swap_clicked = Signal()
    match_changed = Signal(object)
    match_error = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label_a, self.label_b = QLabel(), QLabel()
        self._paths: tuple[Path, Path, str, str] | None = None
        theme.follow_theme(self, self._restyle_paths)
        for label in (self.label_a, self.label_b):
            label.setTextFormat(Qt.TextFormat.RichText)
        self.swap_button = QToolButton()
        self.swap_button.setText("⇄ Swap")
        self.swap_button.setToolTip("Compare B against A")
        self.swap_button.setAutoRaise(True)
        self.swap_button.clicked.connect(self.swap_clicked)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setMaximumWidth(200)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setVisible(False)
        self.match_box = QComboBox()
        self.match_box.addItems(["Keys: auto", "Keys: exact"])
        self.match_box.setToolTip(
            "auto strips wrapper prefixes (module., _orig_mod., model., model_state_dict., "
            "state_dict.) when that lines the keys up; exact compares keys as they are"
        )
        self.map_edit = QLineEdit()
        self.map_edit.setPlaceholderText("or map A_PREFIX=B_PREFIX")
        self.map_edit.setToolTip(
            "Compare A keys starting with A_PREFIX with B keys starting with B_PREFIX"
        )
        self.map_edit.setClearButtonEnabled(True)
        self.map_edit.setFixedWidth(240)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        for widget in (self.label_a, self.swap_button, self.label_b):
            layout.addWidget(widget)
        layout.addStretch(1)
        for control in (self.progress_bar, self.match_box, self.map_edit):
            layout.addWidget(control)
        self.match_box.currentIndexChanged.connect(self._emit_match)
        self.map_edit.editingFinished.connect(self._emit_match)

    def _restyle_paths(self) -> None:
        if self._paths is not None:
            self.set_paths(*self._paths)

    def set_paths(self, a: Path, b: Path, name_a: str = "", name_b: str = "") -> None:
        """Show A and B, called ``name_a`` and ``name_b`` (their file names by default)."""
        self._paths = (a, b, name_a, name_b)
        for label, name, path, shown, colour in (
            (self.label_a, "A", a, name_a or a.name, theme.colour("a")),
            (self.label_b, "B", b, name_b or b.name, theme.colour("b")),
        ):
            label.setText(f"<b style='color:{colour}'>{name}</b>&nbsp; {escape(shown)}")
            label.setToolTip(plain_tooltip(str(path)))

    def set_progress(self, done: int | None) -> None:
        """``None`` hides the bar."""
        self.progress_bar.setVisible(done is not None)
        if done is not None:
            set_progress(self.progress_bar, done)

    def match(self) -> str | KeyMatch:
        text = self.map_edit.text().strip()
        if text:
            return parse_map(text)
        return ("auto", "exact")[self.match_box.currentIndex()]

    def _emit_match(self) -> None:
        try:
            match = self.match()
        except ValueError as exc:
            self.match_error.emit(str(exc))
            return
        self.match_changed.emit(match)


class FilterBar(QWidget):
    """Category toggles showing counts, the values toggle, and the key filter box."""

    categories_changed = Signal(set)
    values_toggled = Signal(bool)
    filter_changed = Signal(str, str)  # pattern, mode

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.buttons: dict[str, QToolButton] = {}
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        for category in TOGGLE_ORDER:
            button = _toggle(TOGGLE_TIPS[category])
            button.toggled.connect(self._emit_categories)
            self.buttons[category] = button
            row.addWidget(button)
        self.values_button = _toggle("Show plain values (epoch, loss, ...) as rows")
        self.values_button.setChecked(False)
        self.values_button.toggled.connect(self.values_toggled)
        row.addWidget(self.values_button)
        self.restyle()
        theme.follow_theme(self, self.restyle)
        row.addSpacing(12)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter keys (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.mode_box = QComboBox()
        self.mode_box.addItems([m.capitalize() for m in MODES])
        self.mode_box.setToolTip("Substring, glob (layers.*.weight) or regular expression")
        row.addWidget(self.filter_edit, 1)
        row.addWidget(self.mode_box)
        self.error = QLabel()
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        theme.style_text(self.error, "red")
        self.error.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.error)
        self.filter_edit.textChanged.connect(self._emit_filter)
        clear_on_escape(self, self.filter_edit)
        self.mode_box.currentIndexChanged.connect(self._emit_filter)
        self.set_counts({}, 0)

    def categories(self) -> set[str]:
        return {c for c, b in self.buttons.items() if b.isChecked()}

    def set_counts(self, counts: dict[str, int], values: int) -> None:
        for category, button in self.buttons.items():
            button.setText(f"{SHORT_TITLES[category]}  {counts.get(category, 0)}")
        self.values_button.setText(f"Values  {values}")

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _emit_categories(self) -> None:
        self.categories_changed.emit(self.categories())

    def restyle(self) -> None:
        """The toggles in the theme's colours for their categories."""
        for category, button in self.buttons.items():
            _style_toggle(button, theme.colour(COLOURS[category]))
        _style_toggle(self.values_button, theme.colour("grey"))

    def _emit_filter(self) -> None:
        self.filter_changed.emit(self.filter_edit.text(), MODES[self.mode_box.currentIndex()])


def _toggle(tip: str) -> QToolButton:
    button = QToolButton()
    button.setCheckable(True)
    button.setChecked(True)
    button.setToolTip(tip + " (click to show or hide)")
    return button


def _style_toggle(button: QToolButton, colour: str) -> None:
    """Grey and plain when off; in the category's colour, bold, when on. The plain parts take
    the palette's colours, so the toggle reads in a light and a dark theme alike."""
    button.setStyleSheet(
        f"QToolButton {{ color: {theme.colour('secondary')}; padding: 3px 10px;"
        f" border: 1px solid palette(mid); border-radius: 3px; background: palette(button); }}"
        f" QToolButton:checked {{ color: {colour}; font-weight: bold;"
        f" background: {_rgba(colour, 28)}; border-color: {_rgba(colour, 160)}; }}"
    )


def match_text(match: KeyMatch) -> str:
    """How keys were matched, for the line under the summary."""
    if match.strip_a or match.strip_b:
        return f"Keys matched with {match.describe()}"
    return f"Keys compared as they are ({match.mode}, {match.matched} paired)"


class SummaryLines(QWidget):
    """The summary in one bold line (counts and the largest change), and under it how keys were
    matched and which plain values changed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._headline = QLabel("Opening…")
        self._headline.setStyleSheet("font-weight: bold; font-size: 11pt;")
        self._headline.setWordWrap(True)
        self._headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._details = QLabel()
        for label in (self._headline, self._details):  # keys and values from the files
            label.setTextFormat(Qt.TextFormat.PlainText)
        theme.style_secondary(self._details)
        self._details.setWordWrap(True)
        self._details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self._headline)
        layout.addWidget(self._details)

    def headline(self) -> str:
        return self._headline.text()

    def details(self) -> str:
        return self._details.text()

    def set_headline(self, text: str) -> None:
        self._headline.setText(text)

    def set_details(self, text: str) -> None:
        self._details.setText(text)

    def set_report(self, report: DiffReport, summary: str | None = None) -> None:
        """The finished comparison's lines (``summary``: ``report.summary()``, when already
        worked out)."""
        headline = report.summary() if summary is None else summary
        if report.failed:
            headline += f"; {len(report.failed)} tensors could not be read"
        self._headline.setText(headline)
        parts = [match_text(report.match)]
        values = report.of(CHANGED, "value")
        if values:
            shown = [
                f"{e.key} {format_value(e.value_a, 24)} → {format_value(e.value_b, 24)}"
                for e in values[:4]
            ]
            more = f" and {len(values) - 4} more" if len(values) > 4 else ""
            parts.append("values changed: " + ", ".join(shown) + more)
        self._details.setText(" · ".join(parts))
