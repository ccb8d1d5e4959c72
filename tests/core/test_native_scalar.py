"""The C kernels' scalar loops (what a machine or compiler without AVX2 runs) give the figures
their AVX2 paths give: each kernel is built here a second time with ``CKPT_GUI_NO_AVX2`` and both
builds are run on the same data."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from ckpt_gui.core.quant import nibble_stats
from ckpt_gui.core.run import positions

ROOT = Path(__file__).resolve().parents[2] / "ckpt_gui" / "core"
COMPILER = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(
    COMPILER is None or not nibble_stats.available() or positions._positions is None,
    reason="no C compiler, or the kernels were not built",
)


def scalar_build(source: Path, name: str, tmp_path: Path):  # noqa: ANN201 - a module
    target = tmp_path / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [COMPILER, "-O2", "-shared", "-fPIC", "-DCKPT_GUI_NO_AVX2", f"-I{include}", str(source),
         "-o", str(target)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    spec = importlib.util.spec_from_file_location(name, target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def test_nibble_moments_scalar_equal_avx2(tmp_path: Path) -> None:
    scalar = scalar_build(ROOT / "quant" / "_nibbles.c", "_nibbles", tmp_path)
    g = torch.Generator().manual_seed(0)
    words = torch.randint(-(2**31), 2**31 - 1, (64, 40), dtype=torch.int32, generator=g)
    zeros = torch.randint(0, 17, (4, 40), dtype=torch.int32, generator=g)
    scales = torch.randn(4, 40, generator=g).half().float()
    scales[0, :3] = 0
    args = (words.data_ptr(), 160, 64, 40, 16, zeros.data_ptr(), scales.data_ptr())
    fast = nibble_stats._nibbles.moments(*args)  # type: ignore[union-attr]
    slow = scalar.moments(*args)
    assert (fast[0], fast[3], fast[4], fast[5]) == (slow[0], slow[3], slow[4], slow[5])
    assert close(fast[1], slow[1]) and close(fast[2], slow[2])
    awq_zeros = torch.randint(0, 16, (4, 40), dtype=torch.int32, generator=g)
    awq = (words[:, :5], awq_zeros, scales)
    fast = nibble_stats.awq_moments(*awq, 16, 3, 37)
    slow = scalar.awq_moments(
        words.data_ptr(), 160, 64, 5, 16, awq_zeros.data_ptr(), scales.data_ptr(), 3, 37
    )
    assert (fast.count, fast.min, fast.max, fast.zeros) == (slow[0], slow[3], slow[4], slow[5])
    assert close(fast.mean, slow[1]) and close(fast.m2, slow[2])


def test_position_scalar_equals_avx2(tmp_path: Path) -> None:
    scalar = scalar_build(ROOT / "run" / "_positions.c", "_positions", tmp_path)
    g = torch.Generator().manual_seed(1)
    n = 3 * 4096 + 37
    xs = [torch.randn(n, generator=g) * (1 + i) for i in range(4)]
    xs.append((torch.rand(n, generator=g) + 1) * 1e-22)  # float32 squares underflow
    xs.append((torch.rand(n, generator=g) + 1) * 1.1e-22)
    xs[2][5] = float("nan")
    points, pairs, triples = [0, 1, 2, 3, 4], [(0, 1), (1, 3), (4, 5)], [(0, 1, 3), (3, 4, 5)]
    fast = positions.native_position(xs, points, pairs, triples)
    slow = scalar.position([x.data_ptr() for x in xs], n, points, pairs, triples)
    for f, s in zip(fast[0], slow[0]):
        assert (f[0], f[3], f[4], f[5], f[6]) == (s[0], s[3], s[4], s[5], s[6])
        # Means agree to float32 rounding of the values' scale (AVX2 sums four in float32).
        assert abs(f[1] - s[1]) <= 1e-7 * max(abs(f[3]), abs(f[4]))
        assert abs(f[2] - s[2]) <= 1e-6 * max(abs(f[2]), abs(s[2]))
    for (fs, fsame), (ss, ssame) in zip(fast[1], slow[1]):
        assert fsame == ssame and abs(fs - ss) <= 1e-6 * max(abs(fs), abs(ss))
    for f, s in zip(fast[2], slow[2]):
        assert abs(f - s) <= 1e-6 * max(abs(f), abs(s), 1e-300)
