"""What the tree says about a row: tied weights apart from views of one storage, tensors without
data, NumPy arrays, and optimizer state that is never rolled up into one meaningless figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.marks import marks_of
from ckpt_gui.qt.widgets.checkpoint_view import CheckpointView
from ckpt_gui.qt.widgets.details import detail_rows
from tests.core import hostile_memory as hm
from tests.core.checkpoints import training_checkpoint
from tests.qt.files import opened


def item(view: CheckpointView, key: str):
    assert view.model is not None
    return next(it for it in view.model.root_item().walk() if it.key == key)


def test_tied_and_shared_storage_are_different_marks(qtbot, window, tmp_path: Path) -> None:
    flat, embed = torch.arange(12.0), torch.randn(5, 3)
    path = tmp_path / "shared.pt"
    torch.save({"embed": embed, "head": embed, "g0": flat[:6], "g1": flat[6:]}, path)
    view = opened(qtbot, window, path)
    model = view.model
    head, g1 = item(view, "head"), item(view, "g1")
    assert "tied" in marks_of(head, model.stats_of(head))
    assert "shared" in marks_of(g1, model.stats_of(g1)) and "tied" not in marks_of(g1, None)
    assert col.display(g1, col.VALUE, model.stats_of(g1)) == "shares storage: g0"
    storage = dict(detail_rows(g1, model.stats_of(g1)))["storage"]
    assert storage == "shared with g0 (distinct bytes)"
    assert dict(detail_rows(head, None))["storage"] == "tied to embed (the same bytes)"


def test_uninitialised_and_numpy_rows_say_so(qtbot, window, tmp_path: Path) -> None:
    ghost = tmp_path / "ghost.pt"
    hm.uninitialised_tensor(ghost)
    view = opened(qtbot, window, ghost)
    row = item(view, "ghost")
    assert "nodata" in marks_of(row, view.model.stats_of(row))
    assert view.model.stats_of(row) is None  # never measured
    assert dict(detail_rows(row, None))["data"] == "none: uninitialised (no data in the file)"
    arrays = tmp_path / "arrays.pt"
    torch.save({"mean": np.linspace(0, 1, 5, dtype=np.float32), "w": torch.ones(2)}, arrays)
    view = opened(qtbot, window, arrays)
    mean = item(view, "mean")
    assert view.checkpoint.view == "structural"
    assert col.display(mean, col.VALUE, None) == "NumPy array"
    assert view.model.stats_of(mean).max == 1.0  # measured like a tensor


def test_optimizer_state_is_rolled_up_per_state_name(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "adam.pt"
    saved = training_checkpoint(path, "adam")
    view = opened(qtbot, window, path)
    model = view.model
    for key in (
        "optimizer_state_dict",
        "optimizer_state_dict.state",
        "optimizer_state_dict.state.0",
    ):
        assert model.stats_of(item(view, key)) is None, key  # no exp_avg + exp_avg_sq mix
    by_name = model.details_stats(item(view, "optimizer_state_dict.state"))
    assert list(by_name) == ["exp_avg", "exp_avg_sq"]  # Adam's step counter left out
    moments = [s["exp_avg_sq"] for s in saved["optimizer_state_dict"]["state"].values()]
    assert by_name["exp_avg_sq"].max == max(m.max().item() for m in moments)
    view.tree.select_item(item(view, "optimizer_state_dict.state"))
    assert "exp_avg_sq: 6 tensors" in view.details.text()
    # A module's roll-up leaves num_batches_tracked (a counter) out of its values.
    bn = model.stats_of(item(view, "model_state_dict"))
    weights = saved["model_state_dict"]
    floats = [v for k, v in weights.items() if v.is_floating_point()]
    assert bn.max == max(v.max().item() for v in floats)
