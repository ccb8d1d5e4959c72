"""Hostile or broken DCP folders and shard indexes, and exports of structurally loaded files."""

from __future__ import annotations

import builtins
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file

from ckpt_gui.cli import main
from ckpt_gui.core.errors import CorruptError, UnsafeError
from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import TinyNet
from tests.core.hostile import save_with_module_name

META = "torch.distributed.checkpoint.metadata"


def _dcp_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(
            {"w": torch.arange(6.0), "b": torch.ones(2)}, checkpoint_id=str(folder), no_dist=True
        )
    return folder


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # the module's own imports are reachable through its namespace: never hand them out
        (f"c{META}\ntorch\n.".encode(), "references"),
        (f"c{META}\n__builtins__\n.".encode(), "references"),
        # BUILD may only fill in dataclasses this pickle made, not an enum member it reached
        (
            b"\x80\x02c" + META.encode() + b"\n_MEM_FORMAT_ENCODING\nK\x01\x85R"
            b"}X\x06\x00\x00\x00markerX\x05\x00\x00\x00pwnedsb.",
            "sets attributes",
        ),
    ],
)
def test_hostile_dcp_metadata_changes_nothing(tmp_path: Path, payload: bytes, message) -> None:
    folder = _dcp_folder(tmp_path)
    (folder / ".metadata").write_bytes(payload)
    with pytest.raises(UnsafeError, match=message):
        open_checkpoint(folder)
    assert not hasattr(torch, "marker") and not hasattr(builtins, "marker")
    from torch.distributed.checkpoint.metadata import _MEM_FORMAT_ENCODING

    assert not hasattr(_MEM_FORMAT_ENCODING(1), "marker")


def test_dcp_with_a_missing_data_file_is_one_line(tmp_path: Path, capsys) -> None:
    folder = _dcp_folder(tmp_path)
    for data in folder.glob("*.distcp"):
        data.unlink()
    with open_checkpoint(folder) as ckpt:  # the tree comes from .metadata alone
        assert ckpt.find("w").tensor.shape == (6,)
        with pytest.raises(CorruptError, match="w cannot be read"):
            ckpt.find("w").load()
    assert main(["stats", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_dcp_metadata_of_the_wrong_shape(tmp_path: Path) -> None:
    folder = _dcp_folder(tmp_path)
    (folder / ".metadata").write_bytes(pickle.dumps({"not": "metadata"}))
    with pytest.raises(CorruptError, match="not DCP metadata"):
        open_checkpoint(folder)


@pytest.mark.parametrize("value", [3, None, "../../etc/passwd", ["a"]])
def test_index_with_bad_shard_names(tmp_path: Path, value) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": value}}))
    with pytest.raises(CorruptError, match="index"):
        open_checkpoint(folder)


def test_params_only_export_of_a_pickled_model_loads_into_the_model(tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = TinyNet()
    src = tmp_path / "whole.pt"
    save_with_module_name(model, "gone_module_export", src)
    for out in (tmp_path / "sd.pt", tmp_path / "sd.safetensors"):
        assert main(["export", str(src), str(out), "--params-only"]) == 0
        state = (
            load_file(out) if out.suffix == ".safetensors" else torch.load(out, weights_only=True)
        )
        fresh = TinyNet()
        fresh.load_state_dict(state, strict=True)
        for key, value in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value)


def test_torch_bin_shards_follow_the_loading_policy(tmp_path: Path) -> None:
    from tests.core.test_reader_structural import RunConfig

    folder = tmp_path / "bin"
    folder.mkdir()
    torch.save({"x.weight": torch.ones(2)}, folder / "pytorch_model-00001-of-00002.bin")
    # a shard torch refuses (a custom class rides along): read structurally, nothing runs
    torch.save(
        {"y.weight": torch.zeros(3), "cfg": RunConfig()},
        folder / "pytorch_model-00002-of-00002.bin",
    )
    index = {
        "weight_map": {
            "x.weight": "pytorch_model-00001-of-00002.bin",
            "y.weight": "pytorch_model-00002-of-00002.bin",
        }
    }
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with open_checkpoint(folder) as ckpt:
        assert [n.key for n in ckpt.tensors()] == ["x.weight", "y.weight"]
        assert torch.equal(ckpt.find("y.weight").load(), torch.zeros(3))
