"""DCP tensors whose chunk lists leave part of them without data: refused, never shown as
whatever bytes this process's heap held (torch's reader fills a tensor made with torch.empty)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata

from ckpt_gui.cli import main
from ckpt_gui.core.formats.dcp import read_metadata
from ckpt_gui.core.reader import open_checkpoint


def dcp_folder(path: Path) -> Path:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({"w": torch.ones(4, 6), "b": torch.ones(6)}, checkpoint_id=path, no_dist=True)
    return path


def rewrite_chunks(folder: Path, key: str, chunks: list[ChunkStorageMetadata]) -> None:
    meta = read_metadata(folder)
    meta.state_dict_metadata[key].chunks = chunks
    (folder / ".metadata").write_bytes(pickle.dumps(meta))


def chunk(offsets: tuple[int, ...], sizes: tuple[int, ...]) -> ChunkStorageMetadata:
    return ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes))


@pytest.mark.parametrize(
    "chunks",
    [
        [],  # no chunk at all: every byte would be the heap's
        [chunk((0, 0), (2, 6))],  # half the rows
        [chunk((0, 0), (4, 6)), chunk((0, 0), (1, 6))],  # all of it, and a row twice
        [chunk((0, 0), (2, 6)), chunk((1, 0), (3, 6))],  # overlapping halves, one row short
        [chunk((3, 0), (2, 6))],  # outside the tensor
    ],
)
def test_chunks_that_do_not_tile_the_tensor_are_refused(
    tmp_path: Path, capsys, chunks: list[ChunkStorageMetadata]
) -> None:
    folder = dcp_folder(tmp_path / "dcp")
    rewrite_chunks(folder, "w", chunks)
    for command in ("inspect", "stats"):
        assert main([command, str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "'w'" in err[0], err
        assert "do not cover it exactly" in err[0] or "lies outside the tensor" in err[0]


def test_a_well_tiled_tensor_reads_its_data(tmp_path: Path) -> None:
    folder = dcp_folder(tmp_path / "dcp")
    with open_checkpoint(folder) as ckpt:
        assert torch.equal(ckpt.find("w").load(), torch.ones(4, 6))


def test_many_chunks_cost_their_length_not_its_square(tmp_path: Path) -> None:
    """Thousands of references to one empty chunk (a few bytes each in the pickle) once made
    the overlap test quadratic: 8,000 took 42 s to open. Empty chunks are skipped and the test
    sweeps, so a row-sharded tensor of many chunks opens at once and still tiles exactly."""
    folder = dcp_folder(tmp_path / "dcp")
    empty = chunk((0, 0), (0, 6))
    rewrite_chunks(folder, "w", [chunk((0, 0), (4, 6))] + [empty] * 20_000)
    with open_checkpoint(folder) as ckpt:
        assert torch.equal(ckpt.find("w").load(), torch.ones(4, 6))
    rows = [chunk((i, 0), (1, 6)) for i in range(4)]
    rewrite_chunks(folder, "w", rows[:3] + [chunk((2, 0), (1, 6))])  # row 2 twice, row 3 never
    with pytest.raises(Exception, match="do not cover it exactly"):
        open_checkpoint(folder)
