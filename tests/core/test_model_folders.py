"""Model folders as people have them: Hugging Face repos (one file or shards, .safetensors or
.bin, with config.json), Hugging Face cache snapshots (symlinks into blobs/), diffusers pipelines
(a sub-folder per component) and folders of .pt files. Every fixture is written here with
torch.save / safetensors; nothing is downloaded."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ckpt_gui.cli import main
from ckpt_gui.core.errors import CorruptError, NotACheckpointError
from ckpt_gui.core.formats.detect import detect
from ckpt_gui.core.formats.folders import format_label
from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import training_checkpoint, write_sharded_safetensors
from tests.core.hostile import payload
from tests.core.hostile_folders import replace_by_fifo, run_cli

CONFIG = {"architectures": ["TinyForCausalLM"], "model_type": "tiny", "hidden_size": 4}


def weights(prefix: str = "", n: int = 3) -> dict[str, torch.Tensor]:
    """A small state_dict with distinct values per tensor."""
    return {f"{prefix}layer{i}.weight": torch.arange(6.0).reshape(2, 3) + 10 * i for i in range(n)}


def hf_single(folder: Path, kind: str, config: object = CONFIG) -> dict[str, torch.Tensor]:
    """``config.json`` + ``pytorch_model.bin`` (kind "bin") or ``model.safetensors``."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = weights()
    if kind == "bin":
        torch.save(tensors, folder / "pytorch_model.bin")
    else:
        save_file(tensors, folder / "model.safetensors")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return tensors


