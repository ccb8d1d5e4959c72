"""``ckpt-gui stats``: the JSON contract of docs/cli.md, the table, --filter and exit statuses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.cli import main
from tests.core.checkpoints import training_checkpoint

CLI_FIELDS = [
    "key", "dtype", "numel", "min", "max", "mean", "std", "l2", "absmax",
    "zeros", "nan", "posinf", "neginf",
]  # fmt: skip


def test_json_shape_and_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "train.pt"
    obj = training_checkpoint(path)
    assert main(["stats", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(path)
    first = out["tensors"][0]
    assert list(first)[: len(CLI_FIELDS)] == CLI_FIELDS
    w = obj["model_state_dict"]["linear1.weight"].double().numpy()
    assert first["key"] == "model_state_dict.linear1.weight"
    assert first["dtype"] == "float32" and first["numel"] == 50
    assert first["min"] == w.min() and first["max"] == w.max()
    assert first["mean"] == pytest.approx(w.mean(), rel=1e-9)
    assert first["std"] == pytest.approx(w.std(ddof=1), rel=1e-6)
    assert first["l2"] == pytest.approx(math.sqrt((w**2).sum()), rel=1e-6)
    assert first["absmax"] == np.abs(w).max() and first["zeros"] == 0
    keys = [t["key"] for t in out["tensors"]]
    assert "optimizer_state_dict.state.0.momentum_buffer" in keys
    assert "model_state_dict.bn.num_batches_tracked" in keys


def test_filter_nan_and_nulls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.pt"
    torch.save(
        {
            "enc.weight": torch.tensor([1.0, float("nan"), float("inf"), 0.0]),
            "enc.empty": torch.empty(0),
            "dec.weight": torch.ones(3),
        },
        path,
    )
    assert main(["stats", str(path), "--json", "--filter", "enc.*"]) == 0
    text = capsys.readouterr().out
    out = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    by_key = {t["key"]: t for t in out["tensors"]}
    assert list(by_key) == ["enc.weight", "enc.empty"]
    assert by_key["enc.weight"]["nan"] == 1 and by_key["enc.weight"]["posinf"] == 1
    assert by_key["enc.weight"]["max"] == 1.0 and by_key["enc.weight"]["zeros"] == 1
    assert by_key["enc.empty"]["mean"] is None and by_key["enc.empty"]["std"] is None


def test_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.pt"
    torch.save(
        {"a.weight": torch.tensor([-2.0, 0.0, 4.0]), "a.bad": torch.tensor([float("nan")])}, path
    )
    assert main(["stats", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("key"))
    assert header.split() == [
        "key",
        "dtype",
        "elements",
        "min",
        "max",
        "mean",
        "std",
        "l2",
        "zeros",
        "nan/inf",
    ]
    row = next(line for line in lines if line.startswith("a.weight")).split()
    assert row[:5] == ["a.weight", "float32", "3", "-2", "4"] and row[8] == "33.3%"
    assert row[7] == "4.472"  # sqrt(20)
    assert "1 nan" in next(line for line in lines if line.startswith("a.bad"))
    assert any("NaN or Inf in 1 tensor(s): a.bad" in line for line in lines)
    assert main(["stats", str(path), "--filter", "nothing*"]) == 0
    assert "no tensor matches 'nothing*'" in capsys.readouterr().out


def test_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ckpt-gui: error:")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert main(["stats", str(tmp_path / "junk.pt"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
