"""Statistics stay exact at every magnitude, from float32 subnormals to the edge of overflow.

Squares of values around 1e-24 underflow float32 and squares of values around 1e30 overflow it,
so std and L2 must not come from float32 sums of plain squares. Every figure is checked against
float64 on the very same values, relative error only (an absolute tolerance would hide a std of
0 reported for 2.8e-25).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import StatsResult, TensorStats, iter_stats, tensor_stats

RTOL = 1e-6
CHUNK = 1000
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
# 1e-40 is subnormal in float32 and bfloat16; 1e-22 is where Adam's exp_avg_sq lives; "max" is
# just under the dtype's largest value (3e38 for float64, whose float64 reference would
# overflow past it).
MAGNITUDES = [1e-40, 1e-38, 1e-24, 1e-22, 1e-5, 1.0, 1e30, "max"]


def _magnitude(dtype: torch.dtype, m: float | str) -> float:
    info = torch.finfo(dtype)
    if m == "max":
        return 0.999 * info.max if info.max < 1e39 else 3e38
    return float(m)


def _representable(dtype: torch.dtype, m: float | str) -> bool:
    """Whether values of magnitude ``m`` exist in ``dtype`` with a few bits of precision."""
    info = torch.finfo(dtype)
    smallest_subnormal = info.smallest_normal * info.eps
    return 64 * smallest_subnormal <= _magnitude(dtype, m) <= info.max


CASES = [
    pytest.param(dtype, m, id=f"{str(dtype).removeprefix('torch.')}-{m}")
    for dtype in DTYPES
    for m in MAGNITUDES
    if _representable(dtype, m)
]


def values(dtype: torch.dtype, m: float, kind: str, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` values of magnitude ``m``: ``signed`` spread over [-m, m]; ``positive`` like Adam's
    exp_avg_sq (squares of gradients, skewed, never negative); ``offset`` a mean that dwarfs
    the spread. Generated in float64 and rounded once to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    if kind == "signed":
        x = (2 * u - 1) * m
    elif kind == "positive":
        x = (0.1 + 0.9 * u) ** 2 * m
    else:
        x = (1 + 1e-2 * (2 * u - 1)) * (m / 1.02)
    return x.to(dtype)


def reference(t: torch.Tensor) -> dict[str, float]:
    """The statistics computed in float64 on the same values, over the finite ones."""
    x = t.double().reshape(-1)
    x = x[torch.isfinite(x)]
    return {
        "min": x.min().item(),
        "max": x.max().item(),
        "mean": x.mean().item(),
        "std": torch.std(x).item(),
        "l2": torch.linalg.vector_norm(x).item(),
        "absmax": x.abs().max().item(),
    }


def exact(want: float) -> object:
    """Equal to ``want`` within RTOL, with no absolute slack (pytest's default 1e-12 would take
    0 for 2.8e-25)."""
    return pytest.approx(want, rel=RTOL, abs=0.0)


def assert_exact(got: TensorStats, t: torch.Tensor) -> None:
    for name, want in reference(t).items():
        value = getattr(got, name)
        assert value is not None and math.isfinite(value), (name, value, want)
        assert value == exact(want), (name, value, want)


@pytest.mark.parametrize("kind", ["signed", "positive", "offset"])
@pytest.mark.parametrize("n", [700, 25_000], ids=["one-chunk", "many-chunks-threaded"])
@pytest.mark.parametrize(("dtype", "m"), CASES)
def test_stats_exact_at_every_magnitude(dtype: torch.dtype, m: float | str, n: int, kind: str):
    t = values(dtype, _magnitude(dtype, m), kind, n)
    assert_exact(tensor_stats(t, chunk_elems=CHUNK), t)


@pytest.mark.parametrize(("dtype", "m"), CASES)
def test_non_contiguous_layouts(dtype: torch.dtype, m: float | str) -> None:
    base = values(dtype, _magnitude(dtype, m), "positive", 150 * 210, seed=1).reshape(150, 210)
    for t in (base.t(), base[:, ::3], base[7]):  # permuted view, gaps (copies), a row
        assert_exact(tensor_stats(t, chunk_elems=CHUNK), t)


@pytest.mark.parametrize(("dtype", "m"), CASES)
def test_nan_and_inf_among_values_of_any_magnitude(dtype: torch.dtype, m: float | str) -> None:
    t = values(dtype, _magnitude(dtype, m), "signed", 12_000, seed=2)
    t[::1777] = math.nan  # spread over several chunks
    t[5::2999] = math.inf
    t[9::4001] = -math.inf
    got = tensor_stats(t, chunk_elems=CHUNK)
    assert (got.nan, got.posinf, got.neginf) == (7, 4, 3)
    assert_exact(got, t)


def test_subnormal_float32_values() -> None:
    """All values below float32's smallest normal (1.2e-38): still exact where float64 holds
    them exactly, which it does for every float32."""
    t = values(torch.float32, 1e-40, "positive", 30_000, seed=3)
    assert float(t.abs().max()) < torch.finfo(torch.float32).smallest_normal
    got = tensor_stats(t, chunk_elems=CHUNK)
    assert_exact(got, t)
    assert got.std is not None and got.std > 0


def test_issue_figures_for_1e_24() -> None:
    """The figures of the report: std 0 instead of 2.8e-25, L2 13% low."""
    g = torch.Generator().manual_seed(4)
    t = 1e-24 + 2.8e-25 * torch.randn(3000, generator=g)
    got = tensor_stats(t)
    assert torch.std(t.double()).item() == pytest.approx(2.8e-25, rel=0.1)
    assert got.std == exact(torch.std(t.double()).item())
    assert got.l2 == exact(torch.linalg.vector_norm(t.double()).item())


def test_mean_and_l2_where_the_float32_sum_overflows() -> None:
    t = torch.full((300_000,), 3.0e38, dtype=torch.float32)
    t[::2] = 3.3e38
    got = tensor_stats(t)  # default chunks: two workers, a sum of 1e44 per chunk
    ref = reference(t)
    assert got.mean == exact(ref["mean"])
    assert got.l2 == exact(ref["l2"])
    assert got.std == exact(ref["std"])
    assert got.nan == got.posinf == 0


def test_exp_avg_sq_read_from_a_real_file(tmp_path: Path) -> None:
    """Adam's second moments (~1e-22) next to ordinary weights, through ``iter_stats`` at the
    default chunk size: one tensor spans several chunks and both workers."""
    g = torch.Generator().manual_seed(5)
    grads = torch.randn(600, 1100, generator=g) * 1e-11
    tensors = {
        "weight": torch.randn(600, 1100, generator=g) * 0.02,
        "exp_avg": grads * 0.1,
        "exp_avg_sq": grads * grads * 1e-3,
        "exp_avg_sq_bf16": (grads * grads * 1e-3).bfloat16(),
        "huge": torch.randn(3000, generator=g) * 1e37,
    }
    save_file(tensors, tmp_path / "optim.safetensors")
    with open_checkpoint(tmp_path / "optim.safetensors") as ckpt:
        events = list(iter_stats(ckpt.tensors()))
    got = {e.key: e.stats for e in events if isinstance(e, StatsResult)}
    assert sorted(got) == sorted(tensors)
    for key, t in tensors.items():
        assert_exact(got[key], t)