def diffusers_pipeline(folder: Path) -> dict[str, torch.Tensor]:
    """model_index.json; unet/ (one safetensors), text_encoder/ (two safetensors shards and an
    index), vae/ (a .bin); scheduler/ and tokenizer/ hold no weights. Returns the expected
    tensors under their composite keys."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "TinyPipeline", "unet": ["diffusers", "UNet"]})
    )
    unet = {"conv_in.weight": torch.randn(4, 2, 3, 3), "conv_in.bias": torch.randn(4)}
    (folder / "unet").mkdir()
    save_file(unet, folder / "unet" / "diffusion_pytorch_model.safetensors")
    (folder / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet"}))
    text = weights("encoder.", n=4)
    write_sharded_safetensors(folder / "text_encoder", text, shards=2)
    (folder / "text_encoder" / "config.json").write_text(json.dumps(CONFIG))
    vae = {"decoder.conv.weight": torch.randn(3, 3)}
    (folder / "vae").mkdir()
    torch.save(vae, folder / "vae" / "diffusion_pytorch_model.bin")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text("{}")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.json").write_text("{}")
    expected = {}
    for name, part in (("unet", unet), ("text_encoder", text), ("vae", vae)):
        expected.update({f"{name}.{k}": v for k, v in part.items()})
    return expected


def tensors_of(ckpt) -> dict[str, torch.Tensor]:
    return {n.key: n.load() for n in ckpt.tensors()}


def assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def inspect_json(capsys: pytest.CaptureFixture[str], path: Path) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# 1. Hugging Face repos with one file.


@pytest.mark.parametrize("kind", ["bin", "safetensors"])
def test_hf_folder_with_one_file_opens_as_that_file(tmp_path: Path, capsys, kind: str) -> None:
    folder = tmp_path / "repo"
    tensors = hf_single(folder, kind)
    name = "pytorch_model.bin" if kind == "bin" else "model.safetensors"
    fmt = "torch-zip" if kind == "bin" else "safetensors"
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == fmt and format_label(ckpt) == fmt
        assert ckpt.path == folder
        assert_same(tensors_of(ckpt), tensors)  # keys are the file's keys
        assert ckpt.kind == "state_dict"
        assert {p.name for p in ckpt.files} == {name, "config.json"}
        assert ckpt.size_on_disk == (folder / name).stat().st_size + len(json.dumps(CONFIG))
        config = [n for n in ckpt.notes if n.startswith("config.json:")]
        assert len(config) == 1 and "model_type=tiny" in config[0]
        assert "TinyForCausalLM" in config[0] and "hidden_size=4" in config[0]
        assert ckpt.configs["config.json"] == CONFIG
    with open_checkpoint(folder / name) as direct:
        assert [n.key for n in direct.tensors()] == list(tensors)
    data = inspect_json(capsys, folder)
    assert data["format"] == fmt and data["format_label"] == fmt
    assert [t["key"] for t in data["tensors"]] == list(tensors)
    assert detect(folder) == fmt


def test_hf_folder_with_both_safetensors_and_bin_prefers_safetensors(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    tensors = hf_single(folder, "safetensors")
    torch.save({"other": torch.zeros(1)}, folder / "pytorch_model.bin")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "safetensors"
        assert_same(tensors_of(ckpt), tensors)
        assert any("pytorch_model.bin" in n and "not shown" in n for n in ckpt.notes), ckpt.notes
        assert "pytorch_model.bin" not in {p.name for p in ckpt.files}


def test_hf_trainer_checkpoint_folder_shows_the_model_and_names_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-500"
    tensors = hf_single(folder, "safetensors")
    training_checkpoint(folder / "optimizer.pt")
    torch.save({"last_epoch": 3}, folder / "scheduler.pt")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "safetensors"
        assert_same(tensors_of(ckpt), tensors)
        assert any("optimizer.pt" in n and "scheduler.pt" in n for n in ckpt.notes), ckpt.notes


@pytest.mark.parametrize(
    "content, why",
    [(None, "no config.json"), ("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object")],
)
def test_missing_or_malformed_config_is_noted_not_fatal(
    tmp_path: Path, capsys, content: str | None, why: str
) -> None:
    folder = tmp_path / "repo"
    tensors = hf_single(folder, "bin", config=None)
    if content is not None:
        (folder / "config.json").write_text(content)
    with open_checkpoint(folder) as ckpt:
        assert_same(tensors_of(ckpt), tensors)
        assert any(why in n for n in ckpt.notes), ckpt.notes
        assert ckpt.configs == {}
    assert inspect_json(capsys, folder)["format"] == "torch-zip"


def test_oversized_config_is_noted_without_reading_it(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    hf_single(folder, "safetensors")
    with open(folder / "config.json", "r+b") as f:
        f.truncate(65 * 2**20)  # sparse: the valid JSON, then zeros
    with open_checkpoint(folder) as ckpt:
        assert any("config.json" in n and "limit" in n for n in ckpt.notes), ckpt.notes


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_config_is_noted_and_never_opened(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    hf_single(folder, "bin")
    replace_by_fifo(folder / "config.json")
    (result,) = run_cli(["inspect", folder, "--json"])  # a child with a timeout: a hang fails
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["format"] == "torch-zip"
    assert any("config.json" in n and "named pipe" in n for n in data["notes"]), data["notes"]


def test_only_a_variant_file_opens(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    save_file(weights(), folder / "model.fp16.safetensors")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "safetensors"
        assert [n.key for n in ckpt.tensors()] == list(weights())


def test_peft_adapter_folder_shows_its_adapter_config(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    lora = {"base_model.model.q_proj.lora_A.weight": torch.ones(2, 4)}
    save_file(lora, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "safetensors"
        assert [n.key for n in ckpt.tensors()] == list(lora)
        assert ckpt.configs == {"adapter_config.json": {"peft_type": "LORA", "r": 2}}
        assert "adapter_config.json: peft_type=LORA, r=2" in ckpt.notes
        assert not any("no config.json" in n for n in ckpt.notes)


# 2. Sharded repos: the label counts the shards; the format stays a contract name.


def test_sharded_safetensors_label_counts_shards(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "repo"
    tensors = weights(n=8)
    write_sharded_safetensors(folder, tensors, shards=4)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    for target in (folder, folder / "model.safetensors.index.json"):
        with open_checkpoint(target) as ckpt:
            assert ckpt.format == "safetensors-sharded"
            assert format_label(ckpt) == "safetensors ×4 shards"
            assert_same(tensors_of(ckpt), tensors)
    with open_checkpoint(folder) as ckpt:
        assert (folder / "config.json") in ckpt.files
        assert any(n.startswith("config.json:") for n in ckpt.notes)
    data = inspect_json(capsys, folder)
    assert data["format"] == "safetensors-sharded"
    assert data["format_label"] == "safetensors ×4 shards"
    assert main(["inspect", str(folder)]) == 0
    assert "(safetensors ×4 shards, state_dict," in capsys.readouterr().out


def test_bin_shards_without_an_index(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    a, b = weights("a."), weights("b.")
    torch.save(a, folder / "pytorch_model-00001-of-00002.bin")
    torch.save(b, folder / "pytorch_model-00002-of-00002.bin")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "torch-sharded"
        assert format_label(ckpt) == "torch-zip ×2 shards"
        assert_same(tensors_of(ckpt), {**a, **b})
    assert inspect_json(capsys, folder)["format"] == "torch-sharded"


def test_an_incomplete_shard_set_without_index_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    save_file(weights("a."), folder / "model-00001-of-00003.safetensors")
    save_file(weights("c."), folder / "model-00003-of-00003.safetensors")
    with pytest.raises(CorruptError, match="model-00002-of-00003.safetensors"):
        open_checkpoint(folder)


# 3. Hugging Face cache snapshots: every file a symlink into blobs/.


def _as_hf_cache(repo: Path, root: Path) -> Path:
    """Lay ``repo`` out as the Hugging Face hub cache does; returns the snapshot folder."""
    cache = root / "models--org--tiny"
    blobs, snapshot = cache / "blobs", cache / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted(repo.iterdir())):
        blob = blobs / f"blob{i:04d}"
        file.rename(blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("0123abcd")
    return snapshot


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_hf_cache_snapshot_of_symlinks_opens(tmp_path: Path, capsys, layout: str) -> None:
    repo = tmp_path / "download"
    if layout == "single":
        tensors = hf_single(repo, "safetensors")
        fmt, label = "safetensors", "safetensors"
    else:
        tensors = weights(n=4)
        write_sharded_safetensors(repo, tensors, shards=2)
        (repo / "config.json").write_text(json.dumps(CONFIG))
        fmt, label = "safetensors-sharded", "safetensors ×2 shards"
    snapshot = _as_hf_cache(repo, tmp_path / "hub")
    assert all(p.is_symlink() for p in snapshot.iterdir())
    for target in (snapshot, snapshot.parent.parent):  # the snapshot, or the repo's cache folder
        with open_checkpoint(target) as ckpt:
            assert ckpt.format == fmt and format_label(ckpt) == label
            assert ckpt.path == snapshot
            assert_same(tensors_of(ckpt), tensors)
            assert ckpt.configs["config.json"] == CONFIG
            assert (snapshot / "config.json") in ckpt.files
    data = inspect_json(capsys, snapshot.parent.parent)
    assert data["format"] == fmt and data["format_label"] == label
    assert any("refs/main" in n for n in data["notes"]), data["notes"]


# 4. diffusers pipelines: one tree, a top-level node per component.


def test_diffusers_pipeline_opens_as_one_tree(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "pipeline"
    expected = diffusers_pipeline(folder)
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "folder"
        assert ckpt.kind == "diffusers pipeline"
        assert [c.name for c in ckpt.root.children] == ["text_encoder", "unet", "vae"]
        assert [c.key for c in ckpt.root.children] == ["text_encoder", "unet", "vae"]
        assert_same(dict(sorted(tensors_of(ckpt).items())), dict(sorted(expected.items())))
        assert ckpt.find("unet.conv_in.weight").role == "parameter"
        assert format_label(ckpt) == (
            "diffusers pipeline: text_encoder (safetensors ×2 shards), unet (safetensors), "
            "vae (torch-zip)"
        )
        read = {p.relative_to(folder).as_posix() for p in ckpt.files}
        assert read == {
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors.index.json",
            "text_encoder/model-00001-of-00002.safetensors",
            "text_encoder/model-00002-of-00002.safetensors",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.bin",
        }
        assert set(ckpt.configs) == {
            "model_index.json",
            "text_encoder/config.json",
            "unet/config.json",
        }
        assert any(n.startswith("model_index.json:") and "TinyPipeline" in n for n in ckpt.notes)
        assert any(n.startswith("unet/config.json:") for n in ckpt.notes)
        assert any("vae" in n and "no config.json" in n for n in ckpt.notes), ckpt.notes
        assert ckpt.view == "weights_only"  # the .bin went through torch's safe loader
    data = inspect_json(capsys, folder)
    assert data["format"] == "folder"
    assert data["format_label"].startswith("diffusers pipeline: text_encoder")
    assert {t["key"] for t in data["tensors"]} == set(expected)


def test_pipeline_without_model_index_is_a_model_folder(tmp_path: Path) -> None:
    folder = tmp_path / "pipeline"
    diffusers_pipeline(folder)
    (folder / "model_index.json").unlink()
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "folder" and ckpt.kind == "model folder"
        assert format_label(ckpt).startswith("model folder: text_encoder (safetensors ×2 shards)")


def test_a_pipeline_exports_whole_or_one_component_and_never_onto_a_source_file(
    tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "pipeline"
    expected = diffusers_pipeline(folder)
    whole = tmp_path / "all.safetensors"
    assert main(["export", str(folder), str(whole), "--cpu-copy"]) == 0
    assert_same(dict(sorted(load_file(whole).items())), dict(sorted(expected.items())))
    unet = tmp_path / "unet.safetensors"
    assert main(["export", str(folder), str(unet), "--state-dict", "unet"]) == 0
    assert set(load_file(unet)) == {"conv_in.weight", "conv_in.bias"}
    victim = folder / "vae" / "diffusion_pytorch_model.bin"
    before = victim.read_bytes()
    alias = tmp_path / "alias.pt"
    alias.symlink_to(victim)
    capsys.readouterr()
    assert main(["export", str(folder), str(alias), "--cpu-copy", "--force"]) == 2
    assert "a file the source reads" in capsys.readouterr().err
    assert victim.read_bytes() == before


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self (Linux only)")
def test_closing_a_pipeline_releases_every_component(tmp_path: Path) -> None:
    folder = tmp_path / "pipeline"
    diffusers_pipeline(folder)
    weight_files = [
        folder / "unet" / "diffusion_pytorch_model.safetensors",
        folder / "text_encoder" / "model-00002-of-00002.safetensors",
        folder / "vae" / "diffusion_pytorch_model.bin",
    ]
    inodes = [(os.stat(p).st_dev, os.stat(p).st_ino) for p in weight_files]
    ckpt = open_checkpoint(folder)
    assert len(tensors_of(ckpt)) == 7  # every tensor read (and no reference to one kept here)
    assert all(_held(inode) for inode in inodes)
    ckpt.close()
    gc.collect()
    assert [p.name for p, inode in zip(weight_files, inodes) if _held(inode)] == []


def _held(inode: tuple[int, int]) -> bool:
    """Whether this process maps the file ``inode`` or has a descriptor open on it."""
    dev, ino = inode
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and int(fields[4]) == ino:
                major, minor = (int(x, 16) for x in fields[3].split(":"))
                if os.makedev(major, minor) == dev:
                    return True
    for fd in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == inode:
            return True
    return False


# 5. Folders of .pt files: each file a top-level node.


def test_folder_of_pt_files(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    first = training_checkpoint(folder / "epoch1.pt")
    torch.save(weights(), folder / "epoch2.pt")
    save_file(weights("ema."), folder / "ema.safetensors")
    (folder / "log.txt").write_text("loss 0.1\n")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "folder" and ckpt.kind == "folder of checkpoints"
        assert [c.name for c in ckpt.root.children] == ["ema", "epoch1", "epoch2"]
        assert format_label(ckpt) == (
            "folder of 3 checkpoints: ema (safetensors), epoch1 (torch-zip), epoch2 (torch-zip)"
        )
        key = "epoch1.model_state_dict.linear1.weight"
        assert torch.equal(ckpt.find(key).load(), first["model_state_dict"]["linear1.weight"])
        assert ckpt.find(key).role == "parameter"
        momentum = "epoch1.optimizer_state_dict.state.0.momentum_buffer"
        assert ckpt.find(momentum).role == "optimizer_state"
        assert ckpt.find(momentum).param == "linear1.weight"
        assert ckpt.find("epoch1.epoch").value == 7
        assert torch.equal(ckpt.find("epoch2.layer1.weight").load(), weights()["layer1.weight"])
        assert {p.name for p in ckpt.files} == {"epoch1.pt", "epoch2.pt", "ema.safetensors"}
    data = inspect_json(capsys, folder)
    assert data["format"] == "folder"
    assert data["format_label"].startswith("folder of 3 checkpoints")
    assert {"key": "epoch1.epoch", "value": 7} in data["values"]


def test_folder_of_one_pt_file_opens_as_that_file(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(weights(), folder / "final.pt")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "torch-zip" and format_label(ckpt) == "torch-zip"
        assert [n.key for n in ckpt.tensors()] == list(weights())


def test_same_storage_keys_in_two_files_are_not_shared(tmp_path: Path) -> None:
    """Each file's storages are its own: the structural view's storage key "0" in one file is
    not the "0" of another; ties inside a file keep their (prefixed) keys."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("a.pt", "b.pt"):
        w = torch.ones(3)
        torch.save({"w": w, "tied": w, "cfg": _Config()}, folder / name)  # structural view
    with open_checkpoint(folder) as ckpt:
        assert ckpt.view == "structural"
        shares = [(n.key, n.shares_storage_with, n.tied) for n in ckpt.tensors()]
        assert shares == [
            ("a.w", None, False),
            ("a.tied", "a.w", True),
            ("b.w", None, False),
            ("b.tied", "b.w", True),
        ]


