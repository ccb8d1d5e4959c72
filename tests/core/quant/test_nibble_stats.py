"""Statistics of 4-bit GPTQ weights read from the packed words (the ``_nibbles`` kernel, no value
ever dequantized) are the statistics of the dequantized values: checked against float64 figures
of the reference values (computed in NumPy from the documented layout, ``writers.py``) and
against the dequantizing path, over the cases the kernel must get right: negative and zero
scales, zero codes of 16 (v1's stored 15 + 1), v2 zeros, bfloat16 scales, groups of 32 to a
whole column, outputs not a multiple of eight (the kernel's scalar tail), blocks of any width."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.core.chunks import drain
from ckpt_gui.core.quant import nibble_stats
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import StatsResult, _logical_steps, iter_stats
from tests.core.quant.writers import _awq_pack, _i32, _pack_rows, _save

KEY = "model.layers.0.mlp.down_proj"


def test_the_kernel_is_built_where_a_compiler_is() -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the dequantizing path serves")
    assert nibble_stats.available()


def write_gptq(
    folder: Path,
    *,
    out: int,
    cols: int,
    group: int,
    v2: bool = False,
    scale_dtype: torch.dtype = torch.float16,
    seed: int = 0,
) -> tuple[Path, np.ndarray]:
    """A GPTQ weight with every awkward value: negative, zero and tiny scales, zero codes from
    0 to 16, codes equal to their zero. Returns the file and the float32 reference (out, cols)."""
    r = np.random.default_rng(seed)
    groups = -(-cols // group)
    q = r.integers(0, 16, (cols, out))
    stored = r.integers(0, 16, (groups, out))  # v1 adds one: up to 16, which no code equals
    zeros = stored if v2 else stored + 1
    scales = r.standard_normal((groups, out)) * 0.02
    scales[0, :3] = 0.0
    scales[-1, -2:] = 2.0**-20  # float16 subnormal territory, exact in float32
    scales = torch.from_numpy(scales).to(scale_dtype)
    s32 = scales.float().numpy()
    g = np.arange(cols) // group
    ref = (q - zeros[g]).astype(np.float32) * s32[g]
    tensors = {
        f"{KEY}.qweight": _i32(_pack_rows(q)),
        f"{KEY}.qzeros": _i32(_pack_rows(np.pad(stored.T, ((0, -out % 8), (0, 0)))).T),
        f"{KEY}.scales": scales,
    }
    quant = {"quant_method": "gptq", "bits": 4, "group_size": group}
    if v2:
        quant["checkpoint_format"] = "gptq_v2"
    return _save(folder, tensors, quant), ref.T


def write_awq(
    folder: Path, *, out: int, cols: int, group: int, scale_dtype: torch.dtype = torch.float16
) -> tuple[Path, np.ndarray]:
    """An AWQ weight (outputs packed eight to a word in AWQ's order) with the same awkward
    values as ``write_gptq``'s."""
    r = np.random.default_rng(1)
    groups = -(-cols // group)
    q = r.integers(0, 16, (cols, out))
    zeros = r.integers(0, 16, (groups, out))
    scales = r.standard_normal((groups, out)) * 0.02
    scales[0, :3] = 0.0
    scales = torch.from_numpy(scales).to(scale_dtype)
    g = np.arange(cols) // group
    ref = (q - zeros[g]).astype(np.float32) * scales.float().numpy()[g]
    tensors = {
        f"{KEY}.qweight": _i32(_awq_pack(q)),
        f"{KEY}.qzeros": _i32(_awq_pack(zeros)),
        f"{KEY}.scales": scales,
    }
    quant = {"quant_method": "awq", "bits": 4, "group_size": group}
    return _save(folder, tensors, quant), ref.T


def assert_stats_of(stats, ref: np.ndarray, rel: float = 1e-12) -> None:
    """``rel``: 1e-12 for the packed words' figures; the dequantizing path sums float32
    squares, about 1e-7 relative (stats.py)."""
    v = ref.astype(np.float64)
    assert stats.dequantized and stats.numel == v.size
    assert stats.min == v.min() and stats.max == v.max()
    assert stats.zeros == int((v == 0).sum())
    assert stats.mean == pytest.approx(v.mean(), rel=rel, abs=1e-15)
    assert stats.std == pytest.approx(v.std(ddof=1), rel=rel)
    assert stats.l2 == pytest.approx(np.sqrt((v * v).sum()), rel=rel)


@pytest.mark.skipif(not nibble_stats.available(), reason="the kernel was not built")
@pytest.mark.parametrize(
    "out, cols, group, v2, scale_dtype",
    [
        (64, 512, 128, False, torch.float16),
        (37, 256, 64, False, torch.float16),  # 37 outputs: four of eight and a scalar tail of 5
        (24, 1024, 32, True, torch.float16),
        (16, 512, 512, False, torch.bfloat16),  # one group: a whole column, 64 packed rows
        (40, 384, 128, True, torch.bfloat16),
    ],
)
def test_moments_from_packed_words_are_the_dequantized_values_statistics(
    tmp_path: Path, out, cols, group, v2, scale_dtype
) -> None:
    path, ref = write_gptq(
        tmp_path, out=out, cols=cols, group=group, v2=v2, scale_dtype=scale_dtype
    )
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        assert lt.moment_blocks() is not None  # the kernel's path, not the dequantizing one
        assert np.array_equal(lt.dequantize().numpy(), ref)  # the fixture is what we think
        node = next(n for n in ckpt.tensors() if n.tensor.quant is not None)
        # Small chunks: many blocks, merged on both chunk workers.
        [stats] = [
            e.stats for e in iter_stats([node], chunk_elems=500) if isinstance(e, StatsResult)
        ]
        assert_stats_of(stats, ref)
        # The same figures as dequantizing every value and reducing it.
        plain = drain(_logical_steps(dataclasses.replace(lt, moments=None), 1000, None))
    assert (plain.min, plain.max, plain.zeros, plain.numel) == (
        stats.min,
        stats.max,
        stats.zeros,
        stats.numel,
    )
    # The dequantizing path sums float32 squares (about 1e-7 relative, stats.py); the packed
    # words' figures are exact up to float64 rounding (checked against float64 above).
    assert plain.mean == pytest.approx(stats.mean, rel=1e-9, abs=1e-15)
    assert plain.std == pytest.approx(stats.std, rel=1e-6)


@pytest.mark.skipif(not nibble_stats.available(), reason="the kernel was not built")
def test_each_block_of_outputs_gives_its_own_values_moments(tmp_path: Path) -> None:
    path, ref = write_gptq(tmp_path, out=53, cols=256, group=64)
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        for start, stop in [(0, 53), (0, 1), (5, 13), (8, 16), (45, 53), (7, 7)]:
            got = lt._moments(start, stop)
            v = ref[start:stop].astype(np.float64)
            assert got.count == v.size
            if v.size:
                assert (got.min, got.max, got.zeros) == (v.min(), v.max(), int((v == 0).sum()))
                assert got.mean == pytest.approx(v.mean(), rel=1e-12, abs=1e-15)
                assert got.m2 == pytest.approx(((v - v.mean()) ** 2).sum(), rel=1e-12)


@pytest.mark.skipif(not nibble_stats.available(), reason="the kernel was not built")
@pytest.mark.parametrize(
    "out, cols, group, scale_dtype",
    [
        (128, 512, 128, torch.float16),  # two blocks of eight words
        (72, 300, 64, torch.bfloat16),  # nine words (a scalar tail), a partial last group
        (16, 1024, 1024, torch.float16),  # one group of 1024 inputs (widened every 128)
    ],
)
def test_awq_moments_from_packed_words(tmp_path: Path, out, cols, group, scale_dtype) -> None:
    path, ref = write_awq(tmp_path, out=out, cols=cols, group=group, scale_dtype=scale_dtype)
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        assert lt.scheme == "awq" and lt.moment_blocks() is not None
        assert np.array_equal(lt.dequantize().numpy(), ref)
        node = next(n for n in ckpt.tensors() if n.tensor.quant is not None)
        events = iter_stats([node], chunk_elems=700)
        [stats] = [e.stats for e in events if isinstance(e, StatsResult)]
        assert_stats_of(stats, ref)
        # Blocks that start and end inside a word take only their own outputs.
        for start, stop in [(3, 13), (0, 5), (out - 11, out), (8, 8)]:
            got, v = lt._moments(start, stop), ref[start:stop].astype(np.float64)
            assert got.count == v.size
            if v.size:
                assert (got.min, got.max, got.zeros) == (v.min(), v.max(), int((v == 0).sum()))
                assert got.mean == pytest.approx(v.mean(), rel=1e-12, abs=1e-15)
                assert got.m2 == pytest.approx(((v - v.mean()) ** 2).sum(), rel=1e-12)


def test_weights_the_kernel_does_not_fit_take_the_dequantizing_path(tmp_path: Path) -> None:
    """float32 scales (whose products are not exact) and act-order groups: no moments read from
    packed words, and the figures are still the values'."""
    from safetensors.torch import load_file, save_file

    path, ref = write_gptq(tmp_path / "f32", out=32, cols=256, group=64)
    state = load_file(str(path))
    state[f"{KEY}.scales"] = state[f"{KEY}.scales"].float() * (1 + 2.0**-20)
    save_file(state, str(path))
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        assert lt.moment_blocks() is None
        ref = lt.dequantize().numpy()  # the values with the float32 scales
        node = next(n for n in ckpt.tensors() if n.tensor.quant is not None)
        [stats] = [e.stats for e in iter_stats([node]) if isinstance(e, StatsResult)]
    assert_stats_of(stats, ref, rel=1e-6)

    from tests.core.quant import writers as W

    path, refs = W.gptq(tmp_path / "act", act_order=True)
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        assert lt.moment_blocks() is None
        node = next(n for n in ckpt.tensors() if n.tensor.quant is not None)
        [stats] = [e.stats for e in iter_stats([node]) if isinstance(e, StatsResult)]
    assert_stats_of(stats, next(iter(refs.values())), rel=1e-6)


def test_the_kernel_refuses_parts_of_the_wrong_shape() -> None:
    words = torch.zeros(16, 8, dtype=torch.int32)
    zeros, scales = torch.zeros(2, 8, dtype=torch.int32), torch.ones(2, 8)
    if nibble_stats.available():
        assert nibble_stats.gptq_moments(words, zeros, scales, 8).count == 16 * 8 * 8
    for bad in (
        (words, zeros[:1], scales, 8),  # fewer groups than the rows make
        (words, zeros, scales[:, :7], 8),  # scales for 7 outputs of 8
        (words.float(), zeros, scales, 8),  # not int32 words
        (words.t(), zeros, scales, 8),  # a layout whose rows are not rows
        (words, zeros, scales.double(), 8),
    ):
        with pytest.raises(ValueError):
            nibble_stats.gptq_moments(*bad)
