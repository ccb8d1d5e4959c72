"""Quantized tensors from a real file: statistics of the dequantized values, and exports that
keep them exactly (pt) or say clearly why they cannot (safetensors)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import tensor_stats


@pytest.fixture()
def quantized(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates creating quantized tensors
        tensors = {
            "per_tensor": torch.quantize_per_tensor(
                torch.randn(100, 30, generator=g), 0.05, 3, torch.qint8
            ),
            "per_channel": torch.quantize_per_channel(
                torch.randn(8, 30, generator=g),
                torch.rand(8, generator=g) * 0.1 + 0.01,
                torch.zeros(8, dtype=torch.long),
                0,
                torch.quint8,
            ),
        }
    path = tmp_path / "quantized.pt"
    torch.save(tensors, path)
    return path, tensors


def test_statistics_are_of_the_dequantized_values(quantized) -> None:
    path, tensors = quantized
    with open_checkpoint(path) as ckpt:
        for node in ckpt.tensors():
            ref = tensors[node.key].dequantize().double().numpy()
            stats = tensor_stats(node.load())
            assert stats.dequantized
            assert stats.mean == pytest.approx(ref.mean(), rel=1e-5)
            assert stats.std == pytest.approx(ref.std(ddof=1), rel=1e-5)
            assert stats.min == pytest.approx(ref.min()) and stats.max == pytest.approx(ref.max())
            assert stats.zeros == int((ref == 0).sum())
            assert stats.l2 == pytest.approx(np.linalg.norm(ref), rel=1e-5)


def test_pt_export_keeps_them_exactly_and_safetensors_says_why_not(
    quantized, tmp_path: Path, capsys
) -> None:
    path, tensors = quantized
    out = tmp_path / "copy.pt"
    assert main(["export", str(path), str(out), "--cpu-copy"]) == 0
    copy = torch.load(out, weights_only=True)
    for key, t in tensors.items():
        assert copy[key].qscheme() == t.qscheme()
        assert torch.equal(copy[key].int_repr(), t.int_repr())
    capsys.readouterr()
    assert main(["export", str(path), str(tmp_path / "x.safetensors")]) == 2
    assert "cannot be stored in safetensors" in capsys.readouterr().err
