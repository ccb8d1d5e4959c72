"""Broken and misnamed files give the right one-line error, and are never modified."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from ckpt_gui.core.errors import CorruptError, NotACheckpointError, NotFoundError
from ckpt_gui.core.reader import open_checkpoint


def _fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _expect(path: Path, error: type[Exception], match: str) -> None:
    before = _fingerprint(path) if path.is_file() else None
    with pytest.raises(error, match=match) as info:
        open_checkpoint(path)
    assert "\n" not in str(info.value)
    if before is not None:
        assert _fingerprint(path) == before


def test_missing(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.pt", NotFoundError, "no such file")


def test_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    _expect(path, NotACheckpointError, "empty")


def test_text_file_named_pt(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    _expect(path, NotACheckpointError, "looks like a text file")


def test_png_named_pt(tmp_path: Path) -> None:
    path = tmp_path / "image.pt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _expect(path, NotACheckpointError, "PNG image")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.bin"
    path.write_bytes(os.urandom(4096).replace(b"PK", b"pk"))
    _expect(path, NotACheckpointError, "not a checkpoint")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_zip(tmp_path: Path, keep: float) -> None:
    full = tmp_path / "full.pt"
    torch.save({"w": torch.randn(64, 64), "b": torch.randn(64)}, full)
    data = full.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    _expect(path, CorruptError, "truncated or damaged")


def test_zip_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    _expect(path, NotACheckpointError, "zip archive without a pickle")


def test_plain_pickle(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    _expect(path, NotACheckpointError, "plain Python pickle")


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_safetensors_header_longer_than_file(tmp_path: Path) -> None:
    path = tmp_path / "lying.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    _expect(path, CorruptError, "header claims")


def test_safetensors_offsets_outside_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    header = {"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    path.write_bytes(_safetensors_bytes(header, bytes(16)))
    _expect(path, CorruptError, "outside the file")


def test_safetensors_shape_disagrees_with_size(tmp_path: Path) -> None:
    path = tmp_path / "shape.safetensors"
    header = {"w": {"dtype": "F32", "shape": [10, 10], "data_offsets": [0, 16]}}
    path.write_bytes(_safetensors_bytes(header, bytes(16)))
    _expect(path, CorruptError, "declares shape")


def test_safetensors_overlapping_tensors(tmp_path: Path) -> None:
    path = tmp_path / "overlap.safetensors"
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    path.write_bytes(_safetensors_bytes(header, bytes(24)))
    _expect(path, CorruptError, "overlap")


def test_safetensors_header_not_json(tmp_path: Path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(struct.pack("<Q", 6) + b"{nope}" + bytes(8))
    _expect(path, CorruptError, "not valid JSON")


def test_index_pointing_at_missing_shard(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    index = {"weight_map": {"w": "model-00001-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    _expect(folder, CorruptError, "missing")


def test_folder_without_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    _expect(tmp_path, NotACheckpointError, "folder without a checkpoint")


def test_flipped_bytes_in_pickle_never_crash(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    buf = io.BytesIO()
    torch.save({"w": torch.arange(10.0), "n": 3}, buf)
    data = bytearray(buf.getvalue())
    start = data.find(b"data.pkl") + 40
    for i in range(start, start + 60, 3):
        mutated = bytearray(data)
        mutated[i] ^= 0xFF
        path.write_bytes(bytes(mutated))
        try:
            with open_checkpoint(path) as ckpt:
                ckpt.tensors()
        except Exception as exc:  # the reader may only fail with its own one-line errors
            from ckpt_gui.core.errors import CheckpointError

            assert isinstance(exc, CheckpointError), repr(exc)
            assert "\n" not in str(exc)
