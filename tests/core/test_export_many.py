"""Exports of many tiny tensors: verification compares them many at once (``verify._Batch``) and
must still catch any difference, name the first tensor that differs, and measure a cast exactly
as comparing one tensor at a time would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckpt_gui.core.chunks import drain
from ckpt_gui.core.export import ExportError, ExportOptions, iter_export
from ckpt_gui.core.export.plan import plan_export
from ckpt_gui.core.export.verify import iter_verify
from ckpt_gui.core.reader import open_checkpoint


def views_of_one_storage(count: int) -> dict[str, torch.Tensor]:
    base = torch.arange(16.0)
    return {f"v{i}": base[i % 16 :] for i in range(count)}


def test_views_of_one_storage_export_and_verify(tmp_path: Path) -> None:
    src, dst = tmp_path / "views.pt", tmp_path / "copy.pt"
    saved = views_of_one_storage(2000)
    torch.save(saved, src)
    with open_checkpoint(src) as ckpt:
        result = drain(iter_export(ckpt, dst, ExportOptions(mode="all", format="pt")))
    assert result.verification.tensors == 2000
    assert result.plan.shared == (2000 - 16, 15)  # tied repeats, and views of the one storage
    loaded = torch.load(dst, weights_only=True)
    assert {k: v.tolist() for k, v in loaded.items()} == {k: v.tolist() for k, v in saved.items()}
    storages = {v.untyped_storage().data_ptr() for v in loaded.values()}
    assert len(storages) == 1  # still one storage


def test_a_difference_among_many_names_the_first_tensor(tmp_path: Path) -> None:
    src, bad = tmp_path / "many.pt", tmp_path / "bad.pt"
    saved = {f"t{i}": torch.full((3,), float(i)) for i in range(500)}
    torch.save(saved, src)
    tampered = dict(saved)
    tampered["t321"] = torch.tensor([321.0, 321.0, 321.5])  # one value, deep in a batch
    tampered["t400"] = torch.tensor([0.0, 0.0, 0.0])
    torch.save(tampered, bad)
    with open_checkpoint(src) as ckpt:
        plan = plan_export(ckpt, ExportOptions(mode="all", format="pt"))
        with pytest.raises(ExportError, match="'t321' differs from the source"):
            drain(iter_verify(plan, ckpt, bad))


def test_negative_zero_and_nan_payloads_are_differences(tmp_path: Path) -> None:
    """Bytes are compared, not values: -0.0 for 0.0 is a difference, NaN for NaN is not."""
    src, bad = tmp_path / "z.pt", tmp_path / "z-bad.pt"
    saved = {f"t{i}": torch.tensor([0.0, float("nan")]) for i in range(50)}
    torch.save(saved, src)
    tampered = dict(saved)
    tampered["t7"] = torch.tensor([-0.0, float("nan")])
    torch.save(tampered, bad)
    with open_checkpoint(src) as ckpt:
        plan = plan_export(ckpt, ExportOptions(mode="all", format="pt"))
        drain(iter_verify(plan, ckpt, src))  # the file against itself: NaN equals NaN here
        with pytest.raises(ExportError, match="'t7' differs from the source"):
            drain(iter_verify(plan, ckpt, bad))


def test_a_cast_of_many_tiny_tensors_is_measured_as_one_by_one(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    saved = {f"w{i}": torch.randn(4, generator=g) * 10.0 ** (i % 9 - 4) for i in range(300)}
    saved["w_big"] = torch.tensor([1e5, -7e4, 1.0, 2.0])  # past float16: becomes ±inf
    saved["w_small"] = torch.tensor([1e-9, 3.0, 0.0, 1e-8])  # flushes to zero
    src, dst = tmp_path / "w.pt", tmp_path / "w16.pt"
    torch.save(saved, src)
    options = ExportOptions(mode="all", format="pt", dtype="float16", on_overflow="inf")
    with open_checkpoint(src) as ckpt:
        result = drain(iter_export(ckpt, dst, options))
    verification = result.verification
    assert verification.cast == "float16"
    rel, became_inf, flushed = 0.0, 0, 0
    for t in saved.values():
        a, b = t.double(), t.half().double()
        finite = a.isfinite()
        became_inf += int((finite & b.isinf()).sum())
        flushed += int(((a != 0) & (b == 0)).sum())
        kept = finite & b.isfinite() & (a != 0)
        if bool(kept.any()):
            rel = max(rel, ((b - a).abs() / a.abs())[kept].max().item())
    assert (verification.became_inf, verification.flushed) == (became_inf, flushed) == (2, 2)
    assert verification.max_rel_error == rel
