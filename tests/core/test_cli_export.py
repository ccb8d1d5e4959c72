"""``ckpt-gui export``: the command line of docs/cli.md, its summary, and exit statuses."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ckpt_gui.cli import main
from ckpt_gui.core.units import human_bytes
from tests.core.checkpoints import save_as_if_on_gpu, training_checkpoint
from tests.core.test_export_write import folder_names, unchanged


def test_params_only_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "train.pt", tmp_path / "model.safetensors"
    training_checkpoint(src, "adam")
    with unchanged(src):
        assert main(["export", str(src), str(dst), "--params-only"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"exported to {dst}"
    assert lines[1] == "kept 9 tensors (356 B)"
    assert lines[2].startswith("dropped 18 tensors (")
    assert "optimizer state 18" in lines[2] and lines[2].endswith("and 20 values")
    sizes = human_bytes(src.stat().st_size), human_bytes(dst.stat().st_size)
    assert lines[3] == f"size: {sizes[0]} before, {sizes[1]} after"
    assert lines[4] == "verified: all 9 tensors equal the source exactly"
    assert len(load_file(dst)) == 9  # the format followed DST's extension


def test_cpu_copy_with_globs_cast_and_prefix(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "gpu.pt", tmp_path / "cpu.pt"
    save_as_if_on_gpu(
        {"net": {"module.a": torch.ones(3), "module.b": torch.zeros(2)}, "step": 4}, src
    )
    args = ["export", str(src), str(dst), "--cpu-copy", "--dtype", "float16"]
    args += ["--exclude", "*.b", "--strip-prefix", "module.", "--format", "pt"]
    with unchanged(src):
        assert main(args) == 0
    loaded = torch.load(dst, weights_only=True)
    assert loaded == {"net": {"a": loaded["net"]["a"]}, "step": 4}
    assert loaded["net"]["a"].dtype == torch.float16 and loaded["net"]["a"].device.type == "cpu"
    out = capsys.readouterr().out
    assert "dropped 1 tensor (8 B: excluded by --exclude 1)" in out
    assert "equal the source cast to float16 (max relative error 0)" in out


def test_state_dict_choice_and_shards(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "two.pt", tmp_path / "ema-shards"
    torch.save({"model": {"w": torch.zeros(300)}, "ema": {"w": torch.ones(300)}}, src)
    with unchanged(src):
        assert (
            main(["export", str(src), str(dst), "--state-dict", "ema", "--shard-size", "1KB"]) == 0
        )
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert index == {
        "metadata": {"total_size": 1200},
        "weight_map": {"w": "model-00001-of-00001.safetensors"},
    }
    assert torch.equal(load_file(dst / "model-00001-of-00001.safetensors")["w"], torch.ones(300))
    out = capsys.readouterr().out
    assert "1 shard and model.safetensors.index.json" in out
    assert out.endswith("note: the file also holds 'model'; choose one with --state-dict\n")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard-size", "lots"], "--shard-size: not a size: 'lots' (try 500MB or 5GB)"),
        (["--state-dict", "nope"], "no state_dict 'nope' (choose from: 'model_state_dict')"),
        (["--cpu-copy", "--state-dict", "x"], "--state-dict chooses what --params-only keeps"),
        (["--params-only", "--cpu-copy"], "not allowed with argument"),
        (["--dtype", "int8"], "invalid choice: 'int8'"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    src = tmp_path / "train.pt"
    training_checkpoint(src)
    with unchanged(src):
        assert main(["export", str(src), str(tmp_path / "out.pt"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert folder_names(tmp_path) == ["train.pt"]


def test_refusals_exit_2(tmp_path: Path, capsys) -> None:
    src = tmp_path / "train.pt"
    training_checkpoint(src)
    (tmp_path / "link.pt").symlink_to(src)
    with unchanged(src):
        for dst in (src, tmp_path / "link.pt"):
            assert main(["export", str(src), str(dst)]) == 2
            assert capsys.readouterr().err == (
                f"ckpt-gui: error: {dst}: this is the source file; choose another destination\n"
            )
    assert main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "o.pt")]) == 2
    assert "no such file" in capsys.readouterr().err


def _limit_file_size() -> None:
    # Writes past 64 KB fail with EFBIG (Python ignores SIGXFSZ): a real failed write mid-file.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    src, out = tmp_path / "big.pt", tmp_path / "out"
    out.mkdir()
    torch.save({f"w{i}": torch.randn(128, 128) for i in range(4)}, src)  # 256 KB
    with unchanged(src):
        result = subprocess.run(
            [sys.executable, "-m", "ckpt_gui", "export", str(src), str(out / "x.pt")],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_file_size,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"ckpt-gui: error: {out / 'x.pt'}: cannot write the export (File too large); "
        "nothing was written\n"
    )
    assert folder_names(out) == []
