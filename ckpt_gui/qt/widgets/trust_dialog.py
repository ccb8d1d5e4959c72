"""``TrustDialog``: the one place in the window that can lead to a real, code-running load.

It names every global the file would import, unsafe ones first, says plainly what a real load
does, and makes Cancel the default: Enter or Escape leave the file in the structural view. Only a
click on "Load and run its code" accepts.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.qt import theme
from ckpt_gui.qt.widgets.safety_banner import qualname

LOAD_TEXT = "Load and run its code"
WARNING = (
    "Loading it for real unpickles it with <tt>torch.load(weights_only=False)</tt>. That imports "
    "every module below and calls what the file says, with your permissions: a file from an "
    "untrusted source can read, change or delete your files, or install anything it likes. "
    "Nothing has run so far.<br><br>"
    "<b>Only continue if you trust where this file came from.</b>"
)
_BACKGROUNDS = {"unsafe": QColor(198, 40, 40, 40), "unknown": QColor(224, 165, 38, 45)}
_TEXT = {"unsafe": "red", "unknown": "amber"}  # theme colours: AA on light and dark bases


def ordered_globals(report: Any) -> list[tuple[str, str]]:
    """(``module.name``, verdict) for every global the file names, once each: unsafe, unknown,
    then the ones torch allows."""
    seen: dict[str, str] = {}
    for ref in getattr(report, "globals", None) or []:
        seen.setdefault(qualname(ref), ref.verdict)
    rank = {"unsafe": 0, "unknown": 1, "safe": 2}
    return sorted(seen.items(), key=lambda kv: rank.get(kv[1], 1))


class TrustDialog(QDialog):
    """Asks before a real load; ``accepted`` only from the destructive button."""

    def __init__(self, path: str | Path, report: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        path = Path(path)
        self.setWindowTitle("Run code from this file?")
        self.setMinimumWidth(560)
        icon = QLabel()
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_MessageBoxIconSize)
        warning = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        icon.setPixmap(warning.pixmap(QSize(size, size)))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        title = QLabel(f"Load <b>{escape(path.name or str(path))}</b> with code execution?")
        title.setTextFormat(Qt.TextFormat.RichText)
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.25)
        title.setFont(font)
        self.message = QLabel(WARNING)
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        entries = ordered_globals(report)
        flagged = sum(1 for _, verdict in entries if verdict != "safe")
        intro = QLabel(
            f"The file names {len(entries)} global{'s' * (len(entries) != 1)}; torch's safe "
            f"loader does not allow {flagged} of them:"
        )
        unsafe = [name for name, verdict in entries if verdict == "unsafe"]
        self.attack_label = QLabel(
            f"<b>{escape(_listed(unsafe))}</b> can run commands or any code. A checkpoint "
            "almost never needs that: treat this file as an attack."
        )
        self.attack_label.setTextFormat(Qt.TextFormat.RichText)
        self.attack_label.setWordWrap(True)
        theme.style_text(self.attack_label, "red")  # on the dialog's own background
        self.attack_label.setVisible(bool(unsafe))
        self.globals_list = QListWidget()
        self.globals_list.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.globals_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bold = QFont(self.globals_list.font())
        bold.setBold(True)
        for name, verdict in entries:
            item = QListWidgetItem(f"{name}    ({verdict})")
            item.setData(Qt.ItemDataRole.UserRole, name)
            if verdict in _BACKGROUNDS:
                item.setBackground(QBrush(_BACKGROUNDS[verdict]))
                item.setForeground(QBrush(QColor(theme.colour(_TEXT[verdict]))))
                item.setFont(bold)
            else:
                item.setForeground(QBrush(QColor(theme.colour("grey"))))
            self.globals_list.addItem(item)
        rows = min(max(len(entries), 3), 10)
        self.globals_list.setFixedHeight(rows * self.globals_list.sizeHintForRow(0) + 8)

        buttons = QDialogButtonBox()
        self.cancel_button = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.load_button = QPushButton(LOAD_TEXT)
        theme.style_text(self.load_button, "red", "font-weight: bold;")
        buttons.addButton(self.load_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        self.load_button.setAutoDefault(False)
        self.cancel_button.setAutoDefault(True)
        self.cancel_button.setDefault(True)
        self.cancel_button.clicked.connect(self.reject)
        self.load_button.clicked.connect(self.accept)

        text = QVBoxLayout()
        text.setSpacing(8)
        text.addWidget(title)
        text.addWidget(self.message)
        text.addWidget(self.attack_label)
        text.addWidget(intro)
        text.addWidget(self.globals_list)
        top = QHBoxLayout()
        top.setSpacing(16)
        top.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        top.addLayout(text, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 18, 18, 12)
        layout.addLayout(top)
        layout.addSpacing(6)
        layout.addWidget(buttons)
        self.cancel_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def warning_text(self) -> str:
        """What the dialog says, as plain text (for tests and screen readers alike)."""
        parts = [self.message.text()]
        if not self.attack_label.isHidden():
            parts.append(self.attack_label.text())
        return "\n".join(parts)

    def global_names(self) -> list[str]:
        """The globals the dialog names, in the order shown."""
        return [
            self.globals_list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.globals_list.count())
        ]


def _listed(names: list[str], limit: int = 3) -> str:
    """``a, b and c`` (``a, b, c and 2 more`` past ``limit``)."""
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)
