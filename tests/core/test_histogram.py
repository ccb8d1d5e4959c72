"""Histograms against numpy's, on tensors read back from real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.core.errors import Cancelled
from ckpt_gui.core.histogram import Histogram, histogram
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import tensor_stats

NAN, INF = float("nan"), float("inf")


def load(path: Path, key: str) -> torch.Tensor:
    with open_checkpoint(path) as ckpt:
        node = ckpt.find(key)
        assert node is not None
        return node.load()


def finite_values(t: torch.Tensor) -> np.ndarray:
    a = t.to(torch.float64).numpy().ravel()
    return a[np.isfinite(a)]


def assert_numpy_agrees(h: Histogram, t: torch.Tensor) -> None:
    """Exact counts: numpy's histogram over the same edges, and every finite value counted."""
    values = finite_values(t)
    want, _ = np.histogram(values, bins=h.edges)
    np.testing.assert_array_equal(h.counts, want)
    assert h.counts.sum() == values.size == h.finite


def test_exact_float_histogram_with_nan_and_inf(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(300_000, generator=g)
    t[::1001] = NAN
    t[3::5003] = INF
    t[4::7001] = -INF
    torch.save({"w": t, "h": t.half(), "b": t.bfloat16(), "d": t.double()}, tmp_path / "m.pt")
    for key in ("w", "h", "b", "d"):
        loaded = load(tmp_path / "m.pt", key)
        h = histogram(loaded, exact=True, chunk_elems=50_000)
        assert not h.sampled and h.elements == h.numel == 300_000
        assert (h.nan, h.posinf, h.neginf) == (300, 60, 43)
        assert len(h.edges) == 129 and len(h.counts) == 128
        finite = finite_values(loaded)
        assert h.edges[0] == finite.min() and h.edges[-1] == finite.max()
        assert_numpy_agrees(h, loaded)


def test_values_lying_on_the_edges_are_binned_like_numpy() -> None:
    # Every value is an edge (or a float32 neighbour of one): the worst case for rounding.
    edges = np.linspace(-1.3, 2.9, 129)
    on = torch.from_numpy(edges.astype(np.float32))
    up = torch.from_numpy(np.nextafter(edges.astype(np.float32), np.float32(np.inf)))
    down = torch.from_numpy(np.nextafter(edges.astype(np.float32), np.float32(-np.inf)))
    t = torch.cat([on, up, down, on]).repeat(200)
    h = histogram(t, exact=True, chunk_elems=10_000)
    assert_numpy_agrees(h, t)


def test_given_stats_give_the_same_counts_in_one_pass(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    torch.save({"w": torch.rand(200_000, generator=g) * 7 - 2}, tmp_path / "m.pt")
    t = load(tmp_path / "m.pt", "w")
    with_stats = histogram(t, exact=True, stats=tensor_stats(t))
    without = histogram(t, exact=True)
    np.testing.assert_array_equal(with_stats.edges, without.edges)
    np.testing.assert_array_equal(with_stats.counts, without.counts)
    assert_numpy_agrees(with_stats, t)


def test_bins_are_configurable() -> None:
    t = torch.linspace(0, 1, 1001)
    h = histogram(t, bins=7, exact=True)
    assert len(h.counts) == 7 and h.edges[0] == 0 and h.edges[-1] == 1
    assert_numpy_agrees(h, t)
    wide = histogram(t, bins=1000, exact=True)  # more bins than a uint8 index holds
    assert_numpy_agrees(wide, t)
    with pytest.raises(ValueError):
        histogram(t, bins=0)


def test_sampled_histogram_is_deterministic_and_faithful(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    t = torch.randn(1000, 1000, generator=g) * 3 + 1
    t[0, :10] = NAN
    torch.save({"w": t}, tmp_path / "m.pt")
    loaded = load(tmp_path / "m.pt", "w")
    h = histogram(loaded, sample=50_000)
    again = histogram(loaded, sample=50_000)
    assert h.sampled and h.numel == 1_000_000 and h.elements == 48 * 1024  # 48 blocks of 1024
    np.testing.assert_array_equal(h.counts, again.counts)
    assert h.counts.sum() + h.nan == h.elements and h.nan == 10  # the first block is read
    # The sample's shape follows the exact histogram over the same edges within a few percent.
    exact, _ = np.histogram(finite_values(loaded), bins=h.edges)
    assert np.abs(h.counts / h.counts.sum() - exact / exact.sum()).max() < 0.01
    # A small tensor is counted exactly even in the fast mode.
    small = histogram(loaded[:10], sample=50_000)
    assert not small.sampled
    assert_numpy_agrees(small, loaded[:10])


def test_sampled_histogram_of_non_dense_layouts() -> None:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(800, 900, generator=g)
    for view in (base.t(), base[:, ::2], base[::3]):
        h = histogram(view, sample=20_000)
        assert h.sampled and 0 < h.elements <= 2 * 20_000
        assert h.counts.sum() == h.elements


def test_constant_all_nan_and_empty_tensors() -> None:
    constant = histogram(torch.full((1000,), 2.5), exact=True)
    assert constant.edges[0] == 2.0 and constant.edges[-1] == 3.0 and len(constant.counts) == 128
    assert constant.counts.sum() == 1000 and constant.counts.max() == 1000
    assert_numpy_agrees(constant, torch.full((1000,), 2.5))
    for t, nan in ((torch.full((10,), NAN), 10), (torch.empty(0), 0)):
        h = histogram(t, exact=True)
        assert h.is_empty and h.counts.size == 0 and h.edges.size == 0 and h.nan == nan


def test_integer_and_bool_tensors_get_integer_aligned_bins(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(4)
    small = torch.randint(-5, 20, (10_000,), generator=g, dtype=torch.int32)
    wide = torch.randint(-100_000, 300_000, (10_000,), generator=g)
    flags = torch.rand(1000, generator=g) > 0.3
    torch.save({"small": small, "wide": wide, "flags": flags}, tmp_path / "ints.pt")

    h = histogram(load(tmp_path / "ints.pt", "small"), exact=True)
    lo, hi = int(small.min()), int(small.max())
    assert h.integer and len(h.counts) == hi - lo + 1  # one bin per integer value
    np.testing.assert_array_equal(h.edges, np.arange(lo, hi + 2) - 0.5)
    np.testing.assert_array_equal(h.counts, np.bincount(small.numpy() - lo))

    w = histogram(load(tmp_path / "ints.pt", "wide"), bins=100, exact=True)
    assert len(w.counts) <= 100 and np.all(np.diff(w.edges) == w.edges[1] - w.edges[0])
    assert w.edges[0] == int(wide.min()) - 0.5 and (w.edges % 1 == 0.5).all()
    assert_numpy_agrees(w, wide)

    b = histogram(load(tmp_path / "ints.pt", "flags"))
    np.testing.assert_array_equal(b.edges, [-0.5, 0.5, 1.5])
    assert b.counts.tolist() == [int((~flags).sum()), int(flags.sum())]
    assert histogram(torch.ones(4, dtype=torch.bool)).counts.tolist() == [0, 4]


def test_complex_histogram_is_of_the_magnitude() -> None:
    z = torch.complex(torch.randn(5000), torch.randn(5000))
    h = histogram(z, exact=True)
    assert h.complex_magnitude
    assert_numpy_agrees(h, z.abs())


def test_exact_histogram_can_be_cancelled() -> None:
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        histogram(torch.randn(100_000), exact=True, chunk_elems=10_000, cancel=cancel)
    assert len(calls) == 4
