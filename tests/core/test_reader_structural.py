"""The loading policy through ``open_checkpoint``: torch's safe loader first, the structural view
when it refuses, a real load only with ``trust=True``; and every hostile file through every
command without its payload ever running."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.errors import UnsafeError
from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import TinyNet, trained
from tests.core.hostile import save_with_module_name, write_corpus, write_import_trap


@dataclasses.dataclass
class RunConfig:
    lr: float = 0.1
    layers: int = 2


def test_whole_model_with_unimportable_class_opens_structurally(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = TinyNet()
    path = tmp_path / "whole.pt"
    save_with_module_name(model, "gone_module_xyz", path)
    assert "gone_module_xyz" not in sys.modules
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "structural" and ckpt.kind == "pickled model"
        assert ckpt.root.standin == "gone_module_xyz.TinyNet"
        expected = model.state_dict()
        assert [n.key for n in ckpt.tensors()] == list(expected)
        for node in ckpt.tensors():
            assert torch.equal(node.load(), expected[node.key])
            assert node.tensor.shape == tuple(expected[node.key].shape)
        assert ckpt.find("bn.running_mean").role == "buffer"
        # the module tree, each module with the class a real load would have imported
        linear1 = ckpt.find("linear1")
        assert linear1.kind == "object" and linear1.label == "module"
        assert linear1.standin == "torch.nn.modules.linear.Linear"
        assert [c.name for c in linear1.children] == ["weight", "bias"]
        assert ckpt.find("linear1.weight").role == "parameter"
        assert "structural view" in ckpt.view_note and "gone_module_xyz.TinyNet" in ckpt.view_note
        assert {g.module for g in ckpt.scan.globals} >= {"gone_module_xyz"}


def test_training_checkpoint_with_custom_class_and_numpy_scalar(tmp_path: Path) -> None:
    model, opt = trained("adam")
    path = tmp_path / "train.pt"
    torch.save(
        {
            "config": RunConfig(),
            "best": np.float64(0.5),
            "epoch": 4,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": opt.state_dict(),
        },
        path,
    )
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "structural"
        assert ckpt.kind == "training checkpoint"
        config = ckpt.find("config")
        assert config.standin == f"{__name__}.RunConfig"
        assert ckpt.find("config.lr").value == 0.1
        assert ckpt.find("model_state_dict.linear1.weight").role == "parameter"
        assert ckpt.find("optimizer_state_dict.state.0.exp_avg").param == "linear1.weight"
        assert torch.equal(
            ckpt.find("model_state_dict.linear2.bias").load(), model.state_dict()["linear2.bias"]
        )


def test_whole_model_beside_its_optimizer_maps_ids(tmp_path: Path) -> None:
    model, opt = trained("sgd")
    path = tmp_path / "whole-train.pt"
    torch.save({"epoch": 1, "model": model, "optimizer": opt.state_dict()}, path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "structural" and ckpt.kind == "training checkpoint"
        assert ckpt.find("model").label == "model"
        assert ckpt.find("model.linear2.bias").role == "parameter"
        assert ckpt.find("optimizer.state.5.momentum_buffer").param == "linear2.bias"


def test_structural_off_refuses(tmp_path: Path) -> None:
    path = tmp_path / "cfg.pt"
    torch.save({"config": RunConfig(), "w": torch.ones(2)}, path)
    with pytest.raises(UnsafeError, match="RunConfig"):
        open_checkpoint(path, structural=False)


def test_trust_is_a_real_load_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "cfg.pt"
    torch.save({"config": RunConfig(lr=0.5), "w": torch.ones(2)}, path)
    with open_checkpoint(path, trust=True) as ckpt:
        assert ckpt.view == "trusted"
        assert ckpt.find("config").kind == "value"  # the real RunConfig, shown by its repr
        assert "lr=0.5" in ckpt.find("config").value
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "structural"


def test_weights_only_files_say_so(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save(TinyNet().state_dict(), path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "weights_only" and ckpt.scan.verdict == "safe"


def test_environment_cannot_weaken_the_safe_loader(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    corpus = write_corpus(tmp_path / "corpus")
    for hostile in corpus:
        try:
            open_checkpoint(hostile.path).close()
        except Exception:  # noqa: BLE001 - refusing is fine; running the payload is not
            pass
        assert not hostile.sentinel.exists(), hostile.name


def test_torchscript_lists_tensors_without_running_code(tmp_path: Path) -> None:
    import warnings

    model = TinyNet().eval()
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "torchscript" and ckpt.view == "structural"
        assert ckpt.kind == "TorchScript module"
        assert torch.equal(ckpt.find("linear1.weight").load(), model.linear1.weight.detach())
        assert ckpt.find("bn.running_var").tensor.shape == (5,)


OPERATIONS = {
    "inspect": lambda p, out: ["inspect", str(p), "--json"],
    "stats": lambda p, out: ["stats", str(p), "--json"],
    "diff": lambda p, out: ["diff", str(p), str(p), "--json"],
    "export-pt": lambda p, out: ["export", str(p), str(out / "x.pt"), "--cpu-copy"],
    "export-st": lambda p, out: [
        "export",
        str(p),
        str(out / "x.safetensors"),
        "--format",
        "safetensors",
    ],
    "scan": lambda p, out: ["scan", str(p), "--json"],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    files = write_corpus(folder)
    files.append(write_import_trap(folder, folder / "sentinels" / "import_trap"))
    return files


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_no_payload_ever_runs(corpus, operation: str, tmp_path: Path, capsys, monkeypatch) -> None:
    for hostile in corpus:
        if hostile.sys_path:  # the victim could import the trap module if it tried
            monkeypatch.syspath_prepend(hostile.sys_path)
        before = hostile.path.read_bytes()
        code = main(OPERATIONS[operation](hostile.path, tmp_path))
        out = capsys.readouterr()
        assert code in (0, 1, 2), (hostile.name, code)
        assert "Traceback" not in out.err
        assert not hostile.sentinel.exists(), f"{hostile.name}: the payload ran ({operation})"
        assert hostile.path.read_bytes() == before
        if operation == "scan" and hostile.expect is not None:
            assert code == 1, hostile.name
