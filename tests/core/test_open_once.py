"""Opening a checkpoint reads each file through one open file on our side: detection, the scan
and the zip checks share it; only torch's own loader (or the memory map) opens it again.
Counted with Python's audit hook ("open" events), in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

COUNT_OPENS = r"""
import json, os, sys
target = os.path.realpath(sys.argv[1])
opens = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        name = os.fsdecode(args[0])
        if os.path.realpath(name) == target:
            opens.append(name)
sys.addaudithook(hook)
from ckpt_gui.core.reader import open_checkpoint
with open_checkpoint(sys.argv[1]) as ckpt:
    ckpt.root.tensors()
print(json.dumps(len(opens)))
"""


def opens_of(path: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", COUNT_OPENS, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("legacy", [False, True])
def test_a_torch_file_is_opened_once_by_us_and_once_by_torch(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "sd.pt"
    torch.save(
        {"w": torch.ones(3), "b": torch.zeros(2)}, path, _use_new_zipfile_serialization=not legacy
    )
    # Was four: detection, its zip check, the scan, then torch.load.
    assert opens_of(path) == 2


def test_a_safetensors_file_is_opened_by_detection_and_its_reader(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(3)}, path)
    assert opens_of(path) <= 3  # detection, the header, the memory map
