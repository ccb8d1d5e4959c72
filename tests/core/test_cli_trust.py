"""``--trust`` on the headless commands: a real load only when it is on the command line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint

TRUST_HELP = "allow running code from the file (only for files you trust)"


@dataclasses.dataclass
class RunConfig:
    lr: float = 0.1
    layers: int = 2


def config_file(path: Path, lr: float = 0.5) -> Path:
    """torch's safe loader refuses it (a dataclass from this module); a real load can rebuild it."""
    torch.manual_seed(0)
    torch.save({"config": RunConfig(lr=lr), "w": torch.randn(3, 4), "epoch": 2}, path)
    return path


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, json.loads(out.out) if out.out.strip() else {}


def test_inspect_trust_is_a_real_load(tmp_path: Path, capsys) -> None:
    path = config_file(tmp_path / "cfg.pt")
    code, plain = run_json(capsys, "inspect", str(path), "--json")
    assert code == 0 and plain["view"] == "structural"
    assert plain["view_note"].startswith("structural view: torch's safe loader refused this file")
    assert not any("structural view" in n for n in plain["notes"])  # said once, not twice
    code, trusted = run_json(capsys, "inspect", "--trust", str(path), "--json")
    assert code == 0 and trusted["view"] == "trusted"
    assert trusted["view_note"] == "loaded with code execution allowed, as you asked"
    config = next(v for v in trusted["values"] if v["key"] == "config")
    assert config["value"] == "RunConfig(lr=0.5, layers=2)"  # the object its class built
    assert [t["key"] for t in trusted["tensors"]] == ["w"]
    sd = config_file(tmp_path / "sd.pt")
    torch.save({"w": torch.ones(2)}, sd)
    code, safe = run_json(capsys, "inspect", str(sd), "--json", "--trust")
    assert code == 0 and safe["view"] == "weights_only"  # trust is never needed for these
    assert safe["view_note"] is None
    assert main(["inspect", str(path)]) == 0
    assert "  note: structural view: torch's safe loader refused" in capsys.readouterr().out


def test_stats_and_diff_trust(tmp_path: Path, capsys) -> None:
    a = config_file(tmp_path / "a.pt", lr=0.5)
    b = config_file(tmp_path / "b.pt", lr=0.25)
    code, stats = run_json(capsys, "stats", "--trust", str(a), "--json")
    assert code == 0
    w = torch.load(a, weights_only=False)["w"]
    assert stats["tensors"][0]["key"] == "w"
    assert stats["tensors"][0]["max"] == pytest.approx(w.max().item())
    code, diff = run_json(capsys, "diff", "--trust", str(a), str(b), "--json")
    assert code == 1  # the configs differ
    assert diff["identical"] == ["w"]
    changed = {v["key"]: v for v in diff["values_changed"]}
    assert changed["config"]["a"] == "RunConfig(lr=0.5, layers=2)"
    assert changed["config"]["b"] == "RunConfig(lr=0.25, layers=2)"


def test_export_cpu_copy_of_a_refused_file(tmp_path: Path, capsys) -> None:
    src = config_file(tmp_path / "cfg.pt")
    # Without trust, a CPU copy of the structural view would have to write a dict in place of
    # the config object, which loads as something else: refused, naming what and why.
    plain = tmp_path / "plain.pt"
    assert main(["export", str(src), str(plain), "--cpu-copy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        f"config is an instance of {__name__}.RunConfig, which ckpt-gui does not import from a "
        "file you have not trusted; export --params-only, or --trust if you trust the file"
    )
    assert not plain.exists()
    # With trust, the real objects are written back: the copy holds the class again.
    real = tmp_path / "real.pt"
    assert main(["export", "--trust", str(src), str(real), "--cpu-copy"]) == 0
    capsys.readouterr()
    with open_checkpoint(real) as copy:  # read back without trust: the structural view
        assert copy.view == "structural"
        assert copy.find("config").standin == f"{__name__}.RunConfig"
        assert copy.find("config.lr").value == 0.5


@pytest.mark.parametrize("command", ["inspect", "stats", "diff", "export"])
def test_trust_is_documented_in_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    expected = TRUST_HELP.replace("the file", "the files") if command == "diff" else TRUST_HELP
    assert f"--trust {expected}" in help_text
