"""The bad-input list, end to end: every command on each input gives a one-line error or a safe
result, fast, without a traceback and without changing the file."""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from tests.core.hostile import (
    Entry,
    Storage,
    archive_pickle,
    bomb_stream,
    tensor_call,
    write_archive,
    write_zip,
)


def _archive_with(tmp: Path, name: str, data_pkl: bytes) -> Path:
    path = tmp / name
    write_archive(path, data_pkl, {})
    return path


def _inputs(tmp: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    files["zip bomb"] = tmp / "bomb.pt"
    write_zip(files["zip bomb"], [Entry("a/data.pkl", bomb_stream(3), 3 << 30, 0, deflated=True)])
    files["shape larger than storage"] = tmp / "lie.pt"
    obj = {"w": tensor_call(Storage("0", torch.FloatStorage, 4), 0, (5,), (1,))}
    write_archive(files["shape larger than storage"], archive_pickle(obj), {"0": bytes(16)})
    # a list nested 5,000 deep, and a tuple key nested 100,000 deep (hashing it would crash)
    files["deep lists"] = _archive_with(
        tmp, "deep.pt", b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b"."
    )
    files["deep tuple key"] = _archive_with(
        tmp, "deeptuple.pt", b"\x80\x02}" + b")" + b"\x85" * 100_000 + b"K\x01s."
    )
    # a list that contains itself, and shared references that would expand to 2**200 nodes
    files["reference cycle"] = _archive_with(tmp, "cycle.pt", b"\x80\x02]q\x00h\x00a.")
    files["billion laughs"] = _archive_with(
        tmp, "laughs.pt", b"\x80\x02]q\x00K\x01a" + b"h\x00h\x00\x86q\x00" * 200 + b"."
    )
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}})
    files["lying safetensors header"] = tmp / "lying.safetensors"
    files["lying safetensors header"].write_bytes(
        struct.pack("<Q", len(header)) + header.encode() + bytes(8)
    )
    files["huge safetensors header"] = tmp / "huge.safetensors"
    files["huge safetensors header"].write_bytes(struct.pack("<Q", 2**60) + b"{" + bytes(64))
    return files


COMMANDS = {
    "inspect": lambda p, out: ["inspect", str(p)],
    "stats": lambda p, out: ["stats", str(p)],
    "diff": lambda p, out: ["diff", str(p), str(p)],
    "export": lambda p, out: ["export", str(p), str(out / "x.safetensors")],
    "scan": lambda p, out: ["scan", str(p)],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_inputs_through_every_command(tmp_path: Path, capsys, command: str) -> None:
    files = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for what, path in files.items():
        before = (path.read_bytes(), path.stat().st_mtime_ns)
        start = time.monotonic()
        code = main(COMMANDS[command](path, out))
        elapsed = time.monotonic() - start
        result = capsys.readouterr()
        assert code in (0, 1, 2), what
        assert "Traceback" not in result.err and "unexpected" not in result.err, (what, result.err)
        if code == 2:
            assert result.err.count("\n") == 1, (what, result.err)
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before, what
        assert elapsed < 60, f"{what}: {command} took {elapsed:.0f} s"  # a hang, not a timing
        assert not list(out.iterdir()), what  # nothing half-written


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, capsys, command: str) -> None:
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    codes: list[int] = []
    # If anything opened the FIFO for reading it would block forever: run it on a thread.
    runner = threading.Thread(target=lambda: codes.append(main(COMMANDS[command](fifo, tmp_path))))
    runner.daemon = True
    runner.start()
    runner.join(30)
    if runner.is_alive():  # unblock the reader so the test process can end, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail(f"{command} blocked on a FIFO")
    assert codes == [2]
    assert "not a regular file" in capsys.readouterr().err
