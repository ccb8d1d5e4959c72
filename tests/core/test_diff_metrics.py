"""Per-tensor diff metrics against float64 references, categories, tolerance, NaN, progress."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.diff import (
    CHANGED,
    DTYPE,
    IDENTICAL,
    ONLY_A,
    ONLY_B,
    SHAPE,
    DiffReport,
    DiffResult,
    MatchFound,
    Progress,
    diff_checkpoints,
    iter_diff,
    layer_changes,
    tensor_diff,
)
from ckpt_gui.core.diff.histograms import pair_histograms
from ckpt_gui.core.errors import Cancelled
from ckpt_gui.core.reader import open_checkpoint

CHUNK = 1000  # small chunks, so every tensor below spans several of them


def _reference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """The metrics computed plainly in float64 (complex128 for complex inputs)."""
    wide = torch.complex128 if a.is_complex() or b.is_complex() else torch.float64
    x, y = a.to(wide).reshape(-1), b.to(wide).reshape(-1)
    d = (x - y).abs()
    rx = torch.view_as_real(x).reshape(-1) if x.is_complex() else x
    ry = torch.view_as_real(y).reshape(-1) if y.is_complex() else y
    return {
        "max": d.max().item(),
        "mean": d.mean().item(),
        "rel": (d.norm() / rx.norm()).item(),
        "cos": ((rx * ry).sum() / (rx.norm() * ry.norm())).item(),
    }


def _check(a: torch.Tensor, b: torch.Tensor, chunk: int = CHUNK) -> None:
    got = tensor_diff(a, b, chunk_elems=chunk)
    ref = _reference(a, b)
    assert not got.identical and got.compared == a.numel()
    assert got.max_abs_diff == pytest.approx(ref["max"], rel=1e-6)
    assert got.mean_abs_diff == pytest.approx(ref["mean"], rel=1e-5)
    assert got.rel_l2 == pytest.approx(ref["rel"], rel=1e-5)
    assert got.cosine == pytest.approx(ref["cos"], abs=1e-6)


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(70, 130, generator=g) * 0.05 + 0.01
    return a, a + 1e-3 * torch.randn(70, 130, generator=g)


def test_float32_metrics_equal_float64_reference(pair) -> None:
    _check(*pair)


def test_one_chunk_and_many_chunks_agree(pair) -> None:
    a, b = pair
    one = tensor_diff(a, b, chunk_elems=1 << 20)
    many = tensor_diff(a, b, chunk_elems=97)
    assert many.rel_l2 == pytest.approx(one.rel_l2, rel=1e-6)
    assert many.max_abs_diff == one.max_abs_diff


@pytest.mark.parametrize(
    ("dtype_a", "dtype_b"),
    [
        (torch.bfloat16, torch.bfloat16),
        (torch.float16, torch.float32),  # recast: compared in float32
        (torch.float64, torch.float64),
        (torch.bfloat16, torch.float64),
    ],
)
def test_dtypes_compared_in_a_common_wider_dtype(pair, dtype_a, dtype_b) -> None:
    a, b = pair
    _check(a.to(dtype_a), b.to(dtype_b))
    assert tensor_diff(a.to(dtype_a), b.to(dtype_b)).work_dtype == (
        "float64" if torch.float64 in (dtype_a, dtype_b) else "float32"
    )


def test_integers_and_complex(pair) -> None:
    a, b = pair
    _check((a * 1e4).long(), (b * 1e4).long())
    za, zb = torch.complex(a, b), torch.complex(b, -a)
    _check(za, zb)
    assert tensor_diff(za, zb).complex_magnitude


def test_layouts_are_aligned_before_comparing(pair) -> None:
    a, b = pair
    _check(a.t(), b.t().contiguous())  # transposed view against a contiguous copy
    _check(a.t(), b.t())  # the same permuted layout on both sides
    _check(a[:, ::2], b[:, ::2].contiguous())  # a strided slice


def test_identical_means_the_same_bytes() -> None:
    a = torch.tensor([1.0, math.nan, -0.0, math.inf] * 500)
    same = tensor_diff(a, a.clone(), chunk_elems=CHUNK)
    assert same.identical and same.within_tolerance  # NaN in the same places is identical
    assert same.max_abs_diff == 0 and same.rel_l2 == 0
    assert same.nonfinite == 1000 and same.compared == 1000
    signed = a.clone()
    signed[2] = 0.0  # -0.0 -> +0.0: equal values, different bits
    flipped = tensor_diff(a, signed)
    assert not flipped.identical and flipped.within_tolerance and flipped.max_abs_diff == 0


def test_metrics_skip_non_finite_positions(pair) -> None:
    a, b = pair[0].reshape(-1).clone(), pair[1].reshape(-1).clone()
    a[5], b[17], b[3000] = math.nan, math.inf, -math.inf
    got = tensor_diff(a, b, chunk_elems=CHUNK)
    keep = torch.isfinite(a) & torch.isfinite(b)
    ref = _reference(a[keep], b[keep])
    assert got.nonfinite == 3 and got.compared == a.numel() - 3
    assert got.rel_l2 == pytest.approx(ref["rel"], rel=1e-5)
    assert got.max_abs_diff == pytest.approx(ref["max"], rel=1e-6)
    assert not tensor_diff(a, a.clone().nan_to_num_(0.0), atol=1.0).within_tolerance


def test_tolerance() -> None:
    a = torch.tensor([1.0, 2.0, 100.0])
    b = torch.tensor([1.0, 2.01, 100.5])
    assert not tensor_diff(a, b).within_tolerance
    assert tensor_diff(a, b, atol=0.5).within_tolerance
    assert not tensor_diff(a, b, atol=0.4).within_tolerance
    assert tensor_diff(a, b, rtol=0.006).within_tolerance  # 0.5 <= 0.006 * 100.5
    assert not tensor_diff(a, b, rtol=0.004).within_tolerance
    assert tensor_diff(a, b, atol=0.05, rtol=0.0045).within_tolerance  # 0.5 <= 0.05 + 0.452
    assert not tensor_diff(a, b, atol=0.04, rtol=0.0045).within_tolerance


def test_zero_norms() -> None:
    zeros = torch.zeros(4)
    assert tensor_diff(zeros, torch.ones(4)).rel_l2 is None  # ‖A‖ = 0: no ratio
    assert tensor_diff(zeros, torch.ones(4)).cosine is None
    empty = tensor_diff(torch.empty(0, 3), torch.empty(0, 3))
    assert empty.identical and empty.max_abs_diff is None and empty.rel_l2 == 0


def _write_pair(tmp_path: Path) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    base = {
        "embed.weight": torch.randn(50, 16, generator=g),
        "layer.0.weight": torch.randn(16, 16, generator=g),
        "layer.0.bias": torch.randn(16, generator=g),
        "layer.1.weight": torch.randn(16, 16, generator=g),
        "head.weight": torch.randn(4, 16, generator=g),
        "removed.weight": torch.randn(3, generator=g),
    }
    b = dict(base)
    b["layer.0.weight"] = base["layer.0.weight"] + 0.01  # changed
    b["layer.1.weight"] = base["layer.1.weight"].half()  # recast
    b["head.weight"] = torch.randn(5, 16, generator=g)  # reshaped
    del b["removed.weight"]
    b["added.weight"] = torch.ones(2)
    save_file(base, tmp_path / "a.safetensors")
    torch.save(b, tmp_path / "b.pt")
    return tmp_path / "a.safetensors", tmp_path / "b.pt", base


def test_categories_on_real_files(tmp_path: Path) -> None:
    path_a, path_b, base = _write_pair(tmp_path)
    with open_checkpoint(path_a) as a, open_checkpoint(path_b) as b:
        report = diff_checkpoints(a, b, chunk_elems=100)
    by_key = {e.key: e for e in report.entries}
    assert by_key["embed.weight"].category == IDENTICAL
    assert by_key["layer.0.bias"].category == IDENTICAL
    assert by_key["layer.0.weight"].category == CHANGED
    assert by_key["layer.1.weight"].category == DTYPE
    assert by_key["head.weight"].category == SHAPE
    assert (by_key["head.weight"].shape_a, by_key["head.weight"].shape_b) == ((4, 16), (5, 16))
    assert by_key["removed.weight"].category == ONLY_A
    assert by_key["added.weight"].category == ONLY_B
    changed = by_key["layer.0.weight"].metrics
    assert changed is not None and changed.max_abs_diff == pytest.approx(0.01, rel=1e-4)
    ref = _reference(base["layer.0.weight"], base["layer.0.weight"] + 0.01)
    assert changed.rel_l2 == pytest.approx(ref["rel"], rel=1e-5)
    recast = by_key["layer.1.weight"].metrics
    assert recast is not None and recast.work_dtype == "float32"
    w = base["layer.1.weight"]
    expected = (w.half().double() - w.double()).abs().max().item()
    assert recast.max_abs_diff == pytest.approx(expected, rel=1e-6)
    assert report.counts() == {ONLY_A: 1, ONLY_B: 1, SHAPE: 1, DTYPE: 1, CHANGED: 1, IDENTICAL: 2}
    assert report.largest_change() is by_key["layer.0.weight"]
    assert report.summary().startswith(
        "7 tensors: 2 identical, 1 changed, 1 only in A, 1 only in B, "
        "1 shape and 1 dtype mismatches; largest change layer.0.weight"
    )


def test_events_progress_and_report(tmp_path: Path) -> None:
    path_a, path_b, _ = _write_pair(tmp_path)
    with open_checkpoint(path_a) as a, open_checkpoint(path_b) as b:
        events = list(iter_diff(a, b, chunk_elems=64, progress_bytes=256))
    assert isinstance(events[0], MatchFound) and events[0].pairs == 5
    assert isinstance(events[-1], DiffReport)
    progress = [e for e in events if isinstance(e, Progress)]
    done = [p.done_bytes for p in progress]
    assert done == sorted(done) and done[0] == 0
    # Bytes of both sides of the compared pairs: embed, layer.0 (w, b), layer.1 (f32 + f16).
    total = 2 * (50 * 16 + 16 * 16 + 16) * 4 + 16 * 16 * (4 + 2)
    assert progress[-1].done_bytes == progress[-1].total_bytes == total
    assert len(progress) > 5  # progress within tensors, not only between them
    results = [e.entry.key for e in events if isinstance(e, DiffResult)]
    assert sorted(results) == sorted(e.key for e in events[-1].entries)


def test_cancel_between_chunks(tmp_path: Path) -> None:
    path_a, path_b, _ = _write_pair(tmp_path)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with open_checkpoint(path_a) as a, open_checkpoint(path_b) as b:
        with pytest.raises(Cancelled):
            diff_checkpoints(a, b, chunk_elems=64, cancel=cancel)


def test_layer_changes_in_model_order(tmp_path: Path) -> None:
    path_a, path_b, base = _write_pair(tmp_path)
    with open_checkpoint(path_a) as a, open_checkpoint(path_b) as b:
        report = diff_checkpoints(a, b)
    layers = layer_changes(report.entries)
    assert [layer.name for layer in layers] == ["embed", "layer.0", "layer.1"]
    w, bias = base["layer.0.weight"].double(), base["layer.0.bias"].double()
    expected = math.sqrt(0.01**2 * w.numel()) / math.sqrt((w**2).sum() + (bias**2).sum())
    assert layers[1].rel_l2 == pytest.approx(expected, rel=1e-4)
    assert layers[0].rel_l2 == 0 and layers[1].changed == 1


def test_pair_histograms() -> None:
    a = torch.arange(3000, dtype=torch.float32) / 1000
    b = a + 0.5
    h = pair_histograms(a, b, bins=10)
    assert list(h.a.edges) == list(h.b.edges)  # common bins for the overlay
    assert h.a.edges[0] == 0 and h.b.edges[-1] == pytest.approx(3.499)
    assert h.a.counts.sum() == h.b.counts.sum() == 3000
    assert h.diff.counts.sum() == 3000
    centre = (h.diff.edges[:-1] + h.diff.edges[1:]) / 2
    assert centre[h.diff.counts.argmax()] == pytest.approx(-0.5, abs=0.06)
    big = pair_histograms(torch.zeros(5000), torch.ones(5000), sample=1024)
    assert big.a.sampled and big.diff.elements == 1024


@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [
        pytest.param(dtype, m, id=f"{str(dtype).removeprefix('torch.')}-{m}")
        for dtype in (torch.float32, torch.bfloat16, torch.float64)
        for m in (1e-40, 1e-38, 1e-24, 1e-22, 1e-5, 1.0, 1e30, 3e38)
        if m > 64 * torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps  # representable
    ],
)
def test_norms_exact_at_every_magnitude(dtype: torch.dtype, magnitude: float) -> None:
    """Squares of ~1e-24 underflow float32 (‖A‖ = 0 made a changed tensor read "rel_l2 0") and
    squares of ~1e30 overflow it: every figure within 1e-6 of float64 on the same values, with
    no absolute slack, on changed and on identical chunks."""
    g = torch.Generator().manual_seed(7)
    u = torch.rand(6000, generator=g, dtype=torch.float64) * 2 - 1
    a = (u * magnitude / 1.01).to(dtype)
    b = (a.double() * (1 + 1e-3 * torch.randn(6000, generator=g, dtype=torch.float64))).to(dtype)
    b[:2000] = a[:2000]  # the first two chunks are identical: the norms-only path
    got = tensor_diff(a, b, chunk_elems=CHUNK)
    x, y = a.double(), b.double()
    want = {
        "norm_a": x.norm(),
        "norm_b": y.norm(),
        "diff_l2": (x - y).norm(),
        "dot": (x * y).sum(),
        "max_abs_diff": (x - y).abs().max(),
        "mean_abs_diff": (x - y).abs().mean(),
        "rel_l2": (x - y).norm() / x.norm(),
        "cosine": (x * y).sum() / (x.norm() * y.norm()),
    }
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value.item(), rel=1e-6, abs=0.0), (
            name,
            getattr(got, name),
            value.item(),
        )
    same = tensor_diff(a, a.clone(), chunk_elems=CHUNK)
    assert same.identical and same.norm_a == pytest.approx(x.norm().item(), rel=1e-6, abs=0.0)


def test_norms_exact_for_tiny_values_next_to_zeros_nan_and_overflow() -> None:
    """The rescaled sums keep what the plain ones got right: a zero-initialised side, NaN/Inf
    among tiny values (left out and counted), and differences past float32's range."""
    g = torch.Generator().manual_seed(8)
    tiny = torch.rand(5000, generator=g) * 1e-22
    zeros = torch.zeros(5000)
    with_nan = tiny.clone()
    with_nan[::999], with_nan[3::1777] = math.nan, math.inf
    huge = torch.full((5000,), 3e38)
    for a, b in [(zeros, tiny), (tiny, zeros), (with_nan, tiny * 1.5), (huge, -huge)]:
        got = tensor_diff(a, b, chunk_elems=CHUNK)
        keep = torch.isfinite(a) & torch.isfinite(b)
        x, y = a[keep].double(), b[keep].double()
        assert got.compared == int(keep.sum()) and got.nonfinite == a.numel() - got.compared
        for name, want in {
            "norm_a": x.norm(),
            "norm_b": y.norm(),
            "diff_l2": (x - y).norm(),
            "max_abs_diff": (x - y).abs().max(),
            "mean_abs_diff": (x - y).abs().mean(),
        }.items():
            assert getattr(got, name) == pytest.approx(want.item(), rel=1e-6, abs=0.0), name
        if x.norm() > 0 and y.norm() > 0:
            cosine = (x * y).sum() / (x.norm() * y.norm())
            assert got.cosine == pytest.approx(cosine.item(), rel=1e-6, abs=0.0)
    za = torch.complex(tiny, tiny.flip(0))  # complex64 chunks are summed again in complex128
    zb = za * (1 + 1e-3 * torch.randn(5000, generator=g))
    _check(za, zb, chunk=CHUNK)
    got = tensor_diff(za, zb, chunk_elems=CHUNK)
    assert got.norm_a == pytest.approx(za.to(torch.complex128).norm().item(), rel=1e-6, abs=0.0)
