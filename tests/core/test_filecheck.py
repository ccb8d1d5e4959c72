"""The checks that run before any heavy work: regular files only, sane zips, bounded sizes."""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from ckpt_gui.core.errors import CorruptError, NotACheckpointError, NotFoundError
from ckpt_gui.core.safety import filecheck
from ckpt_gui.core.safety.filecheck import (
    BoundedReader,
    check_regular_file,
    describe_content,
    open_regular_file,
    open_zip,
    sniff,
)
from tests.core.hostile import Entry, bomb_stream, write_zip


def opened_zip(path: Path, **kwargs: bool) -> filecheck.TorchZip:
    fp, size = open_regular_file(path)
    return open_zip(fp, size, path, **kwargs)


def test_regular_file_passes(tmp_path):
    path = tmp_path / "a.pt"
    path.write_bytes(b"x" * 10)
    assert check_regular_file(path).st_size == 10
    fp, size = open_regular_file(path)
    with fp:
        assert (size, fp.read()) == (10, b"x" * 10)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs POSIX devices and sockets")
def test_missing_and_special_files_are_refused(tmp_path):
    with pytest.raises(NotFoundError, match="no such file"):
        check_regular_file(tmp_path / "missing.pt")
    with pytest.raises(NotACheckpointError, match="is a folder"):
        check_regular_file(tmp_path)
    with pytest.raises(NotACheckpointError, match="is a device"):
        check_regular_file("/dev/null")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(NotACheckpointError, match="is a socket"):
            check_regular_file(sock_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    results: list[BaseException] = []

    def attempt() -> None:
        for check in (check_regular_file, open_regular_file):
            try:
                check(fifo)
            except NotACheckpointError as exc:
                results.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "a FIFO blocked us"
    assert len(results) == 2 and all("named pipe (FIFO)" in str(e) for e in results)


def _v7_header(name: bytes) -> bytes:
    block = bytearray(tarfile.TarInfo("x").tobuf(tarfile.GNU_FORMAT)[:512])
    block[257:265] = bytes(8)  # no magic, no version: a v7 header
    block[: len(name)] = name.ljust(len(name), b"\0")
    block[148:156] = b" " * 8
    checksum = sum(block)
    block[148:156] = b"%06o\0 " % checksum
    return bytes(block)


@pytest.mark.parametrize(
    ("head", "size", "kind"),
    [
        (b"", 0, "empty"),
        (b"PK\x03\x04rest", 100, "zip"),
        (b"PK\x05\x06" + bytes(18), 22, "zip"),
        (struct.pack("<Q", 2) + b"{}", 10, "safetensors"),
        (struct.pack("<Q", 99) + b"{}", 10, "unknown"),
        (tarfile.TarInfo("pickle").tobuf(tarfile.USTAR_FORMAT)[:512], 512, "tar"),
        # A pre-POSIX (v7) header has no "ustar" magic; tarfile (and so torch.load) reads it
        # by its checksum, even when it starts like a pickle.
        (_v7_header(b"\x80\x02}q\x00."), 512, "tar"),
        (bytes(257) + b"ustar" + bytes(250), 512, "unknown"),  # the magic, a wrong checksum
        (b"\x80\x02}q\x00.", 6, "pickle"),
        (b"cos\nsystem\n", 11, "unknown"),
        (b"\x80\x09", 2, "unknown"),
    ],
)
def test_sniff(head, size, kind):
    assert sniff(head, size) == kind


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"", "an empty file"),
        (b"\x89PNG\r\n", "a PNG image"),
        (b"\xff\xd8\xff\xe0", "a JPEG image"),
        (b"hello\nworld\n", "a text file"),
        (b"\x00\x01\x02\xff\xfe", "unrecognised binary data"),
        (b"\x93NUMPY", "a NumPy .npy file"),
    ],
)
def test_describe_content(head, what):
    assert describe_content(head) == what


def test_torch_zip_records_and_offsets(tmp_path):
    path = tmp_path / "m.pt"
    w = torch.arange(10, dtype=torch.float32)
    torch.save({"w": w}, path)
    archive = opened_zip(path)
    assert archive.prefix == "m" and archive.full_name("data/0") == "m/data/0"
    assert archive.pickle_names() == ["m/data.pkl"]
    assert archive.byteorder() == "little"
    offset = archive.data_offset("m/data/0")
    assert offset % 64 == 0  # torch aligns stored records
    assert path.read_bytes()[offset : offset + 40] == w.numpy().tobytes()
    data_pkl = archive.read("m/data.pkl")  # read, never unpickled here
    assert data_pkl[:2] == b"\x80\x02" and data_pkl.endswith(b".")


