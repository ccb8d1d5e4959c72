"""Header-only commands never import torch: ``inspect`` of a safetensors file or a sharded
folder, ``scan`` of any file, ``--help`` and ``--version`` (each run in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.tree import ITEMSIZES, dtype_from_name

RUN = r"""
import contextlib, io, json, sys
from ckpt_gui.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --help and --version
        code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "out": out.getvalue()}))
"""


def run(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUN, *argv], capture_output=True, text=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    single = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(4, 4), "b": torch.zeros(4, dtype=torch.bfloat16)}, single)
    folder = tmp_path / "sharded"
    folder.mkdir()
    weight_map = {}
    for i in range(3):
        name = f"model-{i + 1:05d}-of-00003.safetensors"
        save_file({f"layers.{i}.weight": torch.ones(2, 2)}, folder / name)
        weight_map[f"layers.{i}.weight"] = name
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    pt = tmp_path / "sd.pt"
    torch.save({"w": torch.ones(2)}, pt)
    return {"single": single, "folder": folder, "pt": pt}


@pytest.mark.parametrize(
    "argv",
    [
        ("inspect", "{single}"),
        ("inspect", "{single}", "--json"),
        ("inspect", "{folder}"),
        ("scan", "{pt}"),
        ("scan", "{single}"),
        ("--help",),
        ("--version",),
        ("inspect", "--help"),
    ],
)
def test_no_torch(files: dict[str, Path], argv: tuple[str, ...]) -> None:
    got = run(*(a.format(**{k: str(v) for k, v in files.items()}) for a in argv))
    assert got["code"] == 0, got
    assert got["torch"] is False, f"{argv} imported torch"


def test_the_header_only_inspect_says_what_torch_would(files: dict[str, Path]) -> None:
    got = run("inspect", str(files["single"]), "--json")
    tensors = {t["key"]: t for t in json.loads(got["out"])["tensors"]}
    assert tensors["w"]["dtype"] == "float32" and tensors["w"]["nbytes"] == 64
    assert tensors["b"]["dtype"] == "bfloat16" and tensors["b"]["nbytes"] == 8


def test_a_torch_file_still_loads_with_torch(files: dict[str, Path]) -> None:
    got = run("inspect", str(files["pt"]))
    assert got["code"] == 0 and got["torch"] is True


@pytest.mark.parametrize("name", sorted(ITEMSIZES))
def test_itemsizes_agree_with_torch(name: str) -> None:
    assert ITEMSIZES[name] == dtype_from_name(name).itemsize
