"""Broadcast (stride-0) views: a few bytes of storage that describe huge tensors. Every
statistic, histogram and difference is exact and costs what the storage holds; exports keep
them as views or refuse to expand them."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.diff.metrics import tensor_diff
from ckpt_gui.core.histogram import histogram
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import tensor_stats
from tests.core.hostile import Storage, archive_pickle, tensor_call, write_archive


def _expanded(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    base = torch.tensor([[1.5], [-2.0], [float("nan")], [0.0], [float("inf")]])
    path = tmp_path / "expanded.pt"
    torch.save({"w": base.expand(5, 3000), "b": (base * 3).expand(5, 3000)}, path)
    return path, base


def test_stats_and_histogram_of_a_saved_expanded_tensor_are_exact(tmp_path: Path) -> None:
    path, base = _expanded(tmp_path)
    with open_checkpoint(path) as ckpt:
        w = ckpt.find("w").load()
        assert w.stride() == (1, 0)  # still a view after loading
        got, want = tensor_stats(w), tensor_stats(w.contiguous())
        assert got.numel == want.numel == 15000
        assert (
            (got.nan, got.posinf, got.zeros)
            == (want.nan, want.posinf, want.zeros)
            == (3000, 3000, 3000)
        )
        for field in ("min", "max", "mean", "std", "l2", "absmax"):
            assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-6)
        h, ref = histogram(w, exact=True), histogram(w.contiguous(), exact=True)
        assert h.counts.tolist() == ref.counts.tolist() and h.finite == 9000
        assert (h.nan, h.posinf, h.numel) == (ref.nan, ref.posinf, 15000)


def test_diff_of_expanded_tensors_matches_the_dense_diff(tmp_path: Path) -> None:
    path, _ = _expanded(tmp_path)
    with open_checkpoint(path) as ckpt:
        w, b = ckpt.find("w").load(), ckpt.find("b").load()
        got, want = tensor_diff(w, b), tensor_diff(w.contiguous(), b.contiguous())
        assert (got.compared, got.nonfinite, got.numel) == (want.compared, want.nonfinite, 15000)
        assert got.rel_l2 == pytest.approx(want.rel_l2)
        assert got.cosine == pytest.approx(want.cosine)
        assert got.max_abs_diff == want.max_abs_diff


@pytest.fixture()
def trillion(tmp_path: Path) -> Path:
    path = tmp_path / "broadcast.pt"
    obj = {"w": tensor_call(Storage("0", torch.FloatStorage, 1), 0, (10**12,), (0,))}
    write_archive(path, archive_pickle(obj), {"0": struct.pack("<f", 4.5)})
    return path


def test_a_trillion_element_view_of_four_bytes(trillion: Path, tmp_path: Path, capsys) -> None:
    import json

    assert main(["stats", str(trillion), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["tensors"][0]
    assert stats["numel"] == 10**12 and stats["mean"] == 4.5 and stats["std"] == 0.0
    assert stats["l2"] == pytest.approx(4.5 * 10**6)
    assert main(["diff", str(trillion), str(trillion)]) == 0
    capsys.readouterr()
    # safetensors would have to write 4 TB: refused before anything is written
    assert main(["export", str(trillion), str(tmp_path / "out.safetensors")]) == 2
    assert "broadcast view" in capsys.readouterr().err
    assert not list(tmp_path.glob("*out.safetensors*"))
    # torch.save keeps the view as its four bytes of storage
    assert main(["export", str(trillion), str(tmp_path / "out.pt"), "--cpu-copy"]) == 0
    copy = torch.load(tmp_path / "out.pt", weights_only=True)["w"]
    assert copy.shape == (10**12,) and copy.stride() == (0,) and copy[7].item() == 4.5


def test_overlapping_views_are_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "overlap.pt"
    obj = {"w": tensor_call(Storage("0", torch.FloatStorage, 8191), 0, (4096, 4096), (1, 1))}
    write_archive(path, archive_pickle(obj), {"0": bytes(4 * 8191)})
    assert main(["stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert "overlaps itself" in err and err.count("\n") == 1


def test_terminated_export_leaves_no_partial_file(tmp_path: Path) -> None:
    src = tmp_path / "src.pt"
    torch.save({"w": torch.randn(4096, 4096)}, src)  # 64 MB: the export takes a moment
    out = tmp_path / "out.safetensors"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ckpt_gui",
            "export",
            str(src),
            str(out),
            "--cpu-copy",
            "--format",
            "safetensors",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.safetensors*")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.terminate()
    proc.wait(timeout=60)
    assert [p.name for p in tmp_path.iterdir() if p.name != "src.pt" and p != out] == []
