"""An export's head start (``export/head_start.py``): the storage records a plain export of a
``torch.save`` file will write, copied into its temporary file without torch, then passed over by
the export, which still verifies the result against the source. A wrong guess, a changed source
or a hostile pickle never changes what is written."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.chunks import drain
from ckpt_gui.core.export import ExportError, ExportOptions, ahead_copy, file_compare, iter_export
from ckpt_gui.core.export import head_start as head_start_module
from ckpt_gui.core.export.byte_ranges import CheckedRange
from ckpt_gui.core.export.head_start import HeadStart, head_start
from ckpt_gui.core.export.stub_pickle import Unreadable, read_pickle, storages_in_order
from ckpt_gui.core.preload import import_in_background

PARAMS = ExportOptions(mode="params", format="pt")


def state_dict(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i in range(4):
        sd[f"layers.{i}.weight"] = torch.randn(128, 256, generator=g)  # 128 KB: copied
        sd[f"layers.{i}.bias"] = torch.randn(128, generator=g)  # small: written from memory
    sd["embed.weight"] = torch.randn(300, 128, generator=g).to(torch.bfloat16)
    return sd


def started(*args, **kwargs) -> HeadStart:  # noqa: ANN002, ANN003 - head_start's
    """A head start, entered: its copy started (``exported`` leaves it)."""
    return head_start(*args, **kwargs).__enter__()


def exported(src: Path, dst: Path, options: ExportOptions, head: HeadStart | None) -> Path:
    with head or HeadStart():
        drain(iter_export(src, dst, options, head_start=head))
    return dst


def data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored record's data starts in the file: past its local header."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name, extra = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name + extra


def inode(path: Path | None) -> int:
    assert path is not None
    return os.stat(path).st_ino


def test_a_state_dict_is_copied_ahead_and_the_export_adopts_it(tmp_path: Path) -> None:
    sd = state_dict()
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert len(head.wait()) == len(sd)  # every storage, in the order the pickle meets them
    assert head.target is not None and head.target.path is not None
    ahead = inode(head.target.path)
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    assert inode(out) == ahead  # the very file the head start wrote became the result
    assert not list(tmp_path.glob("*.partial"))
    loaded = torch.load(out, weights_only=True, mmap=True)
    assert list(loaded) == list(sd)
    assert all(torch.equal(loaded[k], sd[k]) and loaded[k].dtype == sd[k].dtype for k in sd)
    # The same records as an export without a head start (the serialization id aside).
    plain = exported(src, tmp_path / "plain.pt", PARAMS, None)
    with zipfile.ZipFile(out) as a, zipfile.ZipFile(plain) as b:
        assert a.namelist() == b.namelist()
        assert a.namelist()[0] == "archive/data/0"  # storages first, then the pickle
        for name in a.namelist():
            if not name.endswith("serialization_id"):
                assert a.read(name) == b.read(name), name


def test_every_record_placed_ahead_lies_where_the_writer_would_put_it(tmp_path: Path) -> None:
    """The writer passes over every record the head start placed (each lies where the export
    has it), the small ones written from memory between the copied ones included, and those
    copied start at the same place within a page as in the source. The source's records lie
    elsewhere (a long archive name makes its headers longer than the export's)."""
    sd = state_dict()
    src = tmp_path / f"{'a-long-archive-name-' * 6}model.pt"
    torch.save(sd, src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    placed = head.wait()
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    with zipfile.ZipFile(out) as archive:
        where = {i.filename: data_offset(out, i) for i in archive.infolist()}
    assert [where[f"archive/{p.name}"] for p in placed] == [p.data_at for p in placed]
    copied = [p for p in placed if p.nbytes >= 64 << 10]
    assert copied and all(p.data_at % 4096 == p.offset % 4096 for p in copied)
    assert any(p.data_at % 4096 != p.offset % 4096 for p in placed if p not in copied)


def test_records_placed_ahead_are_passed_over_and_small_ones_compared_again(
    tmp_path: Path,
) -> None:
    # A record spoiled after the head start checked it: the writer passes over it (written
    # again, the spoiled bytes would be gone), and the verification, which compares tensors
    # under a megabyte in memory whatever was checked, finds it.
    src = tmp_path / "model.pt"
    torch.save(state_dict(), src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert head.target is not None and head.target.path is not None
    spoiled = head.wait()[2]  # a 128 KB weight's record: spoil its bytes where they lie
    with open(head.target.path, "r+b") as f:
        f.seek(spoiled.position + spoiled.nbytes // 2)  # in its data, past its header
        f.write(b"\xff" * 64)
    with pytest.raises(ExportError, match="verification failed"):
        exported(src, tmp_path / "out.pt", PARAMS, head)
    assert not (tmp_path / "out.pt").exists()
    assert not list(tmp_path.glob("*.partial"))


@pytest.fixture
def checking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head start compares what it copied once done copying (the tests let it finish
    comparing before the export asks for the file: ``wait(finish_checks=True)``)."""
    monkeypatch.setattr(ahead_copy, "CHECK_AHEAD", True)


@pytest.fixture
def read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the steps the verification reads from both files (``same_range``)."""
    steps: list[int] = []
    real = file_compare.same_range

    def counted(fd_a: int, at_a: int, fd_b: int, at_b: int, k: int) -> bool:
        steps.append(k)
        return real(fd_a, at_a, fd_b, at_b, k)

    monkeypatch.setattr(file_compare, "same_range", counted)
    return steps


@pytest.mark.usefixtures("checking")
def test_bytes_checked_ahead_are_not_read_again_by_the_verification(
    tmp_path: Path, read: list[int]
) -> None:
    g = torch.Generator().manual_seed(3)
    sd = {f"w{i}": torch.randn(512, 1024, generator=g) for i in range(3)}  # 2 MB each
    sd["bias"] = torch.randn(16, generator=g)
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    exported(src, tmp_path / "plain.pt", PARAMS, None)
    assert sum(read) == 3 * 2 * 2**20  # without a head start: every big tensor read back
    read.clear()
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert len(head.wait(finish_checks=True)) == 4
    assert all(p.checked for p in head.placed)
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    assert read == []  # compared once, when the head start copied them
    loaded = torch.load(out, weights_only=True)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_bytes_copied_ahead_unchecked_are_read_by_the_verification(
    tmp_path: Path, read: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead_copy, "CHECK_AHEAD", False)
    g = torch.Generator().manual_seed(3)
    sd = {f"w{i}": torch.randn(512, 1024, generator=g) for i in range(3)}  # 2 MB each
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert len(head.wait()) == 3 and not any(p.checked for p in head.placed)
    assert head.target is not None and head.target.path is not None
    spoiled = head.placed[1]  # spoil a big tensor's bytes: the verification must find it
    with open(head.target.path, "r+b") as f:
        f.seek(spoiled.data_at + spoiled.nbytes // 2)
        f.write(b"\xff" * 64)
    with pytest.raises(ExportError, match="verification failed"):
        exported(src, tmp_path / "out.pt", PARAMS, head)
    assert sum(read) > 0


def test_a_checked_range_covers_only_the_same_place_in_both_files() -> None:
    checked = CheckedRange((1, 2), 1000, (3, 4), 5000, 100)
    assert checked.covers((1, 2), 1000, (3, 4), 5000, 100)
    assert checked.covers((1, 2), 1010, (3, 4), 5010, 50)
    assert not checked.covers((1, 2), 1010, (3, 4), 5020, 50)  # another place in the source
    assert not checked.covers((1, 2), 990, (3, 4), 4990, 50)  # starts before it
    assert not checked.covers((1, 2), 1060, (3, 4), 5060, 50)  # runs past its end
    assert not checked.covers((1, 9), 1000, (3, 4), 5000, 100)  # another result file
    assert not checked.covers((1, 2), 1000, (3, 9), 5000, 100)  # another source file


@pytest.mark.usefixtures("checking")
def test_a_safetensors_export_gets_its_header_and_tensors_ahead(
    tmp_path: Path, read: list[int]
) -> None:
    g = torch.Generator().manual_seed(4)
    sd = OrderedDict(
        a=torch.randn(512, 1024, generator=g),  # 2 MB: compared once, ahead
        t=torch.randn(256, 1024, generator=g).T,  # transposed: left to the export
        b=torch.randn(300, generator=g).to(torch.bfloat16),  # small: written from memory
        c=torch.randn(1024, 512, generator=g),
    )
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    options = ExportOptions(mode="params", format="safetensors")
    head = started(src, tmp_path / "out.safetensors", options, min_bytes=0)
    placed = head.wait(finish_checks=True)
    assert [p.nbytes for p in placed] == [2 << 20, 600, 2 << 20]  # not the transposed
    assert head.target is not None
    ahead = inode(head.target.path)
    out = exported(src, tmp_path / "out.safetensors", options, head)
    assert inode(out) == ahead and read == []  # a and c not read again; t compared in memory
    plain = exported(src, tmp_path / "plain.safetensors", options, None)
    assert out.read_bytes() == plain.read_bytes()  # safetensors has no random id: the same file
    assert sum(read) == 2 * (2 << 20)


def test_a_training_checkpoint_copies_its_model_state_dict_ahead(tmp_path: Path) -> None:
    model = state_dict()
    optimizer = {
        "state": {i: {"exp_avg": torch.zeros(128, 256)} for i in range(3)},
        "param_groups": [{"lr": 1e-3, "params": [0, 1, 2]}],
    }
    src = tmp_path / "train.pt"
    torch.save({"epoch": 3, "model_state_dict": model, "optimizer": optimizer}, src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert len(head.wait()) == len(model)  # the model's storages, not the optimizer's
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    loaded = torch.load(out, weights_only=True)
    assert list(loaded) == list(model) and all(torch.equal(loaded[k], model[k]) for k in model)


def test_a_wrong_guess_is_written_over_and_cut_off(tmp_path: Path) -> None:
    model, other = state_dict(0), state_dict(1)
    src = tmp_path / "train.pt"
    torch.save({"model_state_dict": model, "ema": other}, src)
    # Ahead: everything (a CPU copy); the export is parameters only: what it writes differs
    # from the ninth record on, and the file ends sooner.
    head = started(src, tmp_path / "out.pt", ExportOptions(mode="all", format="pt"), min_bytes=0)
    assert len(head.wait()) == len(model) + len(other)
    options = ExportOptions(mode="params", format="pt", state_dict="ema")
    out = exported(src, tmp_path / "out.pt", options, head)
    plain = exported(src, tmp_path / "plain.pt", options, None)
    assert out.stat().st_size == plain.stat().st_size
    loaded = torch.load(out, weights_only=True)
    assert list(loaded) == list(other) and all(torch.equal(loaded[k], other[k]) for k in other)


def test_a_source_changed_since_the_head_start_is_exported_without_it(tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    torch.save(state_dict(0), src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert head.target is not None
    ahead = head.target.path
    newer = state_dict(5)
    torch.save(newer, src)  # the same name, other bytes, after the head start copied
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    assert ahead is not None and not ahead.exists()  # not adopted: removed
    loaded = torch.load(out, weights_only=True)
    assert all(torch.equal(loaded[k], newer[k]) for k in newer)


@pytest.mark.parametrize(
    "options",
    [
        ExportOptions(mode="params", format="pt", dtype="bfloat16"),
        ExportOptions(mode="params", format="safetensors", add_prefix="model."),
        ExportOptions(mode="params", format="pt", include=("layers.*",)),
        ExportOptions(mode="params", format="pt", shard_size=1 << 20),
    ],
)
def test_exports_that_write_other_bytes_get_no_head_start(
    tmp_path: Path, options: ExportOptions
) -> None:
    src = tmp_path / "model.pt"
    torch.save(state_dict(), src)
    head = started(src, tmp_path / "out", options, min_bytes=0)
    assert head.target is None and not head.wait()
    assert list(tmp_path.iterdir()) == [src]


def test_small_files_and_existing_destinations_get_no_head_start(tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    torch.save(state_dict(), src)
    assert started(src, tmp_path / "out.pt", PARAMS).target is None  # under MIN_BYTES
    (tmp_path / "out.pt").write_bytes(b"mine")
    assert started(src, tmp_path / "out.pt", PARAMS, min_bytes=0).target is None
    assert (tmp_path / "out.pt").read_bytes() == b"mine"


def torch_like_zip(path: Path, pickle_bytes: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/data/0", b"\0" * 64)
        z.writestr("archive/version", "3\n")


class Hostile:
    def __reduce__(self):  # noqa: ANN204 - the pickle's payload
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"w": Hostile()}, protocol=2),
        b"\x80\x02N" + b"r" + struct.pack("<I", 2**28) + b".",  # a 4 GB memo from 9 bytes
        b"\x80\x02" + b"\x8b" + struct.pack("<i", 1 << 20) + b"\x01" * (1 << 20) + b".",  # LONG4
        b"not a pickle",
    ],
    ids=["code", "memo-bomb", "long4", "garbage"],
)
def test_hostile_pickles_get_no_head_start_and_run_nothing(
    tmp_path: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "hostile.pt"
    torch_like_zip(src, payload)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert head.target is None and not (tmp_path / "pwned").exists()
    with pytest.raises(Unreadable):
        read_pickle(payload)


def test_the_pickle_reader_describes_tensors_without_torch() -> None:
    sd = OrderedDict(w=torch.ones(2, 3), v=torch.arange(6.0)[2:])
    buffer = io.BytesIO()
    torch.save(sd, buffer, _use_new_zipfile_serialization=True)
    with zipfile.ZipFile(buffer) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        obj = read_pickle(z.read(name))
    assert isinstance(obj, OrderedDict) and list(obj) == ["w", "v"]
    assert obj["w"].size == (2, 3) and obj["w"].stride == (3, 1) and obj["w"].span() == (0, 6)
    assert obj["v"].offset == 2 and obj["v"].span() == (2, 6) and obj["v"].storage.numel == 6
    # A slice of a storage is not written whole: nothing from it on is copied ahead.
    assert storages_in_order(obj) == [obj["w"].storage]


def test_the_command_line_export_takes_the_head_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(head_start_module, "MIN_BYTES", 0)
    sd = state_dict()
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    taken: list[HeadStart] = []
    real = head_start_module.head_start

    def watched(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real call, counted
        head = real(*args, **kwargs)
        taken.append(head)
        return head

    monkeypatch.setattr("ckpt_gui.commands.export.head_start", watched)
    assert main(["export", str(src), str(tmp_path / "out.pt")]) == 0
    assert len(taken) == 1 and len(taken[0].placed) == len(sd)  # copied, then adopted
    assert "verified: all 9 tensors equal the source exactly" in capsys.readouterr().out
    loaded = torch.load(tmp_path / "out.pt", weights_only=True)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_a_module_imported_in_the_background_raises_its_error_on_join() -> None:
    good = import_in_background("json")
    good.join()
    bad = import_in_background("ckpt_gui.no_such_module")
    with pytest.raises(ModuleNotFoundError):
        bad.join()


def test_the_head_start_and_the_export_command_load_without_torch() -> None:
    code = (
        "import sys, ckpt_gui.commands.export, ckpt_gui.core.export.head_start; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_without_fork_the_head_start_copies_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "fork")  # as on Windows
    sd = state_dict()
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert head.copying is None and len(head.placed) == len(sd)
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    loaded = torch.load(out, weights_only=True)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_terminated_while_the_head_start_forks_the_export_ends_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    # SIGTERM right as the temporary file appears, the moment the head start forks: a
    # KeyboardInterrupt raised inside one of the fork's hooks once left logging's lock taken,
    # and the process waited for torch's import forever (1 of 2 runs here).
    src = tmp_path / "src.pt"
    torch.save({"w": torch.randn(4096, 4097)}, src)  # over MIN_BYTES: a head start
    out = tmp_path / "out.pt"
    for delay in (0, 0, 0, 0.0005, 0.001, 0.002, 0.005, 0.01):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ckpt_gui", "export", str(src), str(out), "--force"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        while not list(tmp_path.glob(".out.pt*")) and proc.poll() is None:
            time.sleep(0.0002)
        time.sleep(delay)
        proc.terminate()
        assert proc.wait(timeout=30) in (0, 2)
        time.sleep(0.05)  # the child, killed or done, has let go of the file
        assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out.pt") == ["src.pt"]


def test_the_comparing_ahead_stops_when_asked_and_leaves_out_what_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check`` tells of the pieces it found equal and of one found different (which the
    report leaves out), and stops between two steps when asked: the pieces it did not get to
    stay, unchecked."""
    monkeypatch.setattr(ahead_copy, "_CHECK_STEP", 1 << 20)
    g = torch.Generator().manual_seed(5)
    sd = {f"w{i}": torch.randn(768, 1024, generator=g) for i in range(4)}  # 3 MB: 3 steps
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    head = head_start(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    fd = os.open(src, os.O_RDONLY)
    try:
        with open(tmp_path / "ahead.pt", "w+b") as file:
            result, placed = ahead_copy.place(fd, file, head.header, head.pieces)
            assert len(placed) == 4 and not any(p.checked for p in placed)
            spoiled = placed[1]
            os.pwrite(result, b"\xff" * 8, spoiled.data_at + spoiled.nbytes - 8)  # its last step
            asked = []

            def stop_at_the_tenth_step() -> bool:
                asked.append(True)
                return len(asked) > 9

            report = ahead_copy._Report()
            report.placed = placed
            ahead_copy.check(fd, result, placed, stop_at_the_tenth_step, report.same.__setitem__)
            checked = report.pieces()
    finally:
        os.close(fd)
    # w0 (3 steps) equal; w1 different at its 3rd step: left out; w2 (3 steps) equal; the 10th
    # step, w3's first, is where it was asked to stop: w3 stays, unchecked.
    assert [(p.offset, p.checked) for p in checked] == [
        (placed[0].offset, True),
        (placed[2].offset, True),
        (placed[3].offset, False),
    ]
    assert len(asked) == 10


def test_pieces_placed_after_the_export_asked_are_compared_as_they_come(
    tmp_path: Path, read: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child still copying when the export asks for the file goes on; each piece it places
    from then on is compared by the export's process while the child copies the next, so the
    verification reads none of them again."""
    from ckpt_gui.core.export import sink as sink_module

    monkeypatch.setattr(ahead_copy, "CHECK_AHEAD", True)
    real_copy = sink_module.Sink.copy

    def slow_copy(self, *args) -> None:  # noqa: ANN001, ANN002 - the child copies slowly
        time.sleep(0.15)
        real_copy(self, *args)

    monkeypatch.setattr(sink_module.Sink, "copy", slow_copy)
    g = torch.Generator().manual_seed(6)
    sd = {f"w{i}": torch.randn(512, 1024, generator=g) for i in range(4)}  # 2 MB each
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    placed = head.wait()  # asked at once: the child has placed none of them yet
    assert len(placed) == 4 and all(p.checked for p in placed)
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    assert read == []  # compared once, as they were placed
    loaded = torch.load(out, weights_only=True)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_a_child_s_report_marks_what_was_compared() -> None:
    """Pieces found equal are ``checked``, one found different is left out (the export writes
    it), one not compared stays as it was placed."""
    report = ahead_copy._Report()
    rows = [[64 * i, 64 * i + 32, f"data/{i}", [1, 2], 4096 * i, 32, 7, False] for i in range(3)]
    for row in rows:
        report.take(["p", *row])
    report.take(["c", 0, True])
    assert report.unchecked(exclude={2}) == [1]
    report.same.update({1: False})
    assert not report.ended
    report.take(["end"])
    assert report.ended
    pieces = report.pieces()
    assert [(p.name, p.checked) for p in pieces] == [("data/0", True), ("data/2", False)]


def test_a_child_with_much_to_report_copies_on_before_anyone_reads(tmp_path: Path) -> None:
    """The reports of a thousand pieces are more than a pipe holds: the child keeps what the
    pipe does not take and goes on copying (the export's process reads nothing while it
    imports torch), then hands it all over."""
    sd = {f"layers.{i}.weight": torch.full((16,), float(i)) for i in range(1000)}
    src = tmp_path / "many.pt"
    torch.save(sd, src)
    head = started(src, tmp_path / "out.pt", PARAMS, min_bytes=0)
    assert head.target is not None and head.target.path is not None
    last = head.pieces[-1]
    deadline = time.monotonic() + 60
    while os.stat(head.target.path).st_size < last.position + last.nbytes:  # nobody reads yet
        assert time.monotonic() < deadline, "the child waited for its report to be read"
        time.sleep(0.01)
    placed = head.wait(finish_checks=True)
    assert len(placed) == 1000 and all(p.checked for p in placed)
    out = exported(src, tmp_path / "out.pt", PARAMS, head)
    loaded = torch.load(out, weights_only=True)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
