"""Tied weights (the very same bytes under two keys) are told apart from distinct views of one
storage (an LSTM's packed buffer, slices of one tensor): marks, inspect and the export say which."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint


def shared_file(path: Path) -> None:
    flat = torch.arange(12.0)
    embed = torch.randn(5, 3)
    torch.save(
        {
            "model": {
                "embed.weight": embed,
                "head.weight": embed,  # tied: the same tensor
                "gates.0": flat[0:6].view(2, 3),  # two halves of one packed buffer
                "gates.1": flat[6:12].view(2, 3),
            }
        },
        path,
    )


def test_tied_and_packed_are_told_apart(tmp_path: Path, capsys) -> None:
    path = tmp_path / "shared.pt"
    shared_file(path)
    with open_checkpoint(path) as ckpt:
        head, gate = ckpt.find("model.head.weight"), ckpt.find("model.gates.1")
        assert (head.shares_storage_with, head.tied) == ("model.embed.weight", True)
        assert (gate.shares_storage_with, gate.tied) == ("model.gates.0", False)
        assert not ckpt.find("model.gates.0").tied
    assert main(["inspect", str(path), "--json"]) == 0
    tensors = {t["key"]: t for t in json.loads(capsys.readouterr().out)["tensors"]}
    assert tensors["model.head.weight"]["tied"] is True
    assert tensors["model.gates.1"]["tied"] is False
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "tied to model.embed.weight" in out
    assert "shares a storage with model.gates.0 (distinct bytes)" in out


def test_the_export_says_which_it_kept(tmp_path: Path, capsys) -> None:
    path, dst = tmp_path / "shared.pt", tmp_path / "copy.pt"
    shared_file(path)
    assert main(["export", str(path), str(dst), "--format", "pt"]) == 0
    out = capsys.readouterr().out
    assert "1 tied tensor still tied; 1 view of shared storages kept as views" in out
    copy = torch.load(dst, weights_only=True)
    assert copy["head.weight"].data_ptr() == copy["embed.weight"].data_ptr()
    assert (
        copy["gates.1"].untyped_storage().data_ptr() == copy["gates.0"].untyped_storage().data_ptr()
    )
