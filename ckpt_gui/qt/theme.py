"""Light and dark: the window's palette, and the colours the app draws with.

The theme follows the system's colour scheme (Qt >= 6.5 ``QStyleHints.colorScheme``, live) unless
View > Theme chooses Light or Dark. Every colour the app paints with (marks, categories, plot
lines, secondary text) comes from ``colour(name)``, which has a light and a dark value, each
chosen to keep WCAG AA contrast against the theme's base and window colours: 4.5:1 for text,
3:1 for marks. Widgets that paint with these colours listen to ``notifier().changed``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QSettings, Qt, Signal, Slot
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

MODES = ("system", "light", "dark")
SETTING = "view/theme"

# name: (light, dark). Text colours need 4.5:1 against base and window, marks 3:1.
COLOURS: dict[str, tuple[str, str]] = {
    # text
    "secondary": ("#616161", "#a8a8a8"),  # notes, legends, placeholders, units
    "red": ("#c62828", "#ff6e6e"),  # NaN/Inf, only in A, errors
    "green": ("#1b5e20", "#6fcf73"),  # only in B, safe
    "orange": ("#bf360c", "#ff8a65"),  # shape mismatch, sampled
    "amber": ("#8a5300", "#ffb74d"),  # dtype mismatch, stand-ins, unknown
    "blue": ("#1565c0", "#64b5f6"),  # changed, tied storage
    "purple": ("#7b1fa2", "#d69be0"),  # saved on a GPU
    "grey": ("#6b6b6b", "#9e9e9e"),  # all zeros, identical, optimizer state's parameter
    # marks (plots, bars, dots)
    "a": ("#17649e", "#5aa9e6"),  # checkpoint A
    "b": ("#b34400", "#ffa040"),  # checkpoint B
    "diff": ("#6a1b9a", "#c39be0"),  # A - B
    "bar": ("#1565c0", "#64b5f6"),  # a layer that changed
    "bar_identical": ("#6c8290", "#78909c"),  # a layer that did not
    "line": ("#1f77b4", "#5aa9e6"),  # the values plot
}
TEXT_COLOURS = ("secondary", "red", "green", "orange", "amber", "blue", "purple", "grey", "a", "b")
MARK_COLOURS = ("a", "b", "diff", "bar", "bar_identical", "line")
# Histograms of several tensors: one colour each, marks against the plot's base.
SERIES: tuple[tuple[str, str], ...] = (
    ("#1f77b4", "#5aa9e6"),
    ("#d35400", "#ffa040"),
    ("#2ca02c", "#6fcf73"),
    ("#d62728", "#ff6e6e"),
    ("#9467bd", "#c39be0"),
    ("#8c564b", "#c49c94"),
    ("#c2185b", "#f48fb1"),
    ("#00838f", "#4dd0e1"),
)


class ThemeNotifier(QObject):
    changed = Signal(bool)  # dark


_notifier: ThemeNotifier | None = None
_mode = "system"
_following = False


def notifier() -> ThemeNotifier:
    global _notifier
    if _notifier is None:
        _notifier = ThemeNotifier()
    return _notifier


class _ThemeFollower(QObject):
    """Calls ``restyle`` when the theme changes, for as long as its owner lives (a child of the
    owner: Qt disconnects it when the owner goes)."""

    def __init__(self, owner: QObject, restyle: Callable[[], None]) -> None:
        super().__init__(owner)
        self._restyle = restyle
        notifier().changed.connect(self.on_changed)

    @Slot(bool)
    def on_changed(self, _dark: bool) -> None:
        self._restyle()


def follow_theme(owner: QObject, restyle: Callable[[], None]) -> None:
    """Call ``restyle`` on every change of theme while ``owner`` lives."""
    _ThemeFollower(owner, restyle)


def style_text(widget: QWidget, name: str, extra: str = "") -> None:
    """Colour ``widget``'s text with the theme colour ``name`` (and follow theme changes);
    ``extra``: more style sheet declarations, such as a font size."""

    def restyle() -> None:
        widget.setStyleSheet(f"color: {colour(name)}; {extra}".strip())

    restyle()
    follow_theme(widget, restyle)


def style_secondary(widget: QWidget, extra: str = "") -> None:
    """Secondary text (notes, hints, placeholders) in the theme's secondary colour."""
    style_text(widget, "secondary", extra)