def test_zip_sanity(tmp_path):
    path = tmp_path / "z.pt"
    good = pickle.dumps({}, protocol=2)
    write_zip(path, [Entry("x/data.pkl", good), Entry("x/data.pkl", good)])
    with pytest.raises(CorruptError, match="lists 'x/data.pkl' twice"):
        opened_zip(path)
    write_zip(path, [Entry("a/data.pkl", good), Entry("b/data.pkl", good)])
    with pytest.raises(CorruptError, match="2 data.pkl records"):
        opened_zip(path)
    write_zip(path, [Entry("a/other.pkl", good)])
    with pytest.raises(NotACheckpointError, match="without a data.pkl"):
        opened_zip(path)
    assert opened_zip(path, require_data_pkl=False).pickle_names() == ["a/other.pkl"]


def _patch_central(path: Path, field: str, value: int) -> None:
    """Rewrite one field of the first central directory entry."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    offsets = {"compressed_size": 20, "header_offset": 42, "flags": 8}
    data[at + offsets[field] : at + offsets[field] + (2 if field == "flags" else 4)] = struct.pack(
        "<H" if field == "flags" else "<L", value
    )
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("header_offset", 10**9, "past the end of the file"),
        ("compressed_size", 10**8, "past the end of the file"),
        ("flags", 1, "encrypted"),
    ],
)
def test_records_must_lie_inside_the_file(tmp_path, field, value, message):
    path = tmp_path / "z.pt"
    write_zip(
        path, [Entry("a/data.pkl", pickle.dumps({}, protocol=2)), Entry("a/data/0", bytes(8))]
    )
    _patch_central(path, field, value)
    with pytest.raises(CorruptError, match=message):
        opened_zip(path)


def test_local_header_must_agree(tmp_path):
    path = tmp_path / "z.pt"
    write_zip(path, [Entry("a/data.pkl", pickle.dumps({}, protocol=2))])
    data = bytearray(path.read_bytes())
    data[30:40] = b"b/data.pkl"  # the local header now names another record
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptError, match="disagrees with its header"):
        opened_zip(path).read("a/data.pkl")


def test_too_many_entries_are_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(filecheck, "MAX_ZIP_ENTRIES", 1000)
    path = tmp_path / "z.pt"
    write_zip(path, [Entry("a/data.pkl", b".")])
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    data[end + 8 : end + 12] = struct.pack("<2H", 65535, 65535)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptError, match="declares 65,535 records"):
        opened_zip(path)


def test_declared_sizes_are_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "bomb.pt"
    write_zip(path, [Entry("a/data.pkl", bomb_stream(2), 2 << 30, 0, deflated=True)])
    archive = opened_zip(path)
    with pytest.raises(CorruptError, match=r"would inflate to 2,048 MiB.*zip bomb"):
        archive.read("a/data.pkl")
    stored = tmp_path / "big.pt"
    write_zip(stored, [Entry("a/data.pkl", bytes(3000))])
    with pytest.raises(CorruptError, match="holds"):
        opened_zip(stored).read("a/data.pkl", limit=1000)
    # Many modest compressed records still add up to a bomb.
    monkeypatch.setattr(filecheck, "MAX_TOTAL_INFLATED_BYTES", 2500)
    c = [zipfile.ZipInfo(f"a/{i}.pkl") for i in range(3)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data.pkl", bytes(1000))
        for info in c:
            zf.writestr(info.filename, bytes(1000), zipfile.ZIP_DEFLATED)
    archive = opened_zip(path)
    archive.read("a/data.pkl")
    archive.read("a/0.pkl")
    with pytest.raises(CorruptError, match="in all"):
        archive.read("a/1.pkl")


def test_truncated_zip_is_corrupt(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(3)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptError, match="truncated or damaged zip"):
        opened_zip(path)


def test_bounded_reader(tmp_path):
    raw = io.BytesIO(b"line one\n" + bytes(100))
    reader = BoundedReader(raw, end=109, limit=50, label="x")
    assert reader.readline() == b"line one\n"
    assert reader.read(10) == bytes(10) and reader.tell() == 19
    with pytest.raises(CorruptError, match="over the 0 MiB limit"):
        reader.read(2**60)  # a lying length field: refused, nothing allocated
    small = BoundedReader(io.BytesIO(b"abc"), end=3, limit=1000, label="x")
    assert small.read(2**40) == b"abc"  # past the end of the file: short, not refused
