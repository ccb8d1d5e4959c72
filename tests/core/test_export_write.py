"""Exports written to real files, read back with vanilla torch and safetensors, compared with the
source; refusals, cancels and the untouched source."""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ckpt_gui.core.errors import Cancelled
from ckpt_gui.core.export import PRESETS, ExportError, ExportOptions, ExportResult, iter_export
from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import (
    TinyNet,
    every_dtype,
    save_as_if_on_gpu,
    training_checkpoint,
    write_sharded_safetensors,
)
from tests.core.test_export_plan import lightning_checkpoint


def _fingerprint(path: Path) -> list[tuple[str, str, int]]:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [
        (f.name, hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files
    ]


@contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """Asserts that the bytes and modification time of ``path`` (or of every file in the
    folder ``path``) are the same afterwards."""
    before = _fingerprint(path)
    yield
    assert _fingerprint(path) == before


def export(src: Path, dst: Path, overwrite: bool = False, **options: object) -> ExportResult:
    """Run an export to the end (source guarded), returning its result."""
    with unchanged(src):
        steps = iter_export(src, dst, ExportOptions(**options), overwrite=overwrite)  # type: ignore[arg-type]
        progress = []
        while True:
            try:
                progress.append(next(steps))
            except StopIteration as stop:
                assert progress[-1].fraction == 1.0
                assert [p.done for p in progress] == sorted(p.done for p in progress)
                return stop.value


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_loads_with_vanilla_readers_and_equals_the_source(
    tmp_path: Path, preset: str
) -> None:
    src = tmp_path / "train.pt"
    obj = training_checkpoint(src, "adam")
    options = PRESETS[preset]
    dst = tmp_path / f"out.{options.format}"
    export(src, dst, **vars(options))
    if options.format == "safetensors":
        loaded = load_file(dst)
    else:
        loaded = torch.load(dst, weights_only=True)
    if options.mode == "params":
        expected = obj["model_state_dict"]
    else:
        assert loaded["epoch"] == 7 and loaded["loss"] == 0.25
        assert (
            loaded["optimizer_state_dict"]["param_groups"]
            == obj["optimizer_state_dict"]["param_groups"]
        )
        for i, state in obj["optimizer_state_dict"]["state"].items():
            for name, value in state.items():
                assert torch.equal(loaded["optimizer_state_dict"]["state"][i][name], value)
        expected = obj["model_state_dict"]
        loaded = loaded["model_state_dict"]
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def test_a_sharded_source_exports_to_one_file_and_is_never_written_into(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    tensors = {f"w{i}": torch.randn(8, 8) for i in range(4)}
    write_sharded_safetensors(folder, tensors)
    export(folder, tmp_path / "one.safetensors", format="safetensors")
    loaded = load_file(tmp_path / "one.safetensors")
    assert list(loaded) == list(tensors)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    with pytest.raises(ExportError, match="inside the source folder"):
        list(iter_export(folder, folder / "one.safetensors", ExportOptions()))
    assert folder_names(folder) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]


def test_params_only_loads_with_vanilla_torch_and_equals_the_model(tmp_path: Path) -> None:
    src, dst = tmp_path / "train.pt", tmp_path / "params.pt"
    obj = training_checkpoint(src, "adam")
    result = export(src, dst)
    loaded = torch.load(dst, weights_only=True)
    assert list(loaded) == list(obj["model_state_dict"])
    for key, value in obj["model_state_dict"].items():
        assert torch.equal(loaded[key], value)
    TinyNet().load_state_dict(loaded)  # strict: exactly the keys the model expects
    assert result.size_after == dst.stat().st_size < result.plan.size_before
    assert result.describe()[-1] == "verified: all 9 tensors equal the source exactly"


def test_cpu_copy_of_a_gpu_file_loads_without_map_location(tmp_path: Path) -> None:
    src, dst = tmp_path / "gpu.pt", tmp_path / "cpu.pt"
    model = TinyNet()
    obj = {"model": model.state_dict(), "step": 5, "names": ("a", "b"), "blob": b"x" * 100}
    save_as_if_on_gpu(obj, src)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(src, weights_only=True)
    export(src, dst, mode="all")
    loaded = torch.load(dst, weights_only=True)
    assert loaded["step"] == 5 and loaded["names"] == ("a", "b") and loaded["blob"] == b"x" * 100
    for key, value in model.state_dict().items():
        assert loaded["model"][key].device.type == "cpu"
        assert torch.equal(loaded["model"][key], value)
    with open_checkpoint(dst) as result:
        assert {n.tensor.device for n in result.tensors()} == {"cpu"}


def test_cpu_copy_keeps_structure_types_and_sharing(tmp_path: Path) -> None:
    src, dst = tmp_path / "nested.pt", tmp_path / "copy.pt"
    emb = torch.randn(6, 4)
    obj = {
        "sd": OrderedDict([("embed.weight", emb), ("head.weight", emb)]),
        "pair": (torch.arange(3), [1.5, None, {"k": {1, 2}}]),
        "view": emb.t(),
    }
    torch.save(obj, src)
    export(src, dst, mode="all")
    loaded = torch.load(dst, weights_only=True)
    assert type(loaded["sd"]) is OrderedDict and type(loaded["pair"]) is tuple
    assert loaded["pair"][1] == [1.5, None, {"k": {1, 2}}]
    assert torch.equal(loaded["view"], emb.t()) and loaded["view"].stride() == (1, 4)
    ptr = loaded["sd"]["embed.weight"].untyped_storage().data_ptr()
    assert loaded["sd"]["head.weight"].untyped_storage().data_ptr() == ptr
    assert loaded["view"].untyped_storage().data_ptr() == ptr


def test_tied_weights_in_safetensors_keep_every_key(tmp_path: Path) -> None:
    src, dst = tmp_path / "tied.pt", tmp_path / "tied.safetensors"
    emb = torch.randn(10, 3)
    torch.save({"embed.weight": emb, "lm_head.weight": emb, "bias": torch.zeros(3)}, src)
    result = export(src, dst, format="safetensors")
    loaded = load_file(dst)
    assert sorted(loaded) == ["bias", "embed.weight", "lm_head.weight"]
    assert torch.equal(loaded["lm_head.weight"], emb) and torch.equal(loaded["embed.weight"], emb)
    assert result.size_after == result.plan.size_after == dst.stat().st_size


def test_bfloat16_cast_leaves_integers_alone(tmp_path: Path) -> None:
    src, dst = tmp_path / "train.pt", tmp_path / "bf16.safetensors"
    obj = training_checkpoint(src)
    result = export(src, dst, format="safetensors", dtype="bfloat16")
    loaded = load_file(dst)
    for key, value in obj["model_state_dict"].items():
        expected = value.to(torch.bfloat16) if value.is_floating_point() else value
        assert loaded[key].dtype == expected.dtype and torch.equal(loaded[key], expected)
    assert loaded["bn.num_batches_tracked"].dtype == torch.int64
    assert "equal the source cast to bfloat16 (max relative error" in result.describe()[-1]


def test_every_dtype_and_noncontiguous_tensor_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "dtypes.pt"
    tensors = every_dtype()
    torch.save(tensors, src)
    export(src, tmp_path / "all.pt", mode="all", dtype="float16")
    loaded = torch.load(tmp_path / "all.pt", weights_only=True)
    for key, value in tensors.items():
        expected = value.half() if value.is_floating_point() else value
        assert loaded[key].dtype == expected.dtype and torch.equal(loaded[key], expected), key
    export(src, tmp_path / "all.safetensors", format="safetensors")
    from_st = load_file(tmp_path / "all.safetensors")
    assert all(torch.equal(from_st[k], v) for k, v in tensors.items())


def test_module_prefix_stripped_loads_into_the_model(tmp_path: Path) -> None:
    src, dst = tmp_path / "dp.pt", tmp_path / "plain.pt"
    model = TinyNet()
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, src)
    export(src, dst, strip_prefix="module.")
    fresh = TinyNet()
    fresh.load_state_dict(torch.load(dst, weights_only=True))
    assert torch.equal(fresh.linear1.weight, model.linear1.weight)


