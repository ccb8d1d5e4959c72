"""``SummaryBar``: the file, its format, size on disk, and totals by role and dtype."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.formats.folders import format_label
from ckpt_gui.qt import theme
from ckpt_gui.qt.formatting import format_bytes, format_count, role_title
from ckpt_gui.qt.plain_text import plain_tooltip

ROLE_ORDER = ("parameter", "optimizer_state", "buffer", "other")


def role_totals_text(ckpt: Checkpoint) -> str:
    """``Model 1.2 M params (4.8 MB) · Optimizer state 2.4 M (9.6 MB) · Buffers 17 (68 B)``."""
    by_role = ckpt.totals_by("role")
    parts = []
    for role in sorted(by_role, key=lambda r: ROLE_ORDER.index(r) if r in ROLE_ORDER else 99):
        t = by_role[role]
        unit = " params" if role == "parameter" else ""
        parts.append(f"{role_title(role)} {format_count(t.numel)}{unit} ({format_bytes(t.nbytes)})")
    return " · ".join(parts) if parts else "no tensors"


def dtype_totals_text(ckpt: Checkpoint) -> str:
    by_dtype = ckpt.totals_by("dtype")
    ordered = sorted(by_dtype.items(), key=lambda kv: -kv[1].nbytes)
    return " · ".join(
        f"{dtype} {format_count(t.numel)} ({format_bytes(t.nbytes)})" for dtype, t in ordered
    )


class SummaryBar(QFrame):
    """Two lines above the tree; the text is selectable so it can be pasted into a bug report."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("summaryBar")
        self.setStyleSheet(
            "#summaryBar { background: palette(alternate-base);"
            " border-bottom: 1px solid palette(mid); }"
        )
        self._file = QLabel()
        self._totals = QLabel()
        self._totals.setWordWrap(True)
        for label in (self._file, self._totals):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(2)
        layout.addWidget(self._file)
        layout.addWidget(self._totals)

    def set_checkpoint(self, ckpt: Checkpoint) -> None:
        total = ckpt.totals()
        file_bits = [
            f"<b>{escape(ckpt.path.name or str(ckpt.path))}</b>",
            escape(format_label(ckpt)),
            escape(ckpt.kind),
            f"{format_bytes(ckpt.size_on_disk)} on disk",
            f"{total.tensors} tensors, {format_count(total.numel)} elements "
            f"({format_bytes(total.nbytes)})",
        ]
        self._file.setText(" &nbsp;·&nbsp; ".join(file_bits))
        self._file.setToolTip(plain_tooltip(str(ckpt.path)))
        totals = escape(role_totals_text(ckpt))
        dtypes = escape(dtype_totals_text(ckpt))
        text = (
            totals
            if not dtypes
            else f"{totals} &nbsp;&nbsp;<span style='color:{theme.colour('secondary')}'>|</span>"
            f"&nbsp;&nbsp; {dtypes}"
        )
        # How the file was read (``ckpt.view_note``) is the safety banner's to say.
        if ckpt.notes:
            notes = escape("; ".join(ckpt.notes))
            text += f"<br><span style='color:{theme.colour('secondary')}'>{notes}</span>"
        self._totals.setText(text)

    def file_text(self) -> str:
        return self._file.text()

    def totals_text(self) -> str:
        return self._totals.text()
