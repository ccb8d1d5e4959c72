"""``MergedWeights`` computes each merged weight in the memory of one nobody holds any more (a
fresh 64 MB tensor costs more in page faults than the merge's arithmetic), and never in memory
that is still in use: whatever the consumer keeps, every weight it got stays the right one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckpt_gui.core.adapters import find_adapters, merge_targets, pair_with_base
from ckpt_gui.core.adapters.merge import MergedWeights, merged_weight
from ckpt_gui.core.reader import open_checkpoint
from tests.core.adapter_models import make_adapter


@pytest.fixture()
def targets(tmp_path: Path):
    # up_proj's weight is twice the size of the others: buffers too small are replaced.
    made = make_adapter(
        tmp_path, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]
    )
    with open_checkpoint(made.adapter) as adapter_ckpt, open_checkpoint(made.base) as base:
        with find_adapters(adapter_ckpt) as found:
            adapter = found.adapters[0]
            spec = merge_targets(adapter, pair_with_base(adapter.tensors, adapter.config, base))
            yield spec.targets


def test_memory_nobody_holds_is_used_again(targets) -> None:
    weights = MergedWeights(targets)
    pointers = []
    try:
        for target in targets:
            merged = weights.load(target.key)
            assert torch.equal(merged, merged_weight(target)), target.key
            pointers.append(merged.data_ptr())
            del merged  # written: the consumer lets go
    finally:
        weights.close()
    # Two buffers take turns (the one in use, the one computed ahead), replaced when too small:
    # far fewer addresses than weights.
    assert len(targets) == 10 and len(set(pointers)) <= 4


def test_memory_still_held_is_never_reused(targets) -> None:
    weights = MergedWeights(targets)
    try:
        kept = [weights.load(t.key) for t in targets]  # as the pt writer holds them all
        views = [k.view(-1)[:5] for k in kept]  # and views of them
        del kept
        for target, view in zip(targets, views):
            assert torch.equal(view, merged_weight(target).view(-1)[:5]), target.key
        assert len({v.data_ptr() for v in views}) == len(targets)
    finally:
        weights.close()