class _Config:
    """A custom class: torch's safe loader refuses files that hold it."""

    lr = 0.1


def test_a_payload_in_a_folder_never_runs(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    sentinel = tmp_path / "ran"
    torch.save(weights(), folder / "good.pt")
    torch.save({"w": torch.ones(2), "x": payload("exec", sentinel, tmp_path)}, folder / "evil.pt")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.view == "structural"
        assert "evil" in ckpt.view_note
        assert ("builtins", "exec") in {(g.module, g.name) for g in ckpt.scan.globals}
        assert any(g.where.startswith("evil.pt:") for g in ckpt.scan.globals)
        assert torch.equal(ckpt.find("evil.w").load(), torch.ones(2))
    for command in ("inspect", "stats"):
        assert main([command, str(folder)]) == 0
    assert not sentinel.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_fifo_among_pt_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(weights(), folder / "a.pt")
    os.mkfifo(folder / "b.pt")
    (result,) = run_cli(["inspect", folder])
    assert result.code == 2
    assert "b.pt" in result.err and "named pipe" in result.err
    assert result.err.count("\n") == 1


def test_too_many_files_are_refused_before_opening_any(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(257):
        (folder / f"{i:03d}.pt").write_bytes(b"not opened")
    with pytest.raises(NotACheckpointError, match="257 checkpoint files"):
        open_checkpoint(folder)


def test_a_folder_without_weights_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "vocab.json").write_text("{}")
    with pytest.raises(NotACheckpointError, match="folder without a checkpoint"):
        open_checkpoint(tmp_path)
