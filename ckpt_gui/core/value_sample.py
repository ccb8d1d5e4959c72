"""What the window's Values panel shows of a tensor: all of a small one, an evenly spaced sample
of a big one, always with the real indices. It reads tensor data, so the window runs it on a
worker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ckpt_gui.core.tree import Node

MAX_1D = 4096  # a 1-D tensor up to this length is shown whole
MAX_SIDE = 256  # a 2-D view up to this many rows/columns is shown whole


@dataclass
class ValueSample:
    values: np.ndarray  # 0-, 1- or 2-D, real numbers
    rows: np.ndarray  # the real index of each row (1-D: of each element)
    cols: np.ndarray | None  # the real index of each column (2-D only)
    full_shape: tuple[int, ...]  # the shape the values come from (after any reshape)
    note: str  # what is shown, in words
    sampled: bool
    integer: bool


def _spaced(n: int, limit: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _as_numpy(t: torch.Tensor) -> tuple[np.ndarray, bool]:
    """Values of ``t`` as a numpy array of their own: never a view of the file's memory map,
    which a sample kept by the Values panel (or a plot) would otherwise keep alive."""
    values, integer = _converted(t)
    return np.array(values, copy=True), integer


def _converted(t: torch.Tensor) -> tuple[np.ndarray, bool]:
    if t.is_quantized:
        t = t.dequantize()
    if t.is_complex():
        t = t.abs()
    if t.dtype == torch.bool:
        return t.to(torch.uint8).numpy(), True
    if t.dtype.is_floating_point:
        return t.to(torch.float64 if t.dtype == torch.float64 else torch.float32).numpy(), False
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return t.to(torch.int64).numpy(), True
    return t.numpy(), True


def sample_tensor(node: Node, index: tuple[int, ...] | None = None) -> ValueSample:
    """Read just enough of ``node``'s tensor to show it. A tensor of more than 2 dimensions
    is viewed as [first dimension, the rest], or with ``index`` (one number per leading
    dimension) as the 2-D slice ``t[index]``: ``(3, 1)`` shows ``t[3, 1, :, :]``.
    A quantized weight's logical tensor shows dequantized values, and says so."""
    lt = node.tensor.quant if node.tensor is not None else None
    if lt is None:
        return _sample_tensor(node.load(), index)
    if len(lt.shape) == 2 and lt.numel() > MAX_SIDE * MAX_SIDE:  # only the rows shown are read
        n_rows, n_cols = lt.shape
        rows, cols = _spaced(n_rows, MAX_SIDE), _spaced(n_cols, MAX_SIDE)
        picked = lt.rows_at(rows.tolist())
        if len(cols) < n_cols:
            picked = picked.index_select(1, torch.from_numpy(cols))
        values, integer = _as_numpy(picked)
        note, sampled = _grid_note(len(rows), n_rows, len(cols), n_cols)
        shown = ValueSample(values, rows, cols, (n_rows, n_cols), note, sampled, integer)
    else:
        shown = _sample_tensor(node.load(), index)
    shown.note = f"{lt.label()}; {shown.note}"
    return shown


def _sample_tensor(t: torch.Tensor, index: tuple[int, ...] | None) -> ValueSample:
    shape = tuple(t.shape)
    if index is not None and t.dim() > 2:
        if len(index) != t.dim() - 2 or not all(0 <= i < n for i, n in zip(index, shape)):
            raise ValueError(f"no slice {list(index)} of a tensor of shape {list(shape)}")
        sliced = sample_2d(t[index])
        where = ", ".join([str(i) for i in index] + [":", ":"])
        sliced.note = f"slice [{where}]; {sliced.note}"
        return sliced
    complex_note = " (magnitudes of complex values)" if t.is_complex() else ""
    if t.dim() == 0:
        values, integer = _as_numpy(t.reshape(()))
        return ValueSample(
            values, np.arange(1), None, shape, "scalar" + complex_note, False, integer
        )
    if t.numel() == 0:
        values, integer = _as_numpy(t.reshape(-1))
        return ValueSample(values, np.arange(0), None, shape, "empty tensor", False, integer)
    note = ""
    if t.dim() == 1:
        rows = _spaced(shape[0], MAX_1D)
        picked = t if len(rows) == shape[0] else t.index_select(0, torch.from_numpy(rows))
        values, integer = _as_numpy(picked)
        sampled = len(rows) < shape[0]
        if sampled:
            note = f"{len(rows):,} of {shape[0]:,} values, evenly spaced"
        return ValueSample(
            values, rows, None, shape, (note or "all values") + complex_note, sampled, integer
        )
    return sample_2d(t)


def sample_2d(t: torch.Tensor) -> ValueSample:
    """A tensor of 2 or more dimensions, viewed as [first dimension, the rest]."""
    shape = tuple(t.shape)
    complex_note = " (magnitudes of complex values)" if t.is_complex() else ""
    note = ""
    n_rows = shape[0]
    n_cols = t.numel() // n_rows if n_rows else 0
    if t.dim() > 2:
        note = f"viewed as [{n_rows}, {n_cols}]; "
    rows, cols = _spaced(n_rows, MAX_SIDE), _spaced(n_cols, MAX_SIDE)
    picked = t if len(rows) == n_rows else t.index_select(0, torch.from_numpy(rows))
    picked = picked.reshape(len(rows), n_cols)  # rows are picked first: never copies it all
    if len(cols) < n_cols:
        picked = picked.index_select(1, torch.from_numpy(cols))
    values, integer = _as_numpy(picked)
    grid, sampled = _grid_note(len(rows), n_rows, len(cols), n_cols)
    note += grid
    return ValueSample(values, rows, cols, (n_rows, n_cols), note + complex_note, sampled, integer)


def _grid_note(rows: int, n_rows: int, cols: int, n_cols: int) -> tuple[str, bool]:
    """What part of a [rows, columns] view is shown, and whether it is a sample."""
    if rows < n_rows or cols < n_cols:
        return f"{rows:,} of {n_rows:,} rows × {cols:,} of {n_cols:,} columns, evenly spaced", True
    return "all values", False
