"""``ValuesPanel``: the selected tensor's values as a table, plus a line plot (1-D) or a heat map
with a colour bar (2-D). Big tensors show an evenly spaced sample, labelled with real indices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QRectF,
    Qt,
    Signal,
)
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ckpt_gui.core.tree import Node
from ckpt_gui.core.value_sample import ValueSample, sample_tensor
from ckpt_gui.qt import theme, workers
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.formatting import format_float, format_shape
from ckpt_gui.qt.gui_turns import after_paint
from ckpt_gui.qt.widgets.plot_widget import new_plot

_Index = QModelIndex | QPersistentModelIndex
NO_PARENT = QModelIndex()  # an immutable value: safe as a default argument


class ValuesTableModel(QAbstractTableModel):
    """A read-only table over a 1-D or 2-D sample; headers are the tensor's real indices."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._sample: ValueSample | None = None
        self._table = np.zeros((0, 0))

    def set_sample(self, sample: ValueSample | None) -> None:
        self.beginResetModel()
        self._sample = sample
        if sample is None:
            self._table = np.zeros((0, 0))
        elif sample.values.ndim == 0:
            self._table = sample.values.reshape(1, 1)
        elif sample.values.ndim == 1:
            self._table = sample.values.reshape(-1, 1)
        else:
            self._table = sample.values
        self.endResetModel()

    def rowCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else self._table.shape[0]

    def columnCount(self, parent: _Index = NO_PARENT) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else self._table.shape[1]

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self._sample is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            value = self._table[index.row(), index.column()]
            return str(int(value)) if self._sample.integer else format_float(float(value), 6)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def headerData(  # noqa: N802 - Qt override
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or self._sample is None:
            return None
        sample = self._sample
        if orientation == Qt.Orientation.Vertical:
            return str(int(sample.rows[section])) if section < len(sample.rows) else None
        if sample.cols is None:
            return "value"
        return str(int(sample.cols[section])) if section < len(sample.cols) else None


class ValuesPanel(QWidget):
    """Table and plot of one tensor's values, read on a worker."""

    values_ready = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.note = QLabel("Select one tensor to see its values.")
        self.note.setTextFormat(Qt.TextFormat.PlainText)  # it names the key
        theme.style_secondary(self.note)
        self.note.setWordWrap(True)
        self.table_model = ValuesTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.horizontalHeader().setDefaultSectionSize(86)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self._plot: pg.PlotWidget | None = None  # made on first use: it costs ~10 ms
        self.image: pg.ImageItem | None = None
        self.colour_bar: pg.ColorBarItem | None = None
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        # Tensors of more than 2 dimensions: view them flattened, or tick Slice and choose the
        # 2-D slice with a spin box per leading dimension.
        self.slice_box = QCheckBox("Slice")
        self.slice_box.setToolTip("Show one 2-D slice t[i, j, :, :] instead of the tensor as rows")
        self.slice_box.toggled.connect(self._on_slice_changed)
        self.slice_spins: list[QSpinBox] = []
        self.slice_row = QWidget()
        self._slice_layout = QHBoxLayout(self.slice_row)
        self._slice_layout.setContentsMargins(0, 0, 0, 0)
        self._slice_layout.addWidget(self.slice_box)
        self._slice_layout.addStretch(1)
        self.slice_row.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.note)
        layout.addWidget(self.slice_row)
        layout.addWidget(self.splitter, 1)
        self.splitter.setVisible(False)
        self._node: Node | None = None
        self._sample: ValueSample | None = None
        self._work = workers.WorkerSlot()
        theme.follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        """Draw again in the new theme's colours."""
        if self._plot is not None and self._sample is not None:
            self._draw(self._sample)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    def prepare(self) -> None:
        """Make the plot ahead of its first use, and on a turn of its own after it, the heat
        map's image and colour bar (about 10 ms each here): made on demand, the first values
        shown took one turn of 50-60 ms."""
        self.plot  # noqa: B018
        after_paint(self, self._prepare_heat_map)

    def _prepare_heat_map(self) -> None:
        if self.colour_bar is not None:
            return
        self.image = pg.ImageItem(axisOrder="row-major")
        self.colour_bar = pg.ColorBarItem(
            values=(0.0, 1.0), colorMap="viridis", interactive=False, width=14
        )
        self.colour_bar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        self.colour_bar.setVisible(False)

    @property
    def plot(self) -> pg.PlotWidget:
        if self._plot is None:
            plot = new_plot()
            self.splitter.insertWidget(0, plot)
            self.splitter.setStretchFactor(0, 3)
            self.splitter.setStretchFactor(1, 2)
            self.splitter.setSizes([600, 400])  # proportions: the plot above, the table below
            self._plot = plot
        return self._plot

    def plot_shown(self) -> bool:
        return self._plot is not None and self._plot.isVisible()

    def show_tensor(self, node: Node | None) -> None:
        if node is self._node and (self._sample is not None or self._work.busy()):
            return
        self._work.abort()
        self._node = node
        self._sample = None
        self._set_slice_controls(node)
        if node is None:
            self._show(None, "Select one tensor to see its values.")
            return
        self._read()

    def slice_index(self) -> tuple[int, ...] | None:
        """The 2-D slice chosen (one index per leading dimension), or None: viewed as rows."""
        if not self.slice_box.isChecked() or not self.slice_spins:
            return None
        return tuple(spin.value() for spin in self.slice_spins)

    def set_slice(self, index: tuple[int, ...] | None) -> None:
        """Show the slice ``t[index]`` (None: the tensor viewed as rows)."""
        self.slice_box.blockSignals(True)
        self.slice_box.setChecked(index is not None)
        self.slice_box.blockSignals(False)
        for spin, value in zip(self.slice_spins, index or ()):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)
        self._on_slice_changed()

    def _read(self) -> None:
        node, index = self._node, self.slice_index()
        if node is None:
            return
        self.note.setText(f"Reading {node.key}…")
        self._work.call(
            lambda: sample_tensor(node, index), on_finish=self._on_sample, on_error=self._on_failed
        )

    def _set_slice_controls(self, node: Node | None) -> None:
        """A spin box per leading dimension of a tensor of more than 2 dimensions."""
        for spin in self.slice_spins:
            self._slice_layout.removeWidget(spin)
            spin.deleteLater()
        self.slice_spins = []
        shape = node.tensor.shape if node is not None and node.tensor is not None else ()
        many = len(shape) > 2 and all(n > 0 for n in shape)
        self.slice_row.setVisible(many)
        if not many:
            return
        for dim, size in enumerate(shape[:-2]):
            spin = QSpinBox()
            spin.setRange(0, size - 1)
            spin.setPrefix(f"dim {dim}: ")
            spin.setToolTip(f"Index along dimension {dim} (size {size})")
            spin.setEnabled(self.slice_box.isChecked())
            spin.valueChanged.connect(self._on_slice_changed)
            self._slice_layout.insertWidget(1 + dim, spin)
            self.slice_spins.append(spin)

    def _on_slice_changed(self, *_: object) -> None:
        for spin in self.slice_spins:
            spin.setEnabled(self.slice_box.isChecked())
        if self._node is not None:
            self._work.abort()
            self._sample = None
            self._read()

    def selected_cells_text(self) -> str:
        """The selected cells, tab-separated by column and a line per row (a spreadsheet
        pastes them as cells); empty cells between selected ones stay empty."""
        indexes = self.table.selectionModel().selectedIndexes()
        if not indexes:
            return ""
        rows = sorted({i.row() for i in indexes})
        columns = sorted({i.column() for i in indexes})
        chosen = {(i.row(), i.column()) for i in indexes}
        model = self.table_model
        lines = []
        for row in rows:
            cells = [
                model.index(row, column).data() if (row, column) in chosen else ""
                for column in columns
            ]
            lines.append("\t".join(str(c or "") for c in cells))
        return "\n".join(lines)

    def is_busy(self) -> bool:
        return self._work.busy()

    def sample(self) -> ValueSample | None:
        return self._sample

    def shutdown(self, wait_s: float = 5.0) -> None:
        self._work.shutdown(wait_s)

    def clear(self) -> None:
        """Forget the tensor shown (the tab reloads or closes): its node holds the tensor, and
        the tensor the file's memory map."""
        self.show_tensor(None)
        if self.image is not None:
            self.image.clear()

    def _on_sample(self, sample: ValueSample) -> None:
        self._sample = sample
        self._show(sample, sample.note)
        self.values_ready.emit()

    def _on_failed(self, exc: BaseException) -> None:
        self._show(None, f"Could not read the values: {error_text(exc)[0]}")
        self.values_ready.emit()

    def _show(self, sample: ValueSample | None, note: str) -> None:
        if sample is not None and self._node is not None and self._node.tensor is not None:
            note = f"{format_shape(self._node.tensor.shape)} {self._node.tensor.dtype}: {note}"
        self.note.setText(note)
        self.table_model.set_sample(sample)
        self._draw(sample)
        self.splitter.setVisible(sample is not None and sample.values.size > 0)

    def _draw(self, sample: ValueSample | None) -> None:
        nothing = sample is None or sample.values.ndim == 0 or sample.values.size == 0
        if nothing and self._plot is None:
            return
        plot_item = self.plot.getPlotItem()
        plot_item.clear()
        if self.colour_bar is not None:
            self.colour_bar.setVisible(False)
        plot_item.invertY(False)
        plot_item.setAspectLocked(False)
        if nothing:
            self.plot.setVisible(False)
            return
        self.plot.setVisible(True)
        assert sample is not None
        values = np.asarray(sample.values, dtype=np.float64)
        if values.ndim == 1:
            plot_item.plot(
                sample.rows,
                np.nan_to_num(values, nan=0.0),
                pen=pg.mkPen(theme.colour("line"), width=1.2),
            )
            plot_item.setLabel("bottom", "index")
            plot_item.setLabel("left", "value")
            plot_item.autoRange()
            return
        self._draw_heat_map(plot_item, sample, values)

    def _draw_heat_map(
        self, plot_item: pg.PlotItem, sample: ValueSample, values: np.ndarray
    ) -> None:
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        if lo < 0 < hi:  # centre diverging data on zero so the sign reads at a glance
            bound = max(-lo, hi)
            lo, hi, cmap = -bound, bound, "CET-D1"
        else:
            cmap = "viridis"
        self._prepare_heat_map()
        assert self.image is not None and self.colour_bar is not None
        self.image.setImage(np.nan_to_num(values, nan=lo), levels=(lo, hi))
        n_rows, n_cols = sample.full_shape
        self.image.setRect(QRectF(0, 0, n_cols, n_rows))  # axes show the tensor's real indices
        plot_item.addItem(self.image)
        plot_item.invertY(True)
        plot_item.setLabel("bottom", "column")
        plot_item.setLabel("left", "row")
        self.colour_bar.setColorMap(pg.colormap.get(cmap))  # one colour bar, reused
        self.colour_bar.setLevels((lo, hi))
        self.colour_bar.setVisible(True)
        plot_item.autoRange(padding=0)
