"""Values panel: a tensor of more than 2 dimensions shows the 2-D slice its spin boxes choose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.value_sample import sample_tensor
from ckpt_gui.qt.main_window import MainWindow
from tests.qt import files
from tests.qt.files import wait_idle


def cube(path: Path) -> Path:
    torch.save({"t": torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)}, path)
    return path


def test_core_slice(tmp_path: Path) -> None:
    ckpt = open_checkpoint(cube(tmp_path / "c.pt"))
    try:
        node = ckpt.find("t")
        sample = sample_tensor(node, (1, 2))
        expected = torch.load(tmp_path / "c.pt")["t"][1, 2].numpy()
        assert np.array_equal(sample.values, expected)
        assert sample.note.startswith("slice [1, 2, :, :]")
        with pytest.raises(ValueError):
            sample_tensor(node, (2, 0))
    finally:
        ckpt.close()


def test_spin_boxes_choose_the_slice(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = cube(tmp_path / "c.pt")
    view = files.opened(qtbot, window, path)
    item = next(it for it in view.model.root_item().walk() if it.key == "t")
    view.plots.setCurrentWidget(view.values)
    view.tree.select_item(item)
    wait_idle(qtbot, view)
    values = view.values
    assert values.slice_row.isVisibleTo(values)
    assert [s.maximum() for s in values.slice_spins] == [1, 2]
    assert values.sample().values.shape == (2, 60)  # viewed as rows until Slice is ticked
    values.slice_box.setChecked(True)
    values.slice_spins[0].setValue(1)
    values.slice_spins[1].setValue(2)
    qtbot.waitUntil(lambda: values.sample() is not None and not values.is_busy(), timeout=10_000)
    expected = torch.load(path)["t"][1, 2].numpy()
    assert np.array_equal(values.sample().values, expected)
    assert values.table_model.index(0, 0).data() == str(expected[0, 0]).rstrip("0").rstrip(".")
    assert "slice [1, 2, :, :]" in values.note.text()
    # A 2-D tensor has no slice controls.
    other = files.training_checkpoint(tmp_path / "t.pt")
    view2 = files.opened(qtbot, window, other)
    w = next(it for it in view2.model.root_item().walk() if it.key.endswith("linear1.weight"))
    view2.tree.select_item(w)
    wait_idle(qtbot, view2)
    assert not view2.values.slice_row.isVisibleTo(view2.values)
