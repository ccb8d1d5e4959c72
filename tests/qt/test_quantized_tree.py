"""A quantized checkpoint in the window: each quantized weight is one row, measured on its
dequantized values, with its raw parts below it."""

from __future__ import annotations

from pathlib import Path

from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.widgets.details import detail_rows
from tests.core.quant import writers as W
from tests.qt import files


def test_logical_rows_carry_dequantized_statistics(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    path, refs = W.fp8(tmp_path, block=True)
    key = next(iter(refs))
    view = files.opened(qtbot, window, path)
    rows = [it for it in view.model.root_item().walk() if it.key == key]
    logical, raw = rows  # the logical weight, and the float8 tensor of the same key below it
    assert raw.parent is logical
    assert [c.name for c in logical.children] == ["weight", "weight_scale_inv"]
    assert [c.node.role for c in logical.children] == ["quantization"] * 2
    stats = view.model.tensor_stats(logical)
    assert stats is not None and stats.dequantized and stats.numel == refs[key].size
    assert stats.max == refs[key].max()
    assert view.model.tensor_stats(raw).dtype == "float8_e4m3fn"
    details = dict(detail_rows(logical, stats))
    assert details["kind"] == "tensor, dequantized (fp8-block, 8-bit, block 128)"


def test_a_gguf_file_opens_in_the_window(qtbot, window: MainWindow, tmp_path: Path) -> None:
    from tests.core.quant import gguf_writer as G

    path, _, _ = G.llama(tmp_path)
    view = files.opened(qtbot, window, path)
    items: dict = {}
    for it in view.model.root_item().walk():
        items.setdefault(it.key, it)  # the logical row comes before its raw part (same key)
    q = items["blk.0.attn_q.weight"]
    assert [c.node.tensor.dtype for c in q.children] == ["uint8"]
    stats = view.model.tensor_stats(q)
    assert stats is not None and stats.dequantized and stats.dtype == "float32"
    assert dict(detail_rows(q, stats))["kind"] == "tensor, dequantized (gguf:Q8_0, 8-bit, group 32)"
    assert items["metadata.general.architecture"].node.value == "llama"
