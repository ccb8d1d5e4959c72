"""Exports that copy unchanged bytes file to file (issue 18): the spans the kernel reports, the
zip archive written here (checksums, zip64, torch's record layout), verification that reads
files and still catches a changed byte, the fallbacks, and a source that changes under us."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ckpt_gui.core.errors import Cancelled
from ckpt_gui.core.export import ExportError, ExportOptions, iter_export, plan_export, torch_zip
from ckpt_gui.core.export.spans import FileMaps, Files
from ckpt_gui.core.export.verify import iter_verify
from ckpt_gui.core.reader import open_checkpoint
from tests.core.test_export_write import export, unchanged


def drain(steps):  # noqa: ANN001, ANN201 - any generator; returns its value
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    big = torch.randn(512, 1024, generator=g)  # 2 MB: copied by the kernel, compared in files
    return {
        "big": big,
        "tied": big,  # the same storage: one record, still tied
        "mid": torch.randn(40_000, generator=g),  # 160 KB: copied, compared in memory
        "half": torch.randn(600, 600, generator=g).to(torch.bfloat16),
        "small": torch.arange(10.0),  # gathered from memory
        "step": torch.tensor(7),
    }


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_the_kernel_reports_where_a_mapped_tensor_lies(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(_state(), path)
    loaded = torch.load(path, mmap=True, weights_only=True)
    maps = FileMaps()
    span = maps.tensor(loaded["big"])
    assert span is not None and span.nbytes == 512 * 1024 * 4
    assert (span.dev, span.ino) == (path.stat().st_dev, path.stat().st_ino)
    with open(path, "rb") as f:
        f.seek(span.offset)
        assert f.read(span.nbytes) == loaded["big"].numpy().tobytes()
    with Files() as files:
        assert files.open(span) is not None
    assert maps.tensor(loaded["big"].t()) is None  # not contiguous: its bytes are not in order
    assert maps.tensor(loaded["big"].clone()) is None  # in memory, not in a file
    # Another file now at the same path is not the file the span names.
    os.replace(path, tmp_path / "moved.pt")
    path.write_bytes((tmp_path / "moved.pt").read_bytes())
    with Files() as files:
        assert files.open(span) is None


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("source_format", ["pt", "safetensors"])
def test_copies_load_everywhere_and_keep_their_checksums(
    tmp_path: Path, fmt: str, source_format: str
) -> None:
    state = _state()
    src = tmp_path / f"src.{source_format}"
    if source_format == "pt":
        torch.save(state, src)
    else:
        save_file({k: v for k, v in state.items() if k != "tied"}, src)
        state.pop("tied")
    dst = tmp_path / f"out.{fmt}"
    result = export(src, dst, mode="all", format=fmt)
    assert result.verification.describe().startswith("verified: all")
    if fmt == "safetensors":
        _equal(load_file(dst), state)
        return
    with zipfile.ZipFile(dst) as archive:
        assert archive.testzip() is None  # every record's CRC-32 matches its bytes
        names = archive.namelist()
    reference = tmp_path / "reference.pt"
    torch.save(torch.load(dst, weights_only=True), reference)
    with zipfile.ZipFile(reference) as archive:
        assert sorted(names) == sorted(
            n.replace("reference/", "archive/") for n in archive.namelist()
        )
    for mmap in (False, True):
        loaded = torch.load(dst, weights_only=True, mmap=mmap)
        _equal(loaded, state)
        if "tied" in state:
            assert loaded["tied"].data_ptr() == loaded["big"].data_ptr()


def test_records_copied_from_a_file_lie_where_their_bytes_lie_within_a_page(
    tmp_path: Path,
) -> None:
    """A record the kernel copies starts at the same place within a page as its bytes in the
    source (whole pages copied), still on torch's 64-byte boundary; records written from
    memory keep the plain boundary."""
    src, dst = tmp_path / "src.pt", tmp_path / "out.pt"
    torch.save(_state(), src)
    export(src, dst, mode="all")

    def data_offsets(path: Path) -> dict[int, int]:  # record data offset by size
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if "/data/" in i.filename]
            fd = os.open(path, os.O_RDONLY)
            try:
                return {i.file_size: _data_offset(fd, i) for i in infos}
            finally:
                os.close(fd)

    source, result = data_offsets(src), data_offsets(dst)
    for size in (512 * 1024 * 4, 40_000 * 4, 600 * 600 * 2):  # copied by the kernel
        assert result[size] % torch_zip.PAGE == source[size] % torch_zip.PAGE, size
    assert all(offset % torch_zip.ALIGN == 0 for offset in result.values())
    for mmap in (False, True):
        _equal(torch.load(dst, weights_only=True, mmap=mmap), _state())


def _data_offset(fd: int, info: zipfile.ZipInfo) -> int:
    """Where a stored record's data starts: past its local header and that header's own name
    and extra field lengths."""
    header = os.pread(fd, 30, info.header_offset)
    name_len, extra_len = (
        int.from_bytes(header[26:28], "little"),
        int.from_bytes(header[28:30], "little"),
    )
    return info.header_offset + 30 + name_len + extra_len


def test_a_cast_is_written_from_memory_with_its_checksum(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.pt", tmp_path / "out.pt"
    torch.save(_state(), src)
    result = export(src, dst, mode="all", dtype="bfloat16")
    assert "cast to bfloat16" in result.verification.describe()
    with zipfile.ZipFile(dst) as archive:
        assert archive.testzip() is None
    loaded = torch.load(dst, weights_only=True)
    assert loaded["big"].dtype == torch.bfloat16
    assert torch.equal(loaded["big"], _state()["big"].to(torch.bfloat16))


def test_zip64_fields_are_read_by_torch_and_zipfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch_zip, "ZIP64_FROM", 1)  # every size, offset and count the zip64 way
    src, dst = tmp_path / "src.pt", tmp_path / "out.pt"
    torch.save(_state(), src)
    export(src, dst, mode="all")
    data = dst.read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # the zip64 end records
    with zipfile.ZipFile(dst) as archive:
        assert archive.testzip() is None
    for mmap in (False, True):
        _equal(torch.load(dst, weights_only=True, mmap=mmap), _state())


def _flip_a_byte(path: Path, inside: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(inside) + len(inside) // 2
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_verification_in_files_catches_one_changed_byte(tmp_path: Path, fmt: str) -> None:
    src, out = tmp_path / "src.pt", tmp_path / f"out.{fmt}"
    state = _state()
    torch.save(state, src)
    options = ExportOptions(mode="all", format=fmt)
    with open_checkpoint(src) as ckpt:
        plan = plan_export(ckpt, options)
        drain(iter_export(ckpt, out, options))
        drain(iter_verify(plan, ckpt, out))
        _flip_a_byte(out, state["big"][300].numpy().tobytes())
        with pytest.raises(ExportError, match="verification failed: 'big' differs"):
            drain(iter_verify(plan, ckpt, out))


@pytest.mark.parametrize("missing", [["copy_file_range"], ["copy_file_range", "sendfile"]])
def test_without_kernel_copies_the_bytes_are_read_and_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: list[str]
) -> None:
    for name in missing:
        monkeypatch.delattr(os, name, raising=False)
    src, dst = tmp_path / "src.pt", tmp_path / "out.pt"
    torch.save(_state(), src)
    export(src, dst, mode="all")
    with zipfile.ZipFile(dst) as archive:
        assert archive.testzip() is None
    _equal(torch.load(dst, weights_only=True), _state())


def test_a_source_that_changes_during_the_export_is_not_verified(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.pt", tmp_path / "out.pt"
    torch.save(_state(), src)
    touched = []

    def cancel() -> bool:  # polled while writing: the moment a training loop saves again
        if not touched:
            os.utime(src, ns=(1, 1))
            touched.append(True)
        return False

    steps = iter_export(src, dst, ExportOptions(mode="all"), cancel)
    with pytest.raises(ExportError, match="changed while it was being exported"):
        drain(steps)
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src.pt"]


def test_cancel_during_a_kernel_copy_leaves_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.pt", tmp_path / "out.pt"
    torch.save(_state(), src)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with unchanged(src), pytest.raises(Cancelled):
        drain(iter_export(src, dst, ExportOptions(mode="all"), cancel))
    assert [p.name for p in tmp_path.iterdir()] == ["src.pt"]


def test_written_bytes_are_sent_to_the_disk_as_they_go(tmp_path: Path, monkeypatch) -> None:
    """Every few megabytes written (here 1 MB), the kernel is asked to start writing them out
    (on a thread, with a duplicate descriptor it closes): the bytes are the same, and no
    descriptor is left open once the requests are done."""
    import time

    from ckpt_gui.core.export import sink as sink_module

    monkeypatch.setattr(sink_module, "_KICK", 1 << 20)
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    data = os.urandom(3 << 20)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    target = tmp_path / "target.bin"
    with open(target, "wb") as f, open(source, "rb") as src:
        sink = sink_module.Sink(f)
        sink.write(data[: 2 << 20])  # a large write, straight from the buffer
        for i in range(64):  # small writes, gathered
            sink.write(data[(2 << 20) + i * 4096 : (2 << 20) + (i + 1) * 4096])
        sink.copy(src.fileno(), (2 << 20) + 64 * 4096, len(data) - (2 << 20) - 64 * 4096)
        sink.flush()
        assert sink._kicked >= 2 << 20  # asked twice at least, up to what was in the file
    assert target.read_bytes() == data
    if fds is not None:
        deadline = time.monotonic() + 5
        while len(os.listdir("/proc/self/fd")) > fds and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(os.listdir("/proc/self/fd")) == fds
