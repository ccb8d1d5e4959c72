"""``ckpt-gui scan``: every global in every pickle, judged, without unpickling anything."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tarfile
import textwrap
import threading
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.cli import main
from ckpt_gui.core.errors import CheckpointError, CorruptError, NotACheckpointError, NotFoundError
from ckpt_gui.core.safety.globals import classify
from ckpt_gui.core.safety.scan import ScanReport, scan_file, scan_path
from tests.core.hostile import (
    Entry,
    Hostile,
    bomb_stream,
    stack_global_memo_pickle,
    write_archive,
    write_corpus,
    write_zip,
)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear1(x) * 2


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["scan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def names(report: ScanReport, verdict: str | None = None) -> set[tuple[str, str]]:
    return {(g.module, g.name) for g in report.globals if verdict in (None, g.verdict)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Hostile]:
    return write_corpus(tmp_path_factory.mktemp("hostile"))


# -- real checkpoints ----------------------------------------------------------------------------


def test_state_dict_is_safe_and_json_matches_cli_md(tmp_path, capsys):
    path = tmp_path / "sd.pt"
    torch.save(Net().state_dict(), path)
    code, out, _ = run_cli(capsys, str(path), "--json")
    data = json.loads(out)
    assert code == 0
    assert {"path", "verdict", "globals"} <= set(data)
    assert data["path"] == str(path) and data["verdict"] == "safe"
    assert {tuple(sorted(g)) for g in data["globals"]} == {
        ("count", "module", "name", "verdict", "where", "written")
    }
    assert ("torch._utils", "_rebuild_tensor_v2") in {
        (g["module"], g["name"]) for g in data["globals"]
    }
    assert {g["verdict"] for g in data["globals"]} == {"safe"}
    assert {g["where"] for g in data["globals"]} == {"sd/data.pkl"}


def test_pickled_model_is_unknown_and_exits_1(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(Net(), path)
    code, out, _ = run_cli(capsys, str(path))
    assert code == 1
    assert f"unknown  {Net.__module__}.Net" in out
    assert "torch.nn.modules.linear.Linear" in out
    assert out.strip().endswith("pickle scanned)") and "UNKNOWN" in out.splitlines()[-1]
    as_written = {(g.module, g.name): g.written for g in scan_file(path).globals}
    assert as_written[("builtins", "set")] == "__builtin__.set"  # protocol 2 spelling


def test_legacy_file_scans_all_five_pickles(tmp_path):
    path = tmp_path / "legacy.pt"
    obj = {"w": torch.ones(2), "step": np.int64(3)}
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    report = scan_file(path)
    assert report.format == "torch-legacy"
    assert report.pickles == [f"legacy pickle #{i}" for i in range(1, 6)]
    numpy_scalar = [g for g in report.globals if g.name == "scalar"]
    assert numpy_scalar and numpy_scalar[0].verdict == "safe"  # a known harmless constructor
    assert numpy_scalar[0].where == "legacy pickle #4"
    assert report.verdict == "safe"


class Scripted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + 1


def test_torchscript_archive_scans_every_pickle(tmp_path):
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(Scripted()), path)
    report = scan_file(path)
    assert report.format == "torchscript"
    assert "ts/data.pkl" in report.pickles and "ts/constants.pkl" in report.pickles
    assert any(p.endswith(".debug_pkl") for p in report.pickles)
    assert report.verdict == "unknown"


def test_safetensors_has_no_pickle(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(3)}, path)
    code, out, _ = run_cli(capsys, str(path), "--json")
    data = json.loads(out)
    assert (code, data["verdict"], data["globals"], data["format"]) == (
        0,
        "safe",
        [],
        "safetensors",
    )


def test_folder_scans_shards_and_dcp_metadata(tmp_path):
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "repo"
    folder.mkdir()
    torch.save({"a": torch.ones(2)}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.ones(2)}, folder / "pytorch_model-00002-of-00002.bin")
    (folder / "config.json").write_text('{"hidden": 4}')
    dcp.save({"w": torch.ones(3)}, checkpoint_id=str(folder / "dcp"))
    report = scan_path(folder)
    assert report.format == "folder"
    assert (
        "pytorch_model-00002-of-00002.bin:pytorch_model-00002-of-00002/data.pkl" in report.pickles
    )
    assert "dcp/.metadata:pickle" in report.pickles
    assert "config.json" in report.skipped
    metadata = [g for g in report.globals if g.where == "dcp/.metadata:pickle"]
    assert ("torch.distributed.checkpoint.metadata", "Metadata") in {
        (g.module, g.name) for g in metadata
    }
    assert report.verdict == "unknown"


def test_empty_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run_cli(capsys, str(tmp_path))
    assert code == 2 and "no checkpoint file" in err


# -- the hostile corpus --------------------------------------------------------------------------


def test_every_payload_is_found_and_never_runs(corpus, capsys):
    for hostile in corpus:
        code, out, _ = run_cli(capsys, str(hostile.path), "--json")
        data = json.loads(out)
        found = {(g["module"], g["name"]): g["verdict"] for g in data["globals"]}
        if hostile.expect is not None:
            assert found.get(hostile.expect) == "unsafe", (hostile.name, found)
            assert data["verdict"] == "unsafe" and code == 1, hostile.name
        else:
            assert data["verdict"] == "unknown" and code == 1, hostile.name
    assert not [h.name for h in corpus if h.sentinel.exists()]


def test_payloads_are_live(tmp_path):
    """Loaded the unsafe way, every payload of the corpus does create its sentinel: the
    never-appears assertions elsewhere are meaningful."""
    corpus = write_corpus(tmp_path / "live")
    script = textwrap.dedent(
        """
        import json, pickle, sys, torch
        for path, loader, extra in json.loads(sys.argv[1]):
            if extra:
                sys.path.insert(0, extra)
            try:
                if loader == "torch":
                    torch.load(path, weights_only=False)
                else:
                    with open(path, "rb") as f:
                        pickle.load(f)
            except Exception as exc:
                print(path, type(exc).__name__, exc)
        """
    )
    jobs = json.dumps([[str(h.path), h.loader, h.sys_path] for h in corpus])
    subprocess.run([sys.executable, "-c", script, jobs], check=True, timeout=300)
    assert [h.name for h in corpus if not h.sentinel.exists()] == []


def test_nested_pickle_is_scanned_inside(corpus):
    report = scan_file(next(h for h in corpus if h.name == "nested_pickle_loads").path)
    nested = [g for g in report.globals if "nested pickle" in g.where]
    assert ("builtins", "exec", "unsafe") in {(g.module, g.name, g.verdict) for g in nested}
    for name in ("nested_torch_zip", "nested_torch_legacy"):
        report = scan_file(next(h for h in corpus if h.name == name).path)
        nested = {(g.module, g.name) for g in report.globals if "nested pickle" in g.where}
        assert ("builtins", "exec") in nested, name


def test_stack_global_names_from_the_memo(tmp_path):
    path = tmp_path / "memo.pkl"
    path.write_bytes(stack_global_memo_pickle("subprocess", "Popen", "x"))
    report = scan_file(path)
    assert [(g.module, g.name, g.verdict, g.where) for g in report.globals] == [
        ("subprocess", "Popen", "unsafe", "pickle")
    ]


def test_protocol4_torch_save_reuses_names_from_the_memo(corpus):
    report = scan_file(next(h for h in corpus if h.name == "zip_protocol4").path)
    assert {("builtins", "exec"), ("builtins", "eval")} <= names(report, "unsafe")


def test_names_computed_at_load_time_are_unknown(tmp_path):
    # STACK_GLOBAL(str("os"), "system"): the module name only exists once str() has run.
    data = (
        b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R\x8c\x06system\x93\x8c\x01x\x85R."
    )
    path = tmp_path / "computed.pkl"
    path.write_bytes(data)
    report = scan_file(path)
    assert ("?", "?") in names(report, "unknown")
    assert report.verdict == "unknown"


def test_unregistered_extension_code_is_unknown(tmp_path):
    path = tmp_path / "ext.pkl"
    path.write_bytes(b"\x80\x02\x82\x05)R.")
    report = scan_file(path)
    assert names(report) == {("?", "?")} and report.verdict == "unknown"
    assert any("extension code 5" in n for n in report.notes)


def test_dotted_name_through_an_innocent_module_is_unsafe(tmp_path):
    path = tmp_path / "dotted.pkl"
    path.write_bytes(b"\x80\x04\x8c\x05torch\x8c\x17serialization.os.system\x93\x8c\x01x\x85R.")
    report = scan_file(path)
    assert ("torch", "serialization.os.system") in names(report, "unsafe")


def test_any_pickle_in_a_zip_is_scanned(tmp_path):
    path = tmp_path / "extra.pt"
    write_archive(path, pickle.dumps({}, protocol=2), {})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/extra.pkl", stack_global_memo_pickle("os", "system", "x"))
    report = scan_file(path)
    assert [(g.module, g.name, g.where) for g in report.globals] == [
        ("os", "system", "archive/extra.pkl")
    ]


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    path = tmp_path / "ansi.pkl"
    path.write_bytes(stack_global_memo_pickle("\x1b[2Jevil", "x", "y"))
    code, out, _ = run_cli(capsys, str(path))
    assert code == 1 and "\x1b" not in out and "\\x1b[2Jevil.x" in out


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("nt", "system"),
        ("builtins", "getattr"),
        ("builtins", "eval"),
        ("__builtin__", "exec"),
        ("subprocess", "Popen"),
        ("importlib", "import_module"),
        ("importlib.util", "spec_from_file_location"),
        ("runpy", "run_module"),
        ("pickle", "loads"),
        ("_pickle", "loads"),
        ("shutil", "rmtree"),
        ("sys", "exit"),
        ("socket", "socket"),
        ("ctypes", "CDLL"),
        ("webbrowser", "open"),
        ("code", "interact"),
        ("pty", "spawn"),
        ("types", "FunctionType"),
        ("torch.storage", "_load_from_bytes"),
        ("numpy.testing._private.utils", "runstring"),
    ],
)
def test_classic_gadgets_are_unsafe(module, name):
    assert classify(module, name) == "unsafe"


def test_everything_torch_allows_by_default_is_safe():
    from torch._weights_only_unpickler import _get_allowed_globals

    for full in _get_allowed_globals():
        module, _, name = full.rpartition(".")
        assert classify(module, name) == "safe", full


@pytest.mark.parametrize(
    "full",
    [
        "__main__.Net",
        "torch.nn.modules.linear.Linear",
        "omegaconf.dictconfig.DictConfig",
        "pyannote.audio.core.task.Specifications",
        "numpy.core.multiarray.frombuffer",
        # Constructors whose cost the pickle does not bound: list(range(10**9)) allocates tens
        # of GB, Fraction("1e999999999") computes for hours.
        "builtins.range",
        "fractions.Fraction",
        "decimal.Decimal",
        "collections.deque",
    ],
)
def test_classes_we_cannot_vouch_for_are_unknown(full):
    module, _, name = full.rpartition(".")
    assert classify(module, name) == "unknown"


@pytest.mark.parametrize(
    "full",
    [
        "builtins.list",
        "builtins.dict",
        "builtins.int",
        "builtins.str",
        "collections.defaultdict",
        "typing.Any",
        "argparse.Namespace",
        "pathlib.PosixPath",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy.dtype",
    ],
)
def test_known_harmless_globals_are_safe_so_real_unknowns_stand_out(full):
    """Constructors of plain data: naming them cannot run anything (their arguments are judged
    on their own). Listing them as unknown drowned omegaconf and pyannote classes."""
    module, _, name = full.rpartition(".")
    assert classify(module, name) == "safe"


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (bytes(random.Random(0).randbytes(4096)), "unrecognised binary data"),
        (b"hello world, this is not a checkpoint\n" * 20, "a text file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "a PNG image"),
    ],
)
def test_not_a_checkpoint(tmp_path, capsys, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError, match=message):
        scan_file(path)
    code, out, err = run_cli(capsys, str(path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_missing_file_exits_2(tmp_path, capsys):
    with pytest.raises(NotFoundError):
        scan_file(tmp_path / "nope.pt")
    code, _, err = run_cli(capsys, str(tmp_path / "nope.pt"))
    assert code == 2 and "no such file" in err


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_at_any_point(tmp_path, legacy):
    path = tmp_path / "full.pt"
    torch.save({"w": torch.ones(2), "n": 3}, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    outcomes = set()
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        try:
            scan_file(cut)
            outcomes.add("scanned")
        except CheckpointError as exc:
            outcomes.add(type(exc).__name__)
            assert "\n" not in str(exc)
    assert "CorruptError" in outcomes


def test_flipped_bytes_give_a_result_or_a_clear_error(tmp_path):
    path = tmp_path / "full.pt"
    torch.save({"w": torch.ones(2), "model": Net()}, path)
    data = bytearray(path.read_bytes())
    rng = random.Random(1)
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
        try:
            scan_file(path)
        except CheckpointError as exc:
            assert str(exc)


def test_zip_without_a_pickle(tmp_path):
    path = tmp_path / "z.pt"
    write_zip(path, [Entry("archive/readme.txt", b"hi")])
    with pytest.raises(NotACheckpointError, match="without any pickle"):
        scan_file(path)


def test_zip_with_two_data_pkl_or_duplicate_names(tmp_path):
    good = pickle.dumps({}, protocol=2)
    path = tmp_path / "two.pt"
    write_zip(path, [Entry("a/data.pkl", good), Entry("b/data.pkl", good)])
    with pytest.raises(CorruptError, match="2 data.pkl"):
        scan_file(path)
    write_zip(path, [Entry("a/data.pkl", good), Entry("a/data.pkl", b"cos\nsystem\n.")])
    with pytest.raises(CorruptError, match="twice"):
        scan_file(path)


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.pt"
    stream = bomb_stream(3)  # 3 GiB of zeros in about 3 MiB
    write_zip(path, [Entry("archive/data.pkl", stream, size=3 << 30, crc=0, deflated=True)])
    with pytest.raises(CorruptError, match="zip bomb"):
        scan_file(path)
    # A header that understates the size: reading stops at the declared size.
    write_zip(path, [Entry("archive/data.pkl", stream, size=1000, crc=0, deflated=True)])
    with pytest.raises(CorruptError):
        scan_file(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    errors: list[Exception] = []

    def scan() -> None:
        try:
            scan_path(fifo)
        except CheckpointError as exc:
            errors.append(exc)

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "scanning a FIFO blocked"
    assert "named pipe" in str(errors[0])


def test_deeply_nested_tuples_are_measured_not_recursed(tmp_path):
    depth = 50_000
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x02)" + b"\x85" * depth + b".")
    report = scan_file(path)
    assert report.verdict == "safe"
    assert report.max_tuple_depth == depth + 1
    assert any("can crash Python" in n for n in report.notes)
    lists = tmp_path / "lists.pkl"
    lists.write_bytes(b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    assert scan_file(lists).max_tuple_depth == 0


def test_legacy_tar_format_is_scanned(tmp_path):
    def member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    storages = pickle.dumps(1, protocol=2) + pickle.dumps(("0", "cpu", torch.FloatStorage), 2)
    storages += struct.pack("<q", 2) + bytes(8)
    tensors = pickle.dumps(0, protocol=2)
    path = tmp_path / "old.pt"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        member(tar, "sys_info", pickle.dumps({"little_endian": True}, protocol=2))
        member(tar, "storages", storages)
        member(tar, "tensors", tensors)
        member(tar, "pickle", stack_global_memo_pickle("os", "system", "x"))
    report = scan_file(path)
    assert report.format == "torch-tar"
    assert ("os", "system") in names(report, "unsafe")
    assert ("torch", "FloatStorage") in names(report, "safe")


def test_a_list_of_a_huge_range_is_not_safe(tmp_path):
    class Call:
        def __init__(self, func, *args):
            self.func, self.args = func, args

        def __reduce__(self):
            return self.func, self.args

    path = tmp_path / "bomb.pt"
    torch.save({"x": Call(list, (Call(range, 10**9),))}, path)
    report = scan_file(path)
    assert report.verdict == "unknown"
    assert {(g.module, g.name, g.verdict) for g in report.globals} >= {
        ("builtins", "range", "unknown")
    }
