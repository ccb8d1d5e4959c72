"""``ckpt-gui inspect``: the table, the JSON contract of docs/cli.md, and exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from ckpt_gui.cli import main
from tests.core.checkpoints import save_as_if_on_gpu, training_checkpoint


def test_json_shape(tmp_path: Path, capsys) -> None:
    path = tmp_path / "train.pt"
    training_checkpoint(path)
    assert main(["inspect", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(path) and out["format"] == "torch-zip"
    first = out["tensors"][0]
    assert first == {
        **first,
        "key": "model_state_dict.linear1.weight",
        "dtype": "float32",
        "shape": [5, 10],
        "numel": 50,
        "nbytes": 200,
        "device": "cpu",
        "role": "parameter",
        "shares_storage_with": None,
        "param": None,
    }
    momentum = next(
        t for t in out["tensors"] if t["key"] == "optimizer_state_dict.state.0.momentum_buffer"
    )
    assert momentum["role"] == "optimizer_state" and momentum["param"] == "linear1.weight"
    values = {v["key"]: v["value"] for v in out["values"]}
    assert values["epoch"] == 7 and values["loss"] == 0.25
    assert out["totals"]["tensors"] == len(out["tensors"])
    assert out["totals"]["nbytes"] == sum(t["nbytes"] for t in out["tensors"])


def test_json_never_emits_nan(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nan.pt"
    torch.save({"loss": float("nan"), "w": torch.ones(1)}, path)
    assert main(["inspect", str(path), "--json"]) == 0
    text = capsys.readouterr().out
    out = json.loads(text)  # strict JSON: NaN would not parse with allow_nan off below
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert {v["key"]: v["value"] for v in out["values"]}["loss"] == "nan"


def test_table_names_device_and_totals(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gpu.pt"
    save_as_if_on_gpu({"w": torch.zeros(3, 4)}, path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "saved on cuda:0" in out
    assert "1 tensors, 12 elements, 48 B" in out


def test_errors_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "looks like a text file" in err
    assert main(["inspect"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_console_script_and_module_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save({"a.weight": torch.ones(2, 2)}, path)
    result = subprocess.run(
        [sys.executable, "-m", "ckpt_gui", "inspect", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tensors"][0]["key"] == "a.weight"
    missing = subprocess.run(
        [sys.executable, "-m", "ckpt_gui", "inspect", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr and missing.stderr.count("\n") == 1


def test_a_command_ends_its_process_with_all_its_output(tmp_path: Path) -> None:
    # The process ends without Python's teardown (``cli._end_process``): output that fills
    # many buffers still arrives whole, through a pipe that is read slowly, and the status too.
    path = tmp_path / "many.pt"
    torch.save({f"layer.{i}.weight": torch.ones(2) for i in range(3000)}, path)
    command = [sys.executable, "-m", "ckpt_gui", "inspect", str(path), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = []
    while chunk := proc.stdout.read(4096):  # type: ignore[union-attr]
        chunks.append(chunk)
    assert proc.wait(timeout=120) == 0
    report = json.loads(b"".join(chunks))
    assert len(report["tensors"]) == 3000 and report["tensors"][-1]["key"] == "layer.2999.weight"


def test_keys_from_the_file_cannot_drive_the_terminal(tmp_path: Path, capsys) -> None:
    path = tmp_path / "escape.pt"
    torch.save({"evil\x1b[2J\x1b]0;pwned\x07.weight": torch.ones(1), "note": "bell\x07"}, path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[2J" in out
