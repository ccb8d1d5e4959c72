"""The window with checkpoints of very many tensors: module rows keep their roll-ups up to date
batch by batch (and equal to the roll-up built from scratch), rows too big to read do not open by
themselves, and a tab over a big tree keeps it out of the garbage collector's way."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest
import torch

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.rollup import Rollup, combine
from ckpt_gui.core.stats import TensorStats, tensor_stats
from ckpt_gui.qt import jobs
from ckpt_gui.qt.models.items import Item, build_items
from ckpt_gui.qt.models.tree_model import CheckpointModel
from ckpt_gui.qt.widgets import tree_panel
from tests.qt.files import opened, training_checkpoint

FIGURES = ("tensors", "numel", "nbytes", "min", "max", "absmax", "zeros", "nan", "posinf")
FIGURES += ("neginf", "counted")


def assert_same_rollup(got: Rollup | TensorStats | None, want: Rollup | None, key: str) -> None:
    assert isinstance(got, Rollup) == isinstance(want, Rollup), key
    if not isinstance(got, Rollup) or want is None:
        return
    for name in FIGURES:
        assert getattr(got, name) == getattr(want, name), (key, name)
    for name in ("mean", "std", "l2"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), (key, name)
        if a is not None and not (math.isnan(a) and math.isnan(b)):
            assert a == pytest.approx(b, rel=1e-9), (key, name)


def fresh_rollup(model: CheckpointModel, item: Item) -> Rollup | None:
    """The roll-up of ``item`` built from scratch from the rows below, as at the first paint."""
    if model.rollups.mixes_state_names(item):
        return None
    return combine(
        (
            (model.tensor_stats(c) if model.rollups.counts(c) else None)
            if c.is_tensor
            else (None if model.rollups.mixes_state_names(c) else fresh_rollup(model, c))
            for c in item.children
            if c.tensors
        ),
        f"{item.key}." if item.key else "",
    )


def state(count: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for i in range(count):
        out[f"blocks.{i % 7}.layer.{i}.weight"] = torch.randn(3, generator=g) * (i + 1)
        out[f"blocks.{i % 7}.layer.{i}.mask"] = torch.ones(2, dtype=torch.bool)  # not rolled up
    out["blocks.0.bad.weight"] = torch.tensor([1.0, float("nan"), float("inf")])
    out["num_batches_tracked"] = torch.tensor(5.0)  # a counter: kept out
    return out


def test_rollups_kept_up_to_date_equal_rollups_built_from_scratch(tmp_path: Path) -> None:
    saved = state(200)
    torch.save(saved, tmp_path / "many.pt")
    ckpt = open_checkpoint(tmp_path / "many.pt")
    model = CheckpointModel(build_items(ckpt.root))
    containers = [it for it in model.root_item().walk() if not it.is_tensor and it.tensors]
    nodes = ckpt.tensors()
    # Ask for every roll-up early (cached, some empty), then feed the statistics in batches,
    # as the window's worker does; the cached roll-ups take each batch in.
    for it in containers:
        model.stats_of(it)
    for start in range(0, len(nodes), 37):
        batch = nodes[start : start + 37]
        model.add_stats([(n, tensor_stats(n.load())) for n in batch])
        if start == 37:
            for it in containers:  # some asked for halfway, built from what is there
                model.stats_of(it)
    assert model.stats_count() == len(nodes)
    for it in containers:
        assert_same_rollup(model.stats_of(it), fresh_rollup(model, it), it.key)
    top = model.stats_of(model.root_item())
    assert isinstance(top, Rollup)
    floats = [t for k, t in saved.items() if t.is_floating_point() and "num_batches" not in k]
    assert top.tensors == len(floats)
    assert top.nan == 1 and top.posinf == 1
    assert top.max == max(float(t[torch.isfinite(t)].max()) for t in floats)


def test_rollups_are_kept_from_the_first_statistics_on(tmp_path: Path) -> None:
    """No row's roll-up is built from scratch as it paints: each batch went into every row
    above it already (and the roll-ups equal those built from scratch)."""
    torch.save(state(120), tmp_path / "many.pt")
    ckpt = open_checkpoint(tmp_path / "many.pt")
    model = CheckpointModel(build_items(ckpt.root))
    nodes = ckpt.tensors()
    for start in range(0, len(nodes), 29):  # nothing asked for in between
        model.add_stats([(n, tensor_stats(n.load())) for n in nodes[start : start + 29]])
    containers = [it for it in model.root_item().walk() if not it.is_tensor and it.tensors]
    kept = model.rollups._rolled
    for it in containers:
        floats = any(c.is_tensor and model.rollups.counts(c) for c in it.walk())
        assert isinstance(kept.get(it), Rollup) == floats, it.key
        assert_same_rollup(model.stats_of(it), fresh_rollup(model, it), it.key)


def test_replaced_statistics_rebuild_the_rollups_above(tmp_path: Path) -> None:
    torch.save(state(10), tmp_path / "few.pt")
    ckpt = open_checkpoint(tmp_path / "few.pt")
    model = CheckpointModel(build_items(ckpt.root))
    model.add_stats([(n, tensor_stats(n.load())) for n in ckpt.tensors()])
    before = model.stats_of(model.root_item())
    assert isinstance(before, Rollup)
    node = next(n for n in ckpt.tensors() if n.key.endswith("layer.3.weight"))
    model.add_stats([(node, tensor_stats(torch.tensor([1e6, -1e6])))])
    after = model.stats_of(model.root_item())
    assert isinstance(after, Rollup)
    assert after.max == 1e6 and after.min == -1e6
    assert after.tensors == before.tensors
    for it in model.root_item().walk():
        if not it.is_tensor and it.tensors:
            assert_same_rollup(model.stats_of(it), fresh_rollup(model, it), it.key)


def test_optimizer_state_still_rolls_up_per_state_name(tmp_path: Path) -> None:
    path = training_checkpoint(tmp_path / "train.pt")
    ckpt = open_checkpoint(path)
    model = CheckpointModel(build_items(ckpt.root))
    for n in ckpt.tensors():  # one at a time: every roll-up above is touched each time
        model.add_stats([(n, tensor_stats(n.load()))])
    items = {it.key: it for it in model.root_item().walk()}
    assert model.stats_of(items["optimizer_state_dict"]) is None
    assert model.stats_of(items["optimizer_state_dict.state"]) is None
    for it in model.root_item().walk():
        if not it.is_tensor and it.tensors:
            assert_same_rollup(model.stats_of(it), fresh_rollup(model, it), it.key)


def test_a_row_too_big_to_read_stays_closed(
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree_panel, "AUTO_EXPAND_ROWS", 50)
    saved = {f"big.{i}": torch.zeros(1) for i in range(60)}
    saved.update({f"small.{i}.w": torch.zeros(1) for i in range(3)})
    torch.save(saved, tmp_path / "rows.pt")
    view = opened(qtbot, window, tmp_path / "rows.pt")
    proxy, tree = view.tree.proxy, view.tree.view
    top = {proxy.index(r, 0).data(): proxy.index(r, 0) for r in range(proxy.rowCount())}
    assert not tree.isExpanded(top["big"])  # 60 rows: left closed
    assert tree.isExpanded(top["small"])  # 3 rows: opened, as before
    view.tree.expand_all()  # the user can still open it
    assert tree.isExpanded(top["big"])


def test_a_single_top_row_opens_its_small_children(qtbot, window, tmp_path: Path) -> None:
    torch.save({f"model.layer{i}.sub.w": torch.zeros(1) for i in range(3)}, tmp_path / "one.pt")
    view = opened(qtbot, window, tmp_path / "one.pt")
    proxy, tree = view.tree.proxy, view.tree.view
    model = proxy.index(0, 0)
    assert tree.isExpanded(model)
    children = [proxy.index(r, 0, model) for r in range(proxy.rowCount(model))]
    assert children and all(tree.isExpanded(c) for c in children)


def test_a_big_tree_is_frozen_while_shown_and_collected_when_closed(
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "FREEZE_TENSORS", 5)
    torch.save({f"w{i}": torch.full((2,), float(i)) for i in range(20)}, tmp_path / "big.pt")
    gc.collect()
    view = opened(qtbot, window, tmp_path / "big.pt")
    assert view.model is not None and view.model.stats_count() == 20
    assert view._frozen_heap and gc.get_freeze_count() > 0
    window.close_tab(window.tabs.indexOf(view))
    assert gc.get_freeze_count() == 0  # thawed and collected with the tab


def test_dotted_names_group_into_module_rows_in_saved_order() -> None:
    """Module rows are found by their dotted head in one lookup per name; odd names (empty
    parts) still group as they always did."""
    from ckpt_gui.core.tree import Node

    root = Node(name="", key="", kind="dict")
    for name in ["a.b.c", "a.b.d", ".x", "x.", "a..b", "a", "a.b", "q.r.s", "a.c"]:
        root.add(Node(name=name, key=name, kind="value", value=1))
    rows = []

    def walk(item: Item, depth: int) -> None:
        for child in item.children:
            rows.append((depth, child.name, child.key, child.node is None, child.row))
            walk(child, depth + 1)

    walk(build_items(root), 0)
    assert rows == [
        (0, "a", "a", True, 0),
        (1, "b", "a.b", True, 0),
        (2, "c", "a.b.c", False, 0),
        (2, "d", "a.b.d", False, 1),
        (1, "", "a.", True, 1),
        (2, "b", "a..b", False, 0),
        (1, "b", "a.b", False, 2),
        (1, "c", "a.c", False, 3),
        (0, "", "", True, 1),
        (1, "x", ".x", False, 0),
        (0, "x", "x", True, 2),
        (1, "", "x.", False, 0),
        (0, "a", "a", False, 3),
        (0, "q", "q", True, 4),
        (1, "r", "q.r", True, 0),
        (2, "s", "q.r.s", False, 0),
    ]
