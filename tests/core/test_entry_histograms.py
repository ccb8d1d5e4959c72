"""What the compare view draws for a row of the diff, computed from real files: A and B on common
bins with A − B for a pair of one shape, each side alone otherwise, nothing for a value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.diff import DiffEntry, diff_checkpoints
from ckpt_gui.core.diff.histograms import EntryHistograms, bins_for, entry_histograms
from ckpt_gui.core.reader import open_checkpoint


@pytest.fixture()
def entries(tmp_path: Path) -> Iterator[dict[str, DiffEntry]]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 16, generator=g)
    save_file(
        {"w": w, "gone": torch.randn(64, generator=g), "head": torch.ones(4, 2)}, tmp_path / "a.st"
    )
    torch.save({"w": w * 1.5, "head": torch.ones(5, 2), "step": 3}, tmp_path / "b.pt")
    with open_checkpoint(tmp_path / "a.st") as a, open_checkpoint(tmp_path / "b.pt") as b:
        yield {e.key: e for e in diff_checkpoints(a, b).entries}


def test_a_pair_of_one_shape_shares_bins_and_has_a_real_difference(entries) -> None:
    result = entry_histograms(entries["w"])
    assert isinstance(result, EntryHistograms)
    assert result.a is not None and result.b is not None and result.diff is not None
    assert len(result.a.edges) == bins_for(256) + 1 == 33
    assert list(result.a.edges) == list(result.b.edges)
    assert result.a.counts.sum() == result.b.counts.sum() == result.diff.counts.sum() == 256
    w = entries["w"].node_a.load()
    assert result.diff.edges[0] == pytest.approx(float((-0.5 * w).min()), rel=1e-5)
    assert result.diff.edges[-1] == pytest.approx(float((-0.5 * w).max()), rel=1e-5)


def test_one_side_or_two_shapes_give_each_side_alone(entries) -> None:
    gone = entry_histograms(entries["gone"])
    assert gone.b is None and gone.diff is None
    assert gone.a is not None and gone.a.counts.sum() == 64 and len(gone.a.edges) == 17
    head = entry_histograms(entries["head"])
    assert head.diff is None
    assert head.a is not None and head.b is not None
    assert head.a.counts.sum() == 8 and head.b.counts.sum() == 10
    assert [h is not None for h in head.sides()] == [True, True, False]


def test_a_value_has_no_histogram(entries) -> None:
    assert entry_histograms(entries["step"]) == EntryHistograms(None, None, None)


def test_bins_follow_the_size() -> None:
    assert [bins_for(n) for n in (0, 1, 64, 256, 4096, 10**9)] == [16, 16, 16, 32, 128, 128]
