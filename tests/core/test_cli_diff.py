"""``ckpt-gui diff``: the report, the JSON contract of docs/cli.md, tolerances and exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.cli import main
from tests.core.checkpoints import training_checkpoint


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "encoder.weight": torch.randn(8, 4, generator=g),
        "encoder.bias": torch.randn(8, generator=g),
        "decoder.weight": torch.randn(4, 8, generator=g),
    }


@pytest.fixture
def changed_pair(tmp_path: Path) -> tuple[Path, Path]:
    a = {**_weights(), "old.weight": torch.ones(2), "epoch": 10}
    b = {**_weights(), "new.weight": torch.ones(3), "epoch": 20}
    b["encoder.weight"] = a["encoder.weight"] * 1.5
    b["encoder.bias"] = a["encoder.bias"].double()
    b["decoder.weight"] = a["decoder.weight"].t().contiguous()
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt"


def _json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["diff", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_json_shape(changed_pair, capsys) -> None:
    a, b = changed_pair
    code, out = _json(capsys, str(a), str(b))
    assert code == 1
    assert out["a"] == str(a) and out["b"] == str(b)
    assert out["only_a"] == ["old.weight"] and out["only_b"] == ["new.weight"]
    assert out["identical"] == []
    assert out["shape_mismatch"] == [
        {**out["shape_mismatch"][0], "key": "decoder.weight", "shape_a": [4, 8], "shape_b": [8, 4]}
    ]
    assert out["dtype_mismatch"][0] == {
        **out["dtype_mismatch"][0],
        "key": "encoder.bias",
        "dtype_a": "float32",
        "dtype_b": "float64",
    }
    [changed] = out["changed"]
    assert changed["key"] == "encoder.weight"
    assert changed["rel_l2"] == pytest.approx(0.5, rel=1e-6)
    assert changed["cosine"] == pytest.approx(1.0, abs=1e-6)
    w = _weights()["encoder.weight"].double()
    assert changed["max_abs_diff"] == pytest.approx((0.5 * w).abs().max().item(), rel=1e-6)
    assert changed["mean_abs_diff"] == pytest.approx((0.5 * w).abs().mean().item(), rel=1e-6)
    assert changed["within_tolerance"] is False
    assert out["values_changed"] == [{"key": "epoch", "a": 10, "b": 20}]
    assert out["match"] == {"mode": "auto", "strip_a": "", "strip_b": "", "matched": 4}
    assert out["equal"] is False
    assert out["largest_change"]["key"] == "encoder.weight"


def test_identical_files_exit_0(tmp_path: Path, capsys) -> None:
    save_file(_weights(), tmp_path / "a.safetensors")
    torch.save(_weights(), tmp_path / "b.pt")
    code, out = _json(capsys, str(tmp_path / "a.safetensors"), str(tmp_path / "b.pt"))
    assert code == 0 and out["equal"] is True
    assert sorted(out["identical"]) == sorted(_weights())
    assert out["changed"] == out["only_a"] == out["only_b"] == []


def test_tolerance_decides_the_exit_status(tmp_path: Path, capsys) -> None:
    a = _weights()
    b = {k: v + 1e-4 for k, v in a.items()}
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    paths = [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    assert main(["diff", *paths]) == 1
    capsys.readouterr()
    code, out = _json(capsys, *paths, "--atol", "1e-3")
    assert code == 0 and out["equal"] is True and out["atol"] == 1e-3
    assert len(out["changed"]) == 3  # still listed as changed, but within tolerance
    assert all(c["within_tolerance"] for c in out["changed"])
    assert main(["diff", *paths, "--rtol", "1e-9"]) == 1


def test_ddp_copy_auto_and_exact(tmp_path: Path, capsys) -> None:
    torch.save(_weights(), tmp_path / "plain.pt")
    torch.save({f"module.{k}": v for k, v in _weights().items()}, tmp_path / "ddp.pt")
    paths = [str(tmp_path / "ddp.pt"), str(tmp_path / "plain.pt")]
    code, out = _json(capsys, *paths)
    assert code == 0 and out["match"]["strip_a"] == "module."
    assert out["identical"][0] == "module.encoder.weight"
    code, out = _json(capsys, *paths, "--match", "exact")
    assert code == 1 and len(out["only_a"]) == len(out["only_b"]) == 3


def test_user_map(tmp_path: Path, capsys) -> None:
    training_checkpoint(tmp_path / "train.pt")
    obj = torch.load(tmp_path / "train.pt")
    torch.save({"net": obj["model_state_dict"]}, tmp_path / "net.pt")
    paths = [str(tmp_path / "train.pt"), str(tmp_path / "net.pt")]
    code, out = _json(capsys, *paths, "--map", "model_state_dict.=net.")
    assert out["match"] == {
        "mode": "map",
        "strip_a": "model_state_dict.",
        "strip_b": "net.",
        "matched": 9,
    }
    assert len(out["identical"]) == 9 and code == 1  # the optimizer is only in A


def test_readable_report(changed_pair, capsys) -> None:
    a, b = changed_pair
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "encoder.weight" in out and "float32→float64" in out
    assert "decoder.weight  [4, 8]  [8, 4]" in out
    assert "epoch          10  20" in out
    assert "only in A:\n  old.weight" in out
    assert "1 changed" in out and out.rstrip().endswith("the checkpoints differ")


def test_report_folds_a_one_sided_optimizer(tmp_path: Path, capsys) -> None:
    obj = training_checkpoint(tmp_path / "train.pt")
    torch.save(obj["model_state_dict"], tmp_path / "sd.pt")
    assert main(["diff", str(tmp_path / "train.pt"), str(tmp_path / "sd.pt")]) == 1
    out = capsys.readouterr().out
    assert "'model_state_dict.' stripped from A" in out
    assert "  optimizer_state_dict.* (" in out and "momentum_buffer" not in out
    assert "9 identical" in out


def test_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    torch.save(_weights(), tmp_path / "a.pt")
    a = str(tmp_path / "a.pt")
    for args in (
        [a, str(tmp_path / "missing.pt")],
        [a, a, "--atol", "-1"],
        [a, a, "--rtol", "x"],
        [a, a, "--match", "fuzzy"],
        [a, a, "--map", "module."],
        [a],
    ):
        assert main(["diff", *args]) == 2, args
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and captured.err.startswith("ckpt-gui: error:")
        assert "Traceback" not in captured.err


def test_console_script(tmp_path: Path) -> None:
    torch.save(_weights(), tmp_path / "a.pt")
    torch.save(_weights(1), tmp_path / "b.pt")
    result = subprocess.run(
        [sys.executable, "-m", "ckpt_gui", "diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "3 tensors: 0 identical, 3 changed" in result.stdout


def test_changed_values_are_listed_like_changed_tensors(tmp_path: Path, capsys) -> None:
    """The readable report lists at most 30 changed values, then how many more; --all lists
    every one (two training runs' configs differ in many small values)."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.ones(2), "cfg": {f"v{i}": i for i in range(45)}}, a)
    torch.save({"w": torch.ones(2), "cfg": {f"v{i}": i + 1 for i in range(45)}}, b)
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert sum(line.startswith("cfg.v") for line in out.splitlines()) == 30
    assert "… and 15 more (--all lists them)" in out
    assert main(["diff", str(a), str(b), "--all"]) == 1
    out = capsys.readouterr().out
    assert sum(line.startswith("cfg.v") for line in out.splitlines()) == 45
    assert "more (--all lists them)" not in out
