"""A cast never hides what it does: overflow to ±inf is refused unless chosen, flushes to zero
are counted, and the verified line reports the real relative error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ckpt_gui.cli import main
from ckpt_gui.core.chunks import drain
from ckpt_gui.core.export import ExportError, ExportOptions, iter_export
from ckpt_gui.core.export.check import iter_cast_check
from ckpt_gui.core.export.plan import plan_export
from ckpt_gui.core.reader import open_checkpoint
from tests.core.test_export_write import unchanged

F16_MAX = torch.finfo(torch.float16).max


def wide_values(path: Path) -> dict[str, torch.Tensor]:
    tensors = {
        "ok": torch.tensor([1.0, -2.5, 0.0, 3.0]),
        "big": torch.tensor([1e5, -3e38, 2.0, float("inf"), float("nan")]),
        "tiny": torch.tensor([1e-9, -1e-10, 0.5, 0.0]),
        "steps": torch.arange(4),
    }
    torch.save({"model": tensors}, path)
    return tensors


def test_float16_overflow_is_refused_by_default(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "w.pt", tmp_path / "w16.safetensors"
    wide_values(src)
    with unchanged(src):
        assert main(["export", str(src), str(dst), "--dtype", "float16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].endswith(
        "model.big: 2 finite values would become ±inf in float16; "
        "choose --on-overflow clamp or inf to proceed"
    )
    assert not dst.exists()


def test_clamp_saturates_and_says_so(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "w.pt", tmp_path / "w16.safetensors"
    source = wide_values(src)
    args = ["export", str(src), str(dst), "--dtype", "float16", "--on-overflow", "clamp"]
    assert main(args) == 0
    out = capsys.readouterr().out
    written = load_file(dst)
    big = written["big"].float()
    assert big[:3].tolist() == [F16_MAX, -F16_MAX, 2.0]
    assert big[3] == float("inf") and big[4].isnan()  # source inf and NaN stay what they were
    assert written["tiny"].tolist()[:2] == [0.0, -0.0]
    assert written["steps"].dtype == torch.int64  # integers are never cast
    assert "cast: model.big: 2 finite values become ±inf in float16" in out
    assert "cast: model.tiny: 2 non-zero values flush to zero in float16" in out
    # The verified line measures the result: flushed values are off by 100 %, clamped ones
    # by |65504 - 1e5| / 1e5.
    expected = max(1.0, abs(F16_MAX - 1e5) / 1e5)
    line = next(x for x in out.splitlines() if x.startswith("verified:"))
    assert line == (
        f"verified: all 4 tensors equal the source cast to float16 (max relative error "
        f"{expected:.3g}; 2 values clamped to the largest finite value; 2 values flushed to zero)"
    )
    assert "equal the source exactly" not in out
    assert torch.equal(written["ok"], source["ok"].half())


def test_inf_writes_inf_knowingly(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "w.pt", tmp_path / "w16.pt"
    wide_values(src)
    args = ["export", str(src), str(dst), "--dtype", "float16", "--on-overflow", "inf"]
    assert main(args) == 0
    out = capsys.readouterr().out
    big = torch.load(dst, weights_only=True)["big"]
    assert big[:2].tolist() == [float("inf"), float("-inf")]
    assert "2 values became ±inf" in out


def test_bfloat16_overflow_near_float32_max(tmp_path: Path) -> None:
    src, dst = tmp_path / "w.pt", tmp_path / "bf.safetensors"
    torch.save({"model": {"w": torch.tensor([3.4e38, 1.0])}}, src)
    with pytest.raises(ExportError, match=r"model.w: 1 finite values would become ±inf in bf"):
        drain(iter_export(src, dst, ExportOptions(dtype="bfloat16", format="safetensors")))
    options = ExportOptions(dtype="bfloat16", format="safetensors", on_overflow="clamp")
    result = drain(iter_export(src, dst, options))
    assert load_file(dst)["w"][0].item() == torch.finfo(torch.bfloat16).max
    assert result.verification.clamped == 1


def test_the_check_counts_what_the_preview_shows(tmp_path: Path) -> None:
    src = tmp_path / "w.pt"
    wide_values(src)
    with open_checkpoint(src) as ckpt:
        plan = plan_export(ckpt, ExportOptions(dtype="float16"))
        effects = drain(iter_cast_check(plan, ckpt))
        assert {k: (e.overflow, e.underflow) for k, e in effects.items()} == {
            "model.big": (2, 0),
            "model.tiny": (0, 2),
        }
        widening = plan_export(ckpt, ExportOptions(dtype="float32"))
        assert drain(iter_cast_check(widening, ckpt)) == {}


def test_broadcast_view_counts_every_repeated_value(tmp_path: Path) -> None:
    src = tmp_path / "w.pt"
    torch.save({"model": {"w": torch.tensor([1e6, 1.0]).expand(1000, 2)}}, src)
    with open_checkpoint(src) as ckpt:
        plan = plan_export(ckpt, ExportOptions(dtype="float16", format="pt"))
        effects = drain(iter_cast_check(plan, ckpt))
    assert effects["model.w"].overflow == 1000


@pytest.mark.parametrize("target", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("source", [torch.float32, torch.float64, torch.bfloat16])
def test_the_measured_cast_is_the_float64_figure_at_every_magnitude(
    source: torch.dtype, target: torch.dtype
) -> None:
    from ckpt_gui.core.export.casting import cast
    from ckpt_gui.core.export.verify import Verification, _measure_cast

    g = torch.Generator().manual_seed(5)
    scales = torch.logspace(-45, 38, 200_000, dtype=torch.float64)
    wide = (torch.randn(200_000, generator=g, dtype=torch.float64) * scales).to(source)
    wide[:6] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-40])
    wide[6:9] = torch.finfo(source).max  # beyond every target's range
    # In the targets' normal range nothing flushes (a ratio of exactly 1): the largest ratio is
    # then a rounding error, which float32 alone would not give to float64's last bit.
    normal = (torch.randn(200_000, generator=g, dtype=torch.float64) * 100).to(source)
    for values, policy in ((wide, "inf"), (wide, "clamp"), (normal, "inf")):
        written = cast(values, target, policy)
        measured = Verification(0, 0, None)
        _measure_cast(values, written, measured)
        limit = torch.finfo(target).max
        a, b = values.double(), written.double()
        finite, kept = a.isfinite(), a.isfinite() & b.isfinite() & (a != 0)
        expected_rel = ((b - a).abs() / a.abs())[kept].max().item()
        assert measured.max_rel_error == expected_rel  # the same float64 figure, exactly
        assert measured.became_inf == int((finite & b.isinf()).sum())
        assert measured.clamped == int((finite & (a.abs() > limit) & b.isfinite()).sum())
        assert measured.flushed == int(((a != 0) & (b == 0)).sum())
        if policy == "clamp" and limit < torch.finfo(source).max:
            assert measured.clamped >= 3 and measured.became_inf == 0
