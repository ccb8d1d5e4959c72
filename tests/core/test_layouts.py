"""Legitimate tensors beyond the dense ones: sparse COO/CSR and nested tensors open, measure
and export (as pt) from their stored values; meta tensors have no data to measure or write;
float4 and bits8 export; and a killed export leaves nothing behind for long."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint

warnings.filterwarnings("ignore", message=".*(sparse|nested).*", category=UserWarning)


def layouts() -> dict[str, torch.Tensor]:
    dense = torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, -4.0]])
    return {
        "coo": dense.to_sparse(),
        "csr": dense.to_sparse_csr(),
        "nested": torch.nested.nested_tensor([torch.tensor([1.0, 2.0]), torch.tensor([3.0])]),
        "dense": dense,
    }


def test_sparse_and_nested_tensors_open_and_measure_their_values(tmp_path: Path, capsys) -> None:
    path = tmp_path / "layouts.pt"
    torch.save(layouts(), path)
    with open_checkpoint(path) as ckpt:
        coo, csr, nested = (ckpt.find(k).tensor for k in ("coo", "csr", "nested"))
        assert (coo.layout, coo.shape, coo.stored) == ("sparse_coo", (2, 3), 3)
        assert (csr.layout, csr.shape, csr.stored) == ("sparse_csr", (2, 3), 3)
        assert (nested.layout, nested.shape) == ("nested", (3,))
        assert ckpt.find("coo").load().tolist() == [2.0, 3.0, -4.0]
    assert main(["stats", str(path), "--json"]) == 0
    stats = {t["key"]: t for t in json.loads(capsys.readouterr().out)["tensors"]}
    assert (stats["coo"]["min"], stats["coo"]["max"], stats["coo"]["numel"]) == (-4.0, 3.0, 3)
    assert stats["nested"]["l2"] == pytest.approx(14**0.5)


def test_sparse_and_nested_tensors_export_as_pt_and_refuse_safetensors(
    tmp_path: Path, capsys
) -> None:
    src, dst = tmp_path / "layouts.pt", tmp_path / "copy.pt"
    original = layouts()
    torch.save(original, src)
    args = ["export", str(src), str(dst), "--cpu-copy", "--dtype", "float16"]
    assert main(args) == 0
    copy = torch.load(dst, weights_only=True)
    assert copy["coo"].layout == torch.sparse_coo and copy["coo"].dtype == torch.float32  # uncast
    assert torch.equal(copy["coo"].to_dense(), original["dense"])
    assert torch.equal(copy["csr"].to_dense(), original["dense"])
    assert copy["dense"].dtype == torch.float16
    capsys.readouterr()
    assert main(["export", str(src), str(tmp_path / "c.safetensors"), "--cpu-copy"]) == 2
    err = capsys.readouterr().err
    assert "coo is a sparse_coo tensor; safetensors holds dense tensors only" in err


def test_meta_tensors_have_no_data(tmp_path: Path, capsys) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"m": torch.empty(3, 4, device="meta"), "w": torch.ones(2)}, path)
    assert main(["stats", str(path), "--json"]) == 0
    stats = {t["key"]: t for t in json.loads(capsys.readouterr().out)["tensors"]}
    assert stats["m"]["no_data"].startswith("a meta tensor") and stats["m"]["max"] is None
    assert stats["w"]["max"] == 1.0
    dst = tmp_path / "copy.safetensors"
    assert main(["export", str(path), str(dst), "--cpu-copy"]) == 0
    out = capsys.readouterr().out
    assert "no data: a meta tensor" in out


@pytest.mark.parametrize("dtype", [torch.float4_e2m1fn_x2, torch.bits8])
def test_packed_and_bit_dtypes_export_as_pt(tmp_path: Path, dtype: torch.dtype) -> None:
    src, dst = tmp_path / "raw.pt", tmp_path / "copy.pt"
    raw = torch.arange(8, dtype=torch.uint8).view(dtype)
    torch.save({"model": {"w": raw}}, src)
    assert main(["export", str(src), str(dst)]) == 0
    assert torch.equal(
        torch.load(dst, weights_only=True)["w"].view(torch.uint8), raw.view(torch.uint8)
    )


def test_a_killed_export_leaves_nothing_for_the_next_one(tmp_path: Path) -> None:
    src, dst = tmp_path / "w.pt", tmp_path / "out" / "w.safetensors"
    dst.parent.mkdir()
    torch.save({"model": {"w": torch.ones(4)}}, src)
    # A child starts an export and is killed (SIGKILL: no clean-up runs) mid-way.
    child = subprocess.Popen(
        [sys.executable, "-c", "import os, signal, tempfile, sys\n"
         "from pathlib import Path\n"
         "from ckpt_gui.core.export.atomic import AtomicFile\n"
         f"target = AtomicFile(Path({str(dst)!r}))\n"
         "target.__enter__()\n"
         "os.kill(os.getpid(), signal.SIGKILL)\n"],
    )  # fmt: skip
    assert child.wait(timeout=60) == -signal.SIGKILL
    left = [p.name for p in dst.parent.iterdir()]
    assert len(left) == 1 and left[0].endswith(".partial")
    # Another process's live temporary file is never touched.
    live = dst.parent / f".{dst.name}.pid{os.getppid()}.abc.partial"
    live.write_bytes(b"being written")
    assert main(["export", str(src), str(dst)]) == 0
    assert sorted(p.name for p in dst.parent.iterdir()) == sorted([dst.name, live.name])


def test_float4_statistics_are_of_its_values_and_bits_have_none(tmp_path: Path, capsys) -> None:
    raw = torch.tensor([0x21, 0xF7, 0x00, 0x8C] * 300, dtype=torch.uint8)
    path = tmp_path / "packed.pt"
    torch.save({"f4": raw.view(torch.float4_e2m1fn_x2), "b8": raw.view(torch.bits8)}, path)
    # e2m1: sign, two exponent bits, one mantissa bit; the low nibble first.
    table = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
    values = torch.tensor([table[n] for b in raw.tolist() for n in (b & 15, b >> 4)]).double()
    assert main(["stats", str(path), "--json"]) == 0
    stats = {t["key"]: t for t in json.loads(capsys.readouterr().out)["tensors"]}
    f4 = stats["f4"]
    assert f4["numel"] == values.numel() and f4["zeros"] == int((values == 0).sum())
    assert (f4["min"], f4["max"]) == (values.min().item(), values.max().item())
    assert f4["mean"] == pytest.approx(values.mean().item(), rel=1e-6)
    assert f4["std"] == pytest.approx(values.std().item(), rel=1e-6)
    assert f4["l2"] == pytest.approx(values.norm().item(), rel=1e-6)
    assert stats["b8"]["no_data"] == "bits8 holds raw bits, not numbers"
    assert stats["b8"]["min"] is None