def is_dark() -> bool:
    """The palette in use is dark (decided on the palette, whoever set it)."""
    palette = QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def colour(name: str) -> str:
    """The colour ``name`` (see ``COLOURS``) for the theme in use, as ``#rrggbb``."""
    light, dark = COLOURS[name]
    return dark if is_dark() else light


def series_colour(i: int) -> str:
    light, dark = SERIES[i % len(SERIES)]
    return dark if is_dark() else light


def mode() -> str:
    return _mode


def saved_mode() -> str:
    value = QSettings("ckpt-gui", "ckpt-gui").value(SETTING, "system")
    return value if value in MODES else "system"


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)  # Qt >= 6.5
    return scheme is not None and scheme() == Qt.ColorScheme.Dark


def apply(new_mode: str, *, save: bool = True, system_dark: bool | None = None) -> bool:
    """Use ``new_mode`` (system, light or dark); returns whether the window is now dark.
    ``system_dark``: the system's scheme as a change just announced it (else asked for)."""
    global _mode
    if new_mode not in MODES:
        raise ValueError(f"unknown theme {new_mode!r}")
    _mode = new_mode
    if save:
        QSettings("ckpt-gui", "ckpt-gui").setValue(SETTING, new_mode)
    if new_mode == "system":
        dark = system_is_dark() if system_dark is None else system_dark
    else:
        dark = new_mode == "dark"
    app = QApplication.instance()
    if isinstance(app, QApplication):
        app.setPalette(dark_palette() if dark else light_palette())
    notifier().changed.emit(dark)
    return dark


def follow_system() -> None:
    """Apply the saved mode, and from then on follow the system's colour scheme when the mode
    is "system" (a live change: the desktop switching to dark at sunset)."""
    hints = QGuiApplication.styleHints()
    signal = getattr(hints, "colorSchemeChanged", None)
    global _following
    if signal is not None and not _following:
        signal.connect(on_system_scheme)
        _following = True  # once, however often it is called (tests make many windows)
    apply(saved_mode(), save=False)


def on_system_scheme(scheme: Qt.ColorScheme) -> None:
    """The system switched between light and dark: follow it unless the user chose."""
    if _mode == "system":
        apply("system", save=False, system_dark=scheme == Qt.ColorScheme.Dark)


def light_palette() -> QPalette:
    app = QApplication.instance()
    style = app.style() if isinstance(app, QApplication) else None
    return style.standardPalette() if style is not None else QPalette()


def dark_palette() -> QPalette:
    roles = QPalette.ColorRole
    palette = QPalette()
    for role, value in (
        (roles.Window, "#2b2b2b"),
        (roles.WindowText, "#e8e8e8"),
        (roles.Base, "#1e1e1e"),
        (roles.AlternateBase, "#262626"),
        (roles.ToolTipBase, "#3a3a3a"),
        (roles.ToolTipText, "#e8e8e8"),
        (roles.PlaceholderText, "#a8a8a8"),
        (roles.Text, "#e8e8e8"),
        (roles.Button, "#353535"),
        (roles.ButtonText, "#e8e8e8"),
        (roles.BrightText, "#ff6e6e"),
        (roles.Light, "#4a4a4a"),
        (roles.Midlight, "#3e3e3e"),
        (roles.Mid, "#5a5a5a"),
        (roles.Dark, "#1a1a1a"),
        (roles.Shadow, "#0d0d0d"),
        (roles.Highlight, "#2f6fb3"),
        (roles.HighlightedText, "#ffffff"),
        (roles.Link, "#64b5f6"),
        (roles.LinkVisited, "#ce93d8"),
    ):
        palette.setColor(role, QColor(value))
    disabled = QPalette.ColorGroup.Disabled
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        palette.setColor(disabled, role, QColor("#7a7a7a"))
    return palette


def contrast(one: str | QColor, two: str | QColor) -> float:
    """The WCAG 2 contrast ratio of two colours (1 to 21)."""

    def luminance(c: QColor) -> float:
        def channel(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return (
            0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())
        )

    a, b = luminance(QColor(one)), luminance(QColor(two))
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)
