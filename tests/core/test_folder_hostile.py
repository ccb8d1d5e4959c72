"""Hostile folders through the real CLI: FIFOs and devices where a folder's files should be,
storage paths that leave the folder, and exports that would replace a file the source reads.

Every refusal is exit 2 with one line on stderr. Cases that could block (a FIFO) or eat memory
(``/dev/zero``) run in a child process with a timeout and a memory cap (``run_cli``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ckpt_gui.cli import main
from tests.core.hostile_folders import (
    DCP_DATA,
    INDEX,
    SHARD_1,
    SHARD_2,
    dcp_folder,
    hf_folder,
    move_out_and_link,
    replace_by_fifo,
    rewrite_storage_paths,
    run_cli,
)

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


# 1. Files that are not regular files: refused from stat, never opened in a blocking way.


@needs_fifo
def test_fifo_index_in_a_model_folder_is_refused(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path)
    replace_by_fifo(folder / INDEX)
    for result in run_cli(["inspect", folder], ["stats", folder], ["inspect", folder / INDEX]):
        assert result.code == 2
        assert "named pipe" in one_line(result.err) or "not a regular file" in result.err


@needs_fifo
@pytest.mark.parametrize("with_index", [True, False])
def test_fifo_shard_is_refused(tmp_path: Path, with_index: bool) -> None:
    folder = hf_folder(tmp_path)
    replace_by_fifo(folder / SHARD_2)
    if not with_index:
        (folder / INDEX).unlink()
    (result,) = run_cli(["stats", folder])
    assert result.code == 2
    assert SHARD_2 in one_line(result.err) and "named pipe" in result.err


@needs_fifo
def test_fifo_dcp_data_file_is_refused(tmp_path: Path) -> None:
    folder = dcp_folder(tmp_path)
    replace_by_fifo(folder / DCP_DATA)
    out = tmp_path / "out.safetensors"
    for result in run_cli(["stats", folder], ["export", folder, out, "--cpu-copy"]):
        assert result.code == 2
        assert DCP_DATA in one_line(result.err) and "named pipe" in result.err
    assert not out.exists()


@needs_fifo
def test_fifo_dcp_metadata_is_refused(tmp_path: Path) -> None:
    folder = dcp_folder(tmp_path)
    replace_by_fifo(folder / ".metadata")
    (result,) = run_cli(["inspect", folder])
    assert result.code == 2
    assert ".metadata" in one_line(result.err) and "named pipe" in result.err


# 2. Index and metadata files are read with a limit checked against the file first.


@pytest.mark.parametrize("name", [INDEX, ".metadata"])
def test_index_linked_to_dev_zero_is_refused(tmp_path: Path, name: str) -> None:
    folder = hf_folder(tmp_path) if name == INDEX else dcp_folder(tmp_path)
    (folder / name).unlink()
    (folder / name).symlink_to("/dev/zero")
    (result,) = run_cli(["inspect", folder])
    assert result.code == 2
    assert name in one_line(result.err) and "is a device" in result.err


def test_oversized_index_is_refused_before_reading(tmp_path: Path, capsys) -> None:
    folder = hf_folder(tmp_path)
    with open(folder / INDEX, "r+b") as f:
        f.truncate(65 * 2**20)  # sparse: the valid JSON, then zeros
    for target in (folder, folder / INDEX):
        code, err = cli(capsys, "inspect", target)
        assert code == 2
        assert "over the 64 MiB limit" in one_line(err)


# 3. Every storage path is a plain file name inside the opened folder.


@pytest.mark.parametrize("spelling", ["../victim.distcp", "absolute", "sub/__0_0.distcp"])
@pytest.mark.parametrize("command", ["stats", "export"])
def test_dcp_storage_path_outside_the_folder_is_refused(
    tmp_path: Path, capsys, spelling: str, command: str
) -> None:
    folder = dcp_folder(tmp_path)
    victim = tmp_path / "victim.distcp"
    shutil.copy(folder / DCP_DATA, victim)
    (folder / "sub").mkdir()
    (folder / DCP_DATA).rename(folder / "sub" / DCP_DATA)
    path = str(victim) if spelling == "absolute" else spelling
    rewrite_storage_paths(folder, lambda _: path)
    out = tmp_path / "out.safetensors"
    args = ["stats", folder] if command == "stats" else ["export", folder, out, "--cpu-copy"]
    code, err = cli(capsys, *args)
    assert code == 2
    assert "not a file name in the folder" in one_line(err)
    assert not out.exists()


@pytest.mark.parametrize("name", ["../victim.safetensors", "absolute", "sub/x.safetensors", "."])
def test_index_shard_name_outside_the_folder_is_refused(tmp_path: Path, capsys, name: str) -> None:
    folder = hf_folder(tmp_path)
    victim = tmp_path / "victim.safetensors"
    shutil.copy(folder / SHARD_2, victim)
    name = str(victim) if name == "absolute" else name
    index = json.loads((folder / INDEX).read_text())
    index["weight_map"] = {k: name if v == SHARD_2 else v for k, v in index["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(index))
    for target in (folder, folder / INDEX):
        code, err = cli(capsys, "stats", target)
        assert code == 2
        assert "index" in one_line(err)


# 4. An export never replaces a file the source reads, however the destination is spelled.


@pytest.mark.parametrize("force", [True, False])
@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("where", ["outside", "inside"])
def test_export_onto_a_linked_shard_is_refused(
    tmp_path: Path, capsys, monkeypatch, where: str, link: str, force: bool
) -> None:
    folder = hf_folder(tmp_path)
    victim = (tmp_path if where == "outside" else folder) / "victim.safetensors"
    move_out_and_link(folder / SHARD_1, victim, hard=link == "hardlink")
    before = victim.read_bytes()
    alias = tmp_path / "alias.safetensors"
    alias.symlink_to(folder / SHARD_1)
    monkeypatch.chdir(victim.parent)
    spellings = [victim, "victim.safetensors", f"./../{victim.parent.name}/victim.safetensors"]
    for dst in [*spellings, alias, tmp_path / "hardlink.safetensors"]:
        if dst == tmp_path / "hardlink.safetensors":
            os.link(victim, dst)
        code, err = cli(capsys, "export", folder, dst, *(["--force"] if force else []))
        assert code == 2, dst
        assert "source" in one_line(err), err
    assert victim.read_bytes() == before
    # Exporting elsewhere still works, and the source still reads as it did.
    assert main(["export", str(folder), str(tmp_path / "fine.safetensors")]) == 0
    assert set(load_file(tmp_path / "fine.safetensors")) == {f"layer{i}.weight" for i in range(4)}


@pytest.mark.parametrize("name", [INDEX, SHARD_2])
def test_export_onto_a_linked_index_or_shard_outside_is_refused(
    tmp_path: Path, capsys, name: str
) -> None:
    folder = hf_folder(tmp_path)
    victim = tmp_path / f"victim-{name}"
    move_out_and_link(folder / name, victim)
    before = victim.read_bytes()
    code, err = cli(capsys, "export", folder, victim, "--format", "safetensors", "--force")
    assert code == 2
    assert "source" in one_line(err)
    assert victim.read_bytes() == before


@pytest.mark.parametrize("name", [DCP_DATA, ".metadata"])
def test_export_onto_a_dcp_file_is_refused(tmp_path: Path, capsys, name: str) -> None:
    folder = dcp_folder(tmp_path)
    before = (folder / name).read_bytes()
    hard = tmp_path / "hard.safetensors"
    os.link(folder / name, hard)
    alias = tmp_path / "alias.safetensors"
    alias.symlink_to(folder / name)
    for dst in (hard, alias):
        code, err = cli(capsys, "export", folder, dst, "--cpu-copy", "--force")
        assert code == 2
        assert "source" in one_line(err)
    assert (folder / name).read_bytes() == before


@pytest.mark.parametrize("source_kind", ["file", "folder"])
@pytest.mark.parametrize("force", [True, False])
def test_sharded_export_into_a_folder_whose_shard_links_to_the_source(
    tmp_path: Path, capsys, source_kind: str, force: bool
) -> None:
    if source_kind == "file":
        src = tmp_path / "src.safetensors"
        save_file({f"t{i}": torch.full((16,), float(i)) for i in range(4)}, src)
        targets = [src]
    else:
        src = hf_folder(tmp_path)
        targets = [src / SHARD_1, src / INDEX]
    probe = tmp_path / "probe"
    assert main(["export", str(src), str(probe), "--shard-size", "100B"]) == 0
    names = sorted(p.name for p in probe.iterdir())
    assert len(names) >= 3  # two shards or more, and the index
    for target in targets:
        out = tmp_path / f"out-{target.name}"
        out.mkdir()
        linked = names[-1] if target.name == INDEX else names[0]
        (out / linked).symlink_to(target)
        before = target.read_bytes()
        args = ["export", src, out, "--shard-size", "100B", *(["--force"] if force else [])]
        code, err = cli(capsys, *args)
        assert code == 2
        assert "source" in one_line(err)
        assert target.read_bytes() == before and (out / linked).is_symlink()
