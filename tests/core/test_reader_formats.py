"""Every format the reader knows, written for real and read back."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import (
    TinyNet,
    every_dtype,
    save_as_if_on_gpu,
    training_checkpoint,
    write_sharded_safetensors,
)


def tensors_of(ckpt) -> dict[str, torch.Tensor]:
    return {n.key: n.load() for n in ckpt.tensors()}


@pytest.mark.parametrize("legacy", [False, True])
def test_every_dtype_round_trips(tmp_path: Path, legacy: bool) -> None:
    src = every_dtype()
    path = tmp_path / "dtypes.pth"
    torch.save(src, path, _use_new_zipfile_serialization=not legacy)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == ("torch-legacy" if legacy else "torch-zip")
        assert ckpt.kind == "state_dict"
        for node in ckpt.tensors():
            want = src[node.key]
            assert node.tensor.dtype == str(want.dtype).removeprefix("torch.")
            assert node.tensor.shape == tuple(want.shape)
            assert node.tensor.numel == want.numel()
            assert node.tensor.nbytes == want.numel() * want.element_size()
            assert node.tensor.device == "cpu"
            assert torch.equal(node.load(), want)
        noncontig = ckpt.find("noncontig").tensor
        assert noncontig.stride == (1, 6) and not noncontig.contiguous
        assert ckpt.find("scalar").tensor.shape == ()
        assert ckpt.find("empty").tensor.numel == 0


def test_zip_file_is_memory_mapped_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    torch.save({"w": torch.ones(1024, 1024)}, path)
    with open_checkpoint(path) as ckpt:
        t = ckpt.find("w").load()
        # A memory-mapped tensor is backed by the file, so its storage is not resizable memory.
        assert not t.untyped_storage().resizable()
        assert float(t.sum()) == 1024 * 1024


def test_saved_on_gpu_opens_on_cpu(tmp_path: Path) -> None:
    path = tmp_path / "gpu.pt"
    save_as_if_on_gpu({"w": torch.arange(6.0)}, path)
    with open_checkpoint(path) as ckpt:
        node = ckpt.find("w")
        assert node.tensor.device == "cuda:0"
        assert torch.equal(node.load(), torch.arange(6.0))


def test_tied_weights_share_storage(tmp_path: Path) -> None:
    emb = torch.randn(8, 4)
    path = tmp_path / "tied.pt"
    torch.save({"embed.weight": emb, "lm_head.weight": emb, "other": torch.randn(8, 4)}, path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.find("lm_head.weight").shares_storage_with == "embed.weight"
        assert ckpt.find("embed.weight").shares_storage_with is None
        assert ckpt.find("other").shares_storage_with is None


def test_safetensors_header_and_lazy_data(tmp_path: Path) -> None:
    src = {k: v.contiguous() for k, v in every_dtype().items() if k != "noncontig"}
    path = tmp_path / "model.safetensors"
    save_file(src, path, metadata={"format": "pt"})
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "safetensors"
        assert {n.key for n in ckpt.tensors()} == set(src)
        for node in ckpt.tensors():
            assert torch.equal(node.load(), src[node.key])
        assert any("format=pt" in note for note in ckpt.notes)
    assert torch.equal(torch.load(tmp_path / "model.safetensors")["f32"], src["f32"])


def test_safetensors_detected_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"  # misnamed on purpose
    save_file({"a": torch.ones(3)}, path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "safetensors"
        assert torch.equal(ckpt.find("a").load(), torch.ones(3))


def test_sharded_safetensors_folder_and_index(tmp_path: Path) -> None:
    src = {f"layers.{i}.weight": torch.full((3, 3), float(i)) for i in range(5)}
    folder = tmp_path / "hf"
    write_sharded_safetensors(folder, src, shards=2)
    for target in (folder, folder / "model.safetensors.index.json"):
        with open_checkpoint(target) as ckpt:
            assert ckpt.format == "safetensors-sharded"
            assert [n.key for n in ckpt.tensors()] == list(src)
            assert torch.equal(ckpt.find("layers.3.weight").load(), src["layers.3.weight"])
            assert "2 shards" in ckpt.notes


def test_sharded_torch_bin_folder(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "bin"
    folder.mkdir()
    a, b = {"x.weight": torch.ones(2)}, {"y.weight": torch.zeros(3)}
    torch.save(a, folder / "pytorch_model-00001-of-00002.bin")
    torch.save(b, folder / "pytorch_model-00002-of-00002.bin")
    index = {
        "weight_map": {
            "x.weight": "pytorch_model-00001-of-00002.bin",
            "y.weight": "pytorch_model-00002-of-00002.bin",
        }
    }
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "torch-sharded"
        assert [n.key for n in ckpt.tensors()] == ["x.weight", "y.weight"]
        assert torch.equal(ckpt.find("y.weight").load(), torch.zeros(3))


def test_dcp_folder(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    model = TinyNet()
    state = {"model": model.state_dict(), "step": 11}
    folder = tmp_path / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "dcp"
        keys = [n.key for n in ckpt.tensors()]
        assert "model.linear1.weight" in keys
        node = ckpt.find("model.linear1.weight")
        assert node.tensor.shape == (5, 10)
        assert node.parent.key == "model"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert torch.equal(node.load(), model.linear1.weight.detach())


def test_legacy_training_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "legacy.tar"
    training_checkpoint(path, _use_new_zipfile_serialization=False)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "torch-legacy"
        assert ckpt.kind == "training checkpoint"
        assert ckpt.find("epoch").value == 7
