"""What the Values panel shows of a tensor, read from a real file: small tensors whole, big ones
as an evenly spaced sample with their real indices, in numbers the table can print."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node
from ckpt_gui.core.value_sample import MAX_1D, MAX_SIDE, sample_tensor


@pytest.fixture()
def nodes(tmp_path: Path) -> Iterator[dict[str, Node]]:
    g = torch.Generator().manual_seed(0)
    torch.save(
        {
            "vector": torch.arange(12, dtype=torch.float32),
            "long": torch.linspace(0, 1, 10_000),
            "wide": torch.randn(300, 500, generator=g),
            "conv": torch.randn(8, 3, 3, 3, generator=g),
            "step": torch.tensor(42),
            "mask": torch.tensor([True, False, True]),
            "phase": torch.tensor([3 + 4j, 0 + 1j]),
            "half": torch.ones(3, dtype=torch.float16),
            "empty": torch.zeros(0, 4),
        },
        tmp_path / "values.pt",
    )
    with open_checkpoint(tmp_path / "values.pt") as ckpt:
        yield {n.key: n for n in ckpt.tensors()}


def test_a_small_vector_is_shown_whole(nodes) -> None:
    sample = sample_tensor(nodes["vector"])
    assert sample.values.tolist() == list(range(12)) and sample.rows.tolist() == list(range(12))
    assert sample.cols is None and not sample.sampled and not sample.integer
    assert sample.note == "all values"


def test_a_long_vector_is_sampled_with_its_real_indices(nodes) -> None:
    sample = sample_tensor(nodes["long"])
    assert sample.sampled and len(sample.rows) <= MAX_1D
    assert sample.rows[0] == 0 and sample.rows[-1] == 9999
    np.testing.assert_allclose(sample.values, nodes["long"].load().numpy()[sample.rows])
    assert sample.note == f"{len(sample.rows):,} of 10,000 values, evenly spaced"


def test_a_big_matrix_is_sampled_on_both_sides(nodes) -> None:
    sample = sample_tensor(nodes["wide"])
    assert sample.cols is not None and sample.values.shape == (len(sample.rows), len(sample.cols))
    assert len(sample.rows) == 256 and len(sample.cols) == MAX_SIDE
    assert sample.rows[-1] == 299 and sample.cols[-1] == 499
    full = nodes["wide"].load().numpy()
    np.testing.assert_array_equal(sample.values, full[np.ix_(sample.rows, sample.cols)])
    assert sample.note == "256 of 300 rows × 256 of 500 columns, evenly spaced"


def test_higher_dimensions_are_viewed_as_a_matrix(nodes) -> None:
    sample = sample_tensor(nodes["conv"])
    assert sample.full_shape == (8, 27) and sample.values.shape == (8, 27)
    assert sample.note == "viewed as [8, 27]; all values"


def test_scalars_bools_integers_and_complex_values(nodes) -> None:
    step = sample_tensor(nodes["step"])
    assert step.values.ndim == 0 and int(step.values) == 42 and step.integer
    assert step.note == "scalar"
    mask = sample_tensor(nodes["mask"])
    assert mask.values.tolist() == [1, 0, 1] and mask.integer
    phase = sample_tensor(nodes["phase"])
    assert phase.values.tolist() == [5.0, 1.0]
    assert phase.note == "all values (magnitudes of complex values)"
    assert sample_tensor(nodes["half"]).values.dtype == np.float32
    empty = sample_tensor(nodes["empty"])
    assert empty.values.size == 0 and empty.note == "empty tensor"


def test_a_sample_owns_its_values(nodes) -> None:
    """Never a view of the file's memory map, which a kept sample would keep alive."""
    sample = sample_tensor(nodes["vector"])
    assert sample.values.base is None or sample.values.flags.owndata
