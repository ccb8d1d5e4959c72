"""Files that two readers read differently: ``scan``, the structural view and the trust dialog
must never vouch for one reading while torch performs another. Each fixture shows the two
readings differ, then that ckpt-gui refuses the file (or scans what torch would run)."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.safety.scan import scan_path

# A pickle that names os.system: scanned, never loaded by these tests.
EVIL = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."


def benign_zip(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _replace_name(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and data.count(old) == 2  # local header and central directory
    return data.replace(old, new)


def test_a_nul_in_a_record_name_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nul.pt"
    # Python's zipfile cuts a name at its NUL; torch's reader keeps it whole: a record
    # "data.pkl\0" is data.pkl to one and not to the other.
    data = _replace_name(benign_zip({"w": torch.ones(2)}), b"/data.pkl", b"/data.pk\0")
    path.write_bytes(data)
    with zipfile.ZipFile(path) as zf:
        assert any(n.endswith("data.pk") for n in zf.namelist())  # cut at the NUL
    assert main(["scan", str(path)]) == 2
    assert "has a NUL in its name" in capsys.readouterr().err


def test_names_that_differ_only_in_case_are_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "case.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"fine": 1}, protocol=2))
        zf.writestr("archive/data.PKL", EVIL)  # torch's reader matches names case-insensitively
        zf.writestr("archive/version", "3\n")
    assert main(["scan", str(path)]) == 2
    assert "lists 'archive/data.PKL' twice" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="twice"):
        open_checkpoint(path)


def test_an_upper_case_pickle_is_scanned(tmp_path: Path) -> None:
    path = tmp_path / "upper.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/DATA.PKL", EVIL)
        zf.writestr("archive/version", "3\n")
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert [(g.module, g.name) for g in report.globals] == [("os", "system")]


def test_a_central_directory_away_from_its_declared_offset_is_refused(
    tmp_path: Path, capsys
) -> None:
    benign = benign_zip({"w": torch.ones(2)})
    path = tmp_path / "shifted.pt"
    # Bytes before the archive: Python shifts every offset by their length (a concatenated
    # archive); a reader that uses the declared offsets reads whatever lies there instead.
    path.write_bytes(b"PK\x03\x04" + bytes(60) + benign)
    with zipfile.ZipFile(path) as zf:
        assert zf.read(zf.namelist()[0])  # Python reads it, shifted
    assert main(["scan", str(path)]) == 2
    assert "central directory is not where the archive says it is" in capsys.readouterr().err
    assert main(["inspect", str(path)]) == 2


def test_a_frame_that_runs_past_stop_is_refused(tmp_path: Path, capsys) -> None:
    """pickle #1's frame holds, after its STOP, the start of a fake pickle whose byte string
    swallows the real pickle #2. A reader that walks opcodes one by one scans the fake; every
    unpickler skips the rest of the frame and runs pickle #2."""
    swallow = struct.pack("<I", len(EVIL))
    inner = b"}." + b"\x80\x02B" + swallow  # pickle #1 (an empty dict), then the fake's start
    first = b"\x80\x04\x95" + struct.pack("<Q", len(inner)) + inner
    path = tmp_path / "frames.pkl"
    path.write_bytes(first + EVIL + b".")
    stream = io.BytesIO(path.read_bytes())
    assert pickle.load(stream) == {}
    assert stream.read(len(EVIL)) == EVIL  # what a second pickle.load would run
    assert main(["scan", str(path)]) == 2
    assert "stops before the end of its frame" in capsys.readouterr().err


def test_a_v7_tar_that_starts_like_a_pickle_is_scanned_as_the_tar_torch_reads(
    tmp_path: Path, capsys
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("first", b""), ("pickle", EVIL)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = bytearray(buffer.getvalue())
    # Make the first header pre-POSIX (v7), starting with a pickle: no "ustar" magic, the
    # checksum fixed. tarfile still reads it, and torch.load tries tarfile first.
    data[257:265] = bytes(8)
    data[:7] = b"\x80\x02}q\x00.\0"
    data[148:156] = b" " * 8
    data[148:156] = b"%06o\0 " % sum(data[:512])
    assert pickle.loads(bytes(data[:6])) == {}  # a plain pickle reader sees an empty dict
    path = tmp_path / "v7.pt"
    path.write_bytes(bytes(data))
    with tarfile.open(path) as tar:
        assert "pickle" in tar.getnames()
    assert main(["scan", str(path), "--json"]) == 1
    out = capsys.readouterr().out
    assert '"verdict": "unsafe"' in out and '"module": "os"' in out


def test_dcp_data_files_are_scanned(tmp_path: Path, capsys) -> None:
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({"w": torch.ones(3), "note": "hi"}, checkpoint_id=folder, no_dist=True)
    report = scan_path(folder)
    scanned = [p for p in report.pickles if ".distcp:" in p]
    assert {p.split(" > ")[0] for p in scanned} == {"__0_0.distcp:item note", "__0_0.distcp:item w"}
    assert not report.skipped
    # A data file whose metadata cannot be read is "unknown", never "safe".
    (folder / ".metadata").write_bytes(pickle.dumps({"not": "DCP metadata"}, protocol=2))
    assert main(["scan", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "unknown" in out.lower() and "__0_0.distcp" in out


def test_the_reader_and_the_scan_call_a_v7_tar_the_same(tmp_path: Path, capsys) -> None:
    """detect (which the reader uses) and the scan share one sniffing rule: a tar header is
    recognised by its checksum, so a v7 tar is the pre-1.6 tar format to both."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("pickle")
        info.size = len(EVIL)
        tar.addfile(info, io.BytesIO(EVIL))
    data = bytearray(buffer.getvalue())
    data[257:265] = bytes(8)
    data[148:156] = b" " * 8
    data[148:156] = b"%06o\0 " % sum(data[:512])
    path = tmp_path / "v7.pt"
    path.write_bytes(bytes(data))
    assert main(["inspect", str(path)]) == 2
    assert "tar-format torch file" in capsys.readouterr().err
