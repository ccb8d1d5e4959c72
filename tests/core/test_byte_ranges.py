"""``byte_ranges.same_range``: two ranges of files compared through memory maps by the C
library's ``memcmp``, or read into buffers where that is not to be had; both give the same
answers, at any offset, for files shorter than asked and for bytes that differ anywhere."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from ckpt_gui.core.export import byte_ranges
from ckpt_gui.core.export.byte_ranges import same_range

SIZE = 3 * mmap.ALLOCATIONGRANULARITY + 12_345  # ranges cross map boundaries


@pytest.fixture(params=["memcmp", "read"])
def compare(request, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "read":
        monkeypatch.setattr(byte_ranges, "_MEMCMP", None)
    else:
        assert byte_ranges._MEMCMP is not None  # found on this system
    return str(request.param)


def files(tmp_path: Path, shift: int) -> tuple[int, int, bytes]:
    """Two files: ``b`` holds ``a``'s bytes ``shift`` bytes further in."""
    data = np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(b"\0" * shift + data)
    return os.open(tmp_path / "a", os.O_RDONLY), os.open(tmp_path / "b", os.O_RDONLY), data


@pytest.mark.parametrize("shift", [0, 1, 4093, mmap.ALLOCATIONGRANULARITY + 7])
def test_equal_ranges_at_any_offset(tmp_path: Path, compare: str, shift: int) -> None:
    fd_a, fd_b, _ = files(tmp_path, shift)
    try:
        assert same_range(fd_a, 0, fd_b, shift, SIZE)
        assert same_range(fd_a, 777, fd_b, shift + 777, SIZE - 777)
        assert same_range(fd_a, 5, fd_b, shift + 5, 0)
        assert not same_range(fd_a, 0, fd_b, shift + 1, SIZE - 1)  # one byte off
    finally:
        os.close(fd_a)
        os.close(fd_b)


@pytest.mark.parametrize("where", [0, mmap.ALLOCATIONGRANULARITY - 1, SIZE - 1])
def test_one_byte_different_anywhere(tmp_path: Path, compare: str, where: int) -> None:
    fd_a, fd_b, data = files(tmp_path, 0)
    os.close(fd_b)
    spoiled = bytearray(data)
    spoiled[where] ^= 0x01
    (tmp_path / "b").write_bytes(bytes(spoiled))
    fd_b = os.open(tmp_path / "b", os.O_RDONLY)
    try:
        assert not same_range(fd_a, 0, fd_b, 0, SIZE)
        if where > 0:
            assert same_range(fd_a, 0, fd_b, 0, where)  # up to the spoiled byte
    finally:
        os.close(fd_a)
        os.close(fd_b)


def test_a_file_shorter_than_the_range_is_not_the_same(tmp_path: Path, compare: str) -> None:
    fd_a, fd_b, _ = files(tmp_path, 0)
    try:
        assert not same_range(fd_a, 0, fd_b, 0, SIZE + 1)  # never mapped past the end
        assert not same_range(fd_a, SIZE - 10, fd_b, SIZE - 10, 11)
    finally:
        os.close(fd_a)
        os.close(fd_b)
    (tmp_path / "b").write_bytes((tmp_path / "a").read_bytes()[: SIZE // 2])
    fd_a, fd_b = os.open(tmp_path / "a", os.O_RDONLY), os.open(tmp_path / "b", os.O_RDONLY)
    try:
        assert same_range(fd_a, 0, fd_b, 0, SIZE // 2)
        assert not same_range(fd_a, 0, fd_b, 0, SIZE)
    finally:
        os.close(fd_a)
        os.close(fd_b)
