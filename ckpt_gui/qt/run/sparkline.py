"""A delegate that draws a row's values across the run as a small line: gaps where a value is
undefined, a red dot where it is NaN or infinite."""

from __future__ import annotations

import math

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from ckpt_gui.qt import theme

SERIES_ROLE = Qt.ItemDataRole.UserRole + 1  # a list of float | None, one per checkpoint
WIDTH, HEIGHT = 110, 22


class SparklineDelegate(QStyledItemDelegate):
    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        values = index.data(SERIES_ROLE)
        if not isinstance(values, list):
            super().paint(painter, option, index)
            return
        style = option.widget.style() if option.widget is not None else None
        if style is not None:  # selection and focus backgrounds, as other cells
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter)
        rect = option.rect.adjusted(4, 4, -4, -4)  # type: ignore[attr-defined]
        points = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        n = max(len(values) - 1, 1)
        if points:
            lo = min(v for _, v in points)
            hi = max(v for _, v in points)
            span = hi - lo or 1.0

            def at(i: int, v: float) -> QPointF:
                x = rect.left() + rect.width() * i / n
                y = rect.bottom() - rect.height() * ((v - lo) / span if hi > lo else 0.5)
                return QPointF(x, y)

            path = QPainterPath()
            previous = None
            for i, v in points:
                if previous is None or i != previous + 1:
                    path.moveTo(at(i, v))
                else:
                    path.lineTo(at(i, v))
                previous = i
            selected = bool(option.state & QStyle.StateFlag.State_Selected)  # type: ignore[attr-defined]
            colour = (
                option.palette.color(QPalette.ColorRole.HighlightedText)  # type: ignore[attr-defined]
                if selected
                else QColor(theme.colour("line"))
            )
            painter.setPen(QPen(colour, 1.5))
            painter.drawPath(path)
            last_i, last_v = points[-1]
            painter.setBrush(colour)
            painter.drawEllipse(at(last_i, last_v), 2.0, 2.0)
        bad = [i for i, v in enumerate(values) if v is not None and not math.isfinite(v)]
        if bad:
            red = QColor(theme.colour("red"))
            painter.setPen(QPen(red, 1))
            painter.setBrush(red)
            for i in bad:
                x = rect.left() + rect.width() * i / n
                painter.drawEllipse(QPointF(x, rect.center().y()), 3.0, 3.0)
        painter.restore()

    def sizeHint(  # noqa: N802 - Qt override
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(WIDTH, HEIGHT)
