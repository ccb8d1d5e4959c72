"""safetensors headers as they come: every dtype the format and torch define, and lying shapes,
offsets and nesting refused with one clear line instead of an "unexpected" crash."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint


def write_raw(path: Path, header: str, data: bytes = bytes(8)) -> Path:
    text = header.encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_mxfp4_blocks_and_e8m0_scales_open_and_round_trip(tmp_path: Path) -> None:
    """gpt-oss style: ``*_blocks`` in F4 (two values a byte), ``*_scales`` in F8_E8M0."""
    blocks = torch.arange(8, dtype=torch.uint8).view(torch.float4_e2m1fn_x2).reshape(2, 4)
    scales = torch.tensor([1.0, 2.0, 0.5]).to(torch.float8_e8m0fnu)
    src = tmp_path / "mx.safetensors"
    save_file({"w_blocks": blocks, "w_scales": scales}, src)
    header = json.loads(src.read_bytes()[8 : 8 + struct.unpack("<Q", src.read_bytes()[:8])[0]])
    assert header["w_blocks"]["dtype"] == "F4" and header["w_blocks"]["shape"] == [2, 8]
    with open_checkpoint(src) as ckpt:
        node = ckpt.find("w_blocks")
        assert (node.tensor.dtype, node.tensor.shape) == ("float4_e2m1fn_x2", (2, 4))
        assert torch.equal(node.load().view(torch.uint8), blocks.view(torch.uint8))
        assert ckpt.find("w_scales").tensor.dtype == "float8_e8m0fnu"
    dst = tmp_path / "copy.safetensors"
    assert main(["export", str(src), str(dst), "--cpu-copy"]) == 0
    copy = load_file(dst)  # the safetensors library reads our header
    assert torch.equal(copy["w_blocks"].view(torch.uint8), blocks.view(torch.uint8))
    assert torch.equal(copy["w_scales"].view(torch.uint8), scales.view(torch.uint8))


@pytest.mark.parametrize(
    ("code", "itemsize"),
    [("F8_E4M3FNUZ", 1), ("F8_E5M2FNUZ", 1), ("F8_E8M0", 1), ("U16", 2), ("U64", 8)],
)
def test_every_safetensors_dtype_opens(tmp_path: Path, code: str, itemsize: int) -> None:
    entry = {"dtype": code, "shape": [2], "data_offsets": [0, 2 * itemsize]}
    path = write_raw(tmp_path / "d.safetensors", json.dumps({"a": entry}), bytes(2 * itemsize))
    with open_checkpoint(path) as ckpt:
        assert ckpt.find("a").load().numel() == 2


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{"dtype":"Q9","shape":[4],"data_offsets":[0,4]}', "has unsupported dtype 'Q9'"),
        ('{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}', "not whole numbers in range"),
        ('{"dtype":"F32","shape":[0,1e29],"data_offsets":[0,0]}', "not whole numbers in range"),
        ('{"dtype":"F32","shape":[0,' + "9" * 30 + '],"data_offsets":[0,0]}', "in range"),
        ('{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}', "not whole numbers in range"),
        ('{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}', "not whole numbers in range"),
        ('{"dtype":"F4","shape":[3],"data_offsets":[0,2]}', "packs F4 values into an odd"),
        ('{"dtype":"F32","shape":[4]}', "damaged safetensors header entry for 'a'"),
    ],
)
def test_lying_entries_are_one_clear_line(tmp_path: Path, capsys, entry: str, message: str) -> None:
    path = write_raw(tmp_path / "bad.safetensors", '{"a":' + entry + "}")
    for command in ("inspect", "stats"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "unexpected" not in err[0], err


def test_a_deeply_nested_header_is_refused(tmp_path: Path, capsys) -> None:
    path = write_raw(tmp_path / "deep.safetensors", '{"a":' + "[" * 200_000 + "]" * 200_000 + "}")
    assert main(["inspect", str(path)]) == 2
    assert "damaged safetensors header (nested too deeply)" in capsys.readouterr().err
