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


def test_size_counts_the_raw_parts_once(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path, refs = W.gptq(tmp_path)
    view = files.opened(qtbot, window, path)
    items = {it.key: it for it in view.model.root_item().walk()}
    logical = items["model.layers.0.mlp.down_proj.weight"]
    parts = [c.node.tensor.nbytes for c in logical.children]
    assert len(parts) == 4 and logical.nbytes == sum(parts)  # not + 48 x 256 x 2 bytes
    assert logical.numel == refs[logical.key].size and logical.tensors == 1
    # The module rows and the whole file: the bytes on disk, each counted once.
    raw = sum(n.tensor.nbytes for n in view.checkpoint.root.tensors())
    assert view.model.root_item().nbytes == raw
    assert items["model.layers.0.mlp"].nbytes == sum(parts)


def test_reload_keeps_a_raw_part_of_the_same_key_selected(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    path, refs = W.fp8(tmp_path, block=False)
    key = next(iter(refs))
    view = files.opened(qtbot, window, path)
    tree = view.tree
    logical, raw = [it for it in view.model.root_item().walk() if it.key == key]
    tree.view.expand(tree.proxy.mapFromSource(view.model.index_of(logical)))
    tree.select_item(raw)
    window.reload_action.trigger()
    qtbot.waitUntil(lambda: view.state == "ready", timeout=20_000)
    qtbot.wait(50)
    [picked] = tree.selected_items()
    assert picked.key == key and picked.node.role == "quantization"
    current = tree.proxy.mapToSource(tree.view.currentIndex()).internalPointer()
    assert current is picked
    again = [it for it in view.model.root_item().walk() if it.key == key][0]
    assert tree.view.isExpanded(tree.proxy.mapFromSource(view.model.index_of(again)))


def test_module_roll_ups_take_the_weight_not_its_raw_parts(qtmodeltester, tmp_path: Path) -> None:
    from ckpt_gui.core.reader import open_checkpoint
    from ckpt_gui.core.stats import StatsResult, iter_stats
    from ckpt_gui.qt.models.items import build_items
    from ckpt_gui.qt.models.tree_model import CheckpointModel

    path, refs = W.fp8(tmp_path, block=False)  # raw float8 codes up to 448, the weight ~5.5
    [(key, ref)] = refs.items()
    with open_checkpoint(path) as ckpt:
        model = CheckpointModel(build_items(ckpt.view_root()))
        qtmodeltester.check(model)
        items = {it.key: it for it in model.root_item().walk()}  # the logical row's the last
        logical = next(it for it in model.root_item().walk() if it.key == key)
        module = items[key.rpartition(".")[0]]

        def measured(nodes: list) -> list:
            found = [e.stats for e in iter_stats(nodes) if isinstance(e, StatsResult)]
            return list(zip(nodes, found))

        model.add_stats(measured([logical.node]))
        assert model.stats_of(module).absmax == float(abs(ref).max())  # built now
        # The raw parts' figures arrive after the module's roll-up was built: left out of it.
        model.add_stats(measured([c.node for c in logical.children]))
        rollup = model.stats_of(module)
        assert rollup.absmax == float(abs(ref).max()) and rollup.numel == ref.size