def test_lightning_checkpoint_to_a_plain_state_dict(tmp_path: Path) -> None:
    src, dst = tmp_path / "epoch=3.ckpt", tmp_path / "model.safetensors"
    lightning_checkpoint(src)
    result = export(src, dst, format="safetensors", strip_prefix="model.")
    TinyNet().load_state_dict(load_file(dst))
    assert "optimizer state" in result.describe()[2]


def test_sharded_safetensors_index_describes_the_shards(tmp_path: Path) -> None:
    src, dst = tmp_path / "big.pt", tmp_path / "sharded"
    tensors = {f"layer{i}.weight": torch.randn(32, 32) for i in range(5)}  # 4 KB each
    torch.save(tensors, src)
    result = export(src, dst, format="safetensors", shard_size=9000)
    names = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert folder_names(dst) == [*names, "model.safetensors.index.json"]
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 5 * 32 * 32 * 4
    assert list(index["weight_map"]) == list(tensors)
    for name in names:
        with safe_open(dst / name, "pt") as f:
            keys = list(f.keys())
            assert f.metadata() == {"format": "pt"}
        assert keys == [k for k, shard in index["weight_map"].items() if shard == name]
        assert (dst / name).stat().st_size < 9000 + 200
    merged = {k: v for name in names for k, v in load_file(dst / name).items()}
    assert all(torch.equal(merged[k], v) for k, v in tensors.items())
    assert result.files[-1] == dst / "model.safetensors.index.json"


