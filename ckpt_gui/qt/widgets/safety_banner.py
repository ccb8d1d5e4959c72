"""``SafetyBanner``: one line above the tree that says how a pickle-based file was read, when that
matters. Amber for the structural view (nothing from the file ran), red for a trusted load (code
from the file was allowed to run). Hidden for files torch's safe loader read on its own. Its
colours come from the theme (light or dark, following a change live), with AA contrast.
"""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QTextDocument
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.qt import theme

VERDICTS = {"unsafe": "red", "unknown": "amber", "safe": "green"}  # theme colour names
SHOWN_NAMES = 3  # globals named in the banner itself; the scan report lists them all
ACCENTS = {"structural": "amber", "trusted": "red"}  # the banner's border and icon
# How much of the accent tints the base behind the banner: light enough (or dark enough, in
# the dark theme) that text and verdict colours keep 4.5:1 on it.
TINT = 0.12


def verdict_colour(verdict: str) -> str:
    """A scan verdict's colour in the theme in use (the palette's text for any other)."""
    name = VERDICTS.get(verdict)
    if name is None:
        return QGuiApplication.palette().color(QPalette.ColorRole.Text).name()
    return theme.colour(name)


def banner_colours(view: str) -> tuple[str, str, str]:
    """Background, border and text of the banner for ``view`` in the theme in use: the base
    colour tinted with the view's accent, the accent, and the palette's text colour."""
    palette = QGuiApplication.palette()
    base = palette.color(QPalette.ColorRole.Base)
    accent = QColor(theme.colour(ACCENTS.get(view, "amber")))
    background = QColor(
        *(
            round((1 - TINT) * b + TINT * a)
            for b, a in (
                (base.red(), accent.red()),
                (base.green(), accent.green()),
                (base.blue(), accent.blue()),
            )
        )
    ).name()
    return background, accent.name(), palette.color(QPalette.ColorRole.Text).name()


def qualname(ref: Any) -> str:
    """``module.name`` of a scan report's ``GlobalRef``."""
    return f"{ref.module}.{ref.name}"


def flagged_globals(report: Any) -> list[Any]:
    """The globals torch's safe loader does not allow, one per name: unsafe ones first."""
    seen: dict[str, Any] = {}
    for ref in getattr(report, "globals", None) or []:
        if ref.verdict != "safe":
            seen.setdefault(qualname(ref), ref)
    return sorted(seen.values(), key=lambda r: r.verdict != "unsafe")


def names_html(refs: list[Any], limit: int = SHOWN_NAMES) -> str:
    """``posix.system, gone.Net and 2 more``, each name in its verdict's colour."""
    shown = [
        f"<b style='color:{verdict_colour(r.verdict)}'>{escape(qualname(r))}</b>"
        for r in refs[:limit]
    ]
    more = len(refs) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def banner_html(ckpt: Checkpoint) -> str:
    """The banner's line for ``ckpt``, or ``""`` when it needs none: files whose reader left a
    ``view_note`` (how the file was read) get one, in richer words where the view is known."""
    if not ckpt.view_note:
        return ""
    refs = flagged_globals(ckpt.scan)
    count = f"{len(refs)} global{'s' * (len(refs) != 1)}"
    names = f" It names {count} torch does not allow: {names_html(refs)}." if refs else ""
    if ckpt.view == "structural":
        if ckpt.format == "torchscript":
            what = "a TorchScript archive, read without compiling or running any of its code."
        else:
            what = (
                "torch's safe loader refused this file; it was read without running any code "
                "from it."
            )
        return f"<b>Structural view:</b> {what}{names}"
    if ckpt.view == "trusted":
        return (
            "<b>Trusted load:</b> code from this file was allowed to run, as you asked. "
            f"Values show the real objects it built.{names}"
        )
    return escape(ckpt.view_note[:1].upper() + ckpt.view_note[1:])


class SafetyBanner(QFrame):
    """The banner; ``scan_requested`` and ``trust_requested`` come from its buttons."""

    scan_requested = Signal()
    trust_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("safetyBanner")
        self.view = ""
        self._icon = QLabel("⚠")
        self._label = QLabel()
        self._label.setTextFormat(Qt.TextFormat.RichText)
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.scan_button = QPushButton("Scan report…")
        self.scan_button.setToolTip("Every global the file's pickles name, with a verdict")
        self.scan_button.clicked.connect(self.scan_requested)
        self.trust_button = QPushButton("Load with code execution…")
        self.trust_button.setToolTip(
            "Load the file for real with torch.load(weights_only=False); asks first"
        )
        self.trust_button.clicked.connect(self.trust_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 5, 8, 5)
        layout.setSpacing(8)
        layout.addWidget(self._icon, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self._label, 1)
        layout.addWidget(self.scan_button, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.trust_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.setVisible(False)
        self._shown: tuple[Checkpoint | None, str] = (None, "")
        theme.follow_theme(self, lambda: self.set_checkpoint(*self._shown))

    def set_checkpoint(self, ckpt: Checkpoint | None, trust_failure: str = "") -> None:
        """Show the banner ``ckpt`` needs, or hide it. ``trust_failure``: why a real load the
        user asked for failed (the tab shows the structural view instead)."""
        self._shown = (ckpt, trust_failure)
        html = banner_html(ckpt) if ckpt is not None else ""
        if html and trust_failure:
            html += f"<br><b>Loading it with code execution failed:</b> {escape(trust_failure)}"
        self.view = ckpt.view if ckpt is not None and html else ""
        self.setVisible(bool(html))
        if not html:
            return
        assert ckpt is not None
        background, border, text = self.colours()
        self.setStyleSheet(
            f"#safetyBanner {{ background: {background}; border-bottom: 1px solid {border}; }}"
            f" #safetyBanner QLabel {{ color: {text}; background: transparent; }}"
        )
        self._icon.setStyleSheet(f"color: {border}; font-size: 16pt; background: transparent;")
        self._label.setText(html)
        # TorchScript is never handed to torch.load, trusted or not: it would compile its code.
        self.trust_button.setVisible(self.view == "structural" and ckpt.format != "torchscript")

    def colours(self) -> tuple[str, str, str]:
        """Background, border and text colours the banner paints with now."""
        return banner_colours(self.view)

    def text(self) -> str:
        """The banner's line as plain text (what a user reads)."""
        doc = QTextDocument()
        doc.setHtml(self._label.text())
        return doc.toPlainText()
