"""Hostile files, round two: no crash, no memory bomb, no heap bytes shown as data, and the tree
shows what torch's loader (and ``load_state_dict``) would really see. Every command runs in a
subprocess with an address-space limit, so a regression fails the test instead of the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.export import ExportOptions, plan_export
from ckpt_gui.core.reader import open_checkpoint
from tests.core import hostile_memory as hm

# Runs every command on every file in one process (torch imports once), within 4 GiB of address
# space, and reports exit codes, stderr and the peak resident memory.
_RUNNER = r"""
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from ckpt_gui.cli import main
results = []
for path in sys.argv[1:]:
    for argv in (["inspect", path], ["stats", path], ["scan", path]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        results.append({"argv": argv, "code": code, "err": err.getvalue()})
# This process's own high-water mark (VmHWM): ru_maxrss would also count the parent's memory
# at the fork, which grows with every test the suite ran before this one.
try:
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"results": results, "peak": peak}))
"""

REFUSED = {
    "bytearray.pt": (hm.bytearray_bomb, "asks for bytearray(1,000,000,000) (one of 3 such calls)"),
    "float_tensor.pt": (hm.float_tensor_bomb, "asks for torch.FloatTensor(4,294,967,296)"),
    "legacy.pt": (hm.legacy_storage_bomb, "declares 4.4 TB of tensor data but holds"),
    "copies.pt": (hm.copied_bytes_bomb, "asks for bytearray(<16,777,216 bytes>)"),
    "copies_structural.pt": (
        lambda p: hm.copied_bytes_bomb(p, structural=True),
        "asks for bytearray(<16,777,216 bytes>)",
    ),
    "size_nesting.pt": (hm.size_nesting_crash, "a damaged"),
    "copied_result.pt": (hm.copied_result_bomb, "asks for bytearray(60,000,000) (one of 31"),
    "encoded.pt": (hm.encoded_copies_bomb, "asks for _codecs.encode(<4,000,000 characters>)"),
}


def test_memory_bombs_and_crashers_are_refused_within_budget(tmp_path: Path) -> None:
    paths = []
    for name, (write, _) in REFUSED.items():
        write(tmp_path / name)
        paths.append(str(tmp_path / name))
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, *paths], capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr[-2000:]  # no SIGSEGV, no MemoryError traceback
    report = json.loads(run.stdout)
    assert report["peak"] < 1 << 30, f"peak RSS {report['peak'] / 2**20:.0f} MiB"
    for result in report["results"]:
        command, path = result["argv"]
        expected = REFUSED[Path(path).name][1]
        lines = result["err"].strip().splitlines()
        if command == "scan":  # scan reads without loading: it reports, never refuses these
            assert result["code"] in (0, 1, 2), result
            continue
        assert result["code"] == 2, result
        assert len(lines) == 1 and "Traceback" not in result["err"], result
        assert expected in lines[0] or "nested" in lines[0] or "torch.Size" in lines[0], lines


def test_size_nesting_is_refused_in_the_structural_view(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nest.pt"
    hm.size_nesting_crash(path, depth=1000)  # small enough to run in this process
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "torch.Size needs a sequence of ints" in err


def test_scan_tells_of_allocations(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bomb.pt"
    hm.bytearray_bomb(path)
    assert main(["scan", str(path), "--json"]) == 0  # bytearray is a safe global: no code runs
    report = json.loads(capsys.readouterr().out)
    assert [a["call"] for a in report["allocations"]] == ["bytearray(1,000,000,000)"] * 3


def test_uninitialised_tensors_are_marked_never_measured_never_exported(
    tmp_path: Path, capsys
) -> None:
    path = tmp_path / "ghost.pt"
    hm.uninitialised_tensor(path)
    assert torch.load(path, weights_only=True)["ghost"].shape == (2048,)  # torch makes it
    with open_checkpoint(path) as ckpt:
        ghost, real = ckpt.find("ghost"), ckpt.find("w")
        assert ghost.tensor.uninitialised and not real.tensor.uninitialised
        with pytest.raises(Exception, match="uninitialised \\(no data in the file\\)"):
            ghost.load()
        plan = plan_export(ckpt, ExportOptions(mode="all"))
        assert [k.key for k in plan.kept] == ["w"]
        assert [(d.key, d.reason) for d in plan.dropped] == [
            ("ghost", "no data: uninitialised (no data in the file)")
        ]
    assert main(["stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert [t["key"] for t in stats["tensors"] if t.get("min") is not None] == ["w"]
    assert main(["scan", str(path)]) == 0
    assert "torch.Tensor(2,048) makes an uninitialised tensor" in capsys.readouterr().out


def test_an_items_attribute_cannot_hide_the_entries(tmp_path: Path) -> None:
    path = tmp_path / "items.pt"
    hm.items_override(path)
    loaded = torch.load(path, weights_only=True)
    assert loaded.items == "nothing"  # what a reader calling .items() would trip over
    model = torch.nn.Linear(2, 2, bias=False)
    model.load_state_dict(loaded)  # what a real load sees: the weight
    assert model.weight.max().item() == 666.0
    with open_checkpoint(path) as ckpt:
        assert ckpt.find("weight").load().max().item() == 666.0
        assert any("sets items on the object" in note for note in ckpt.notes)


def test_tensor_attributes_cannot_hide_its_data(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    hm.tensor_attribute_override(path)
    assert torch.load(path, weights_only=True)["w"].untyped_storage == "not a method"
    with open_checkpoint(path) as ckpt:
        node = ckpt.find("w")
        assert node.tensor.stride == (1,) and node.load().tolist() == [1.0, 2.0, 3.0, 4.0]
        assert node.overrides == ("untyped_storage", "stride")
        assert any("sets untyped_storage, stride" in note for note in ckpt.notes)