def test_pt_shards_go_into_an_existing_model_folder(tmp_path: Path) -> None:
    src, dst = tmp_path / "sd.pt", tmp_path / "hf-model"
    tensors = {"a": torch.randn(300), "b": torch.randn(300), "c": torch.randn(300)}
    torch.save(tensors, src)
    dst.mkdir()
    (dst / "config.json").write_text("{}")
    export(src, dst, format="pt", shard_size=2500)
    index = json.loads((dst / "pytorch_model.bin.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
    ]
    assert (dst / "config.json").read_text() == "{}"
    for key, shard in index["weight_map"].items():
        assert torch.equal(torch.load(dst / shard, weights_only=True)[key], tensors[key])


def test_a_kept_slice_does_not_drag_its_whole_storage(tmp_path: Path) -> None:
    src, dst = tmp_path / "slice.pt", tmp_path / "small.pt"
    big = torch.randn(100_000)
    torch.save({"w": big[:10], "unused": big}, src)
    export(src, dst, exclude=("unused",))
    assert dst.stat().st_size < 10_000
    assert torch.equal(torch.load(dst, weights_only=True)["w"], big[:10])


def test_existing_destination_is_replaced_only_by_a_verified_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "train.pt", tmp_path / "out.pt"
    training_checkpoint(src)
    dst.write_text("old")
    with unchanged(dst), pytest.raises(ExportError, match="already exists; use --force"):
        export(src, dst)
    export(src, dst, overwrite=True)
    assert "linear1.weight" in torch.load(dst, weights_only=True)
    assert folder_names(tmp_path) == ["out.pt", "train.pt"]


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "other spelling"])
def test_refuses_to_overwrite_the_source(tmp_path: Path, how: str) -> None:
    src = tmp_path / "train.pt"
    training_checkpoint(src)
    dst = {"same path": src, "other spelling": tmp_path / "." / "train.pt"}.get(how)
    if how == "symlink":
        dst = tmp_path / "link.pt"
        dst.symlink_to(src)
    elif how == "hard link":
        dst = tmp_path / "hard.pt"
        os.link(src, dst)
    assert dst is not None
    with unchanged(src), pytest.raises(ExportError, match="this is the source file"):
        list(iter_export(src, dst, ExportOptions()))
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_refuses_a_shard_folder_that_holds_the_source(tmp_path: Path) -> None:
    src = tmp_path / "train.pt"
    training_checkpoint(src)
    with unchanged(src), pytest.raises(ExportError, match="this folder holds the source"):
        list(iter_export(src, tmp_path, ExportOptions(shard_size=1000)))


def test_cancel_mid_way_leaves_no_partial_file(tmp_path: Path) -> None:
    src, out = tmp_path / "src.pt", tmp_path / "out"
    out.mkdir()
    torch.save({f"w{i}": torch.randn(64, 64) for i in range(8)}, src)
    with unchanged(src):
        steps = iter_export(src, out / "x.safetensors", ExportOptions(format="safetensors"))
        next(steps), next(steps), next(steps)
        assert [p.name.endswith(".partial") for p in out.iterdir()] == [True]
        steps.close()
    assert folder_names(out) == []
    polled = iter([False] * 5 + [True] * 100)
    with unchanged(src), pytest.raises(Cancelled):
        list(iter_export(src, out / "y.pt", ExportOptions(), cancel=lambda: next(polled)))
    assert folder_names(out) == []


def test_unwritable_destination_is_one_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "train.pt"
    training_checkpoint(src)
    (tmp_path / "file").write_text("not a folder")
    with unchanged(src), pytest.raises(ExportError, match="not a folder"):
        list(iter_export(src, tmp_path / "file" / "out.pt", ExportOptions()))
    with pytest.raises(ExportError, match="no such folder"):
        list(iter_export(src, tmp_path / "missing" / "out.pt", ExportOptions()))
