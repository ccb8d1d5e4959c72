"""Recognising what a checkpoint is: state_dicts, training and Lightning checkpoints, roles, and
optimizer ids mapped back to parameter names."""

from __future__ import annotations

from pathlib import Path

import torch

from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import TinyNet, trained, training_checkpoint


def test_bare_state_dict_roles(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save(TinyNet().state_dict(), path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.kind == "state_dict"
        roles = {n.key: n.role for n in ckpt.tensors()}
        assert roles["linear1.weight"] == "parameter"
        assert roles["bn.running_mean"] == "buffer"
        assert roles["bn.num_batches_tracked"] == "buffer"
        by_role = ckpt.totals_by("role")
        assert by_role["parameter"].tensors == 6
        assert by_role["buffer"].tensors == 3


def test_training_checkpoint_maps_optimizer_ids(tmp_path: Path) -> None:
    path = tmp_path / "train.pt"
    obj = training_checkpoint(path, optimizer="adam")
    with open_checkpoint(path) as ckpt:
        assert ckpt.kind == "training checkpoint"
        assert ckpt.find("model_state_dict").label == "model"
        assert ckpt.find("optimizer_state_dict").label == "optimizer"
        assert ckpt.find("epoch").value == 7 and ckpt.find("loss").value == 0.25
        # Adam numbers parameters in model.parameters() order; buffers are skipped.
        expected = [
            "linear1.weight",
            "linear1.bias",
            "bn.weight",
            "bn.bias",
            "linear2.weight",
            "linear2.bias",
        ]
        for i, name in enumerate(expected):
            node = ckpt.find(f"optimizer_state_dict.state.{i}.exp_avg")
            assert node.role == "optimizer_state"
            assert node.param == name
            assert node.tensor.shape == tuple(obj["model_state_dict"][name].shape)
        assert ckpt.find("optimizer_state_dict.param_groups.0.params.4").param == "linear2.weight"
        assert any("mapped to parameter names" in n for n in ckpt.notes)


def test_optimizer_ids_left_alone_when_counts_disagree(tmp_path: Path) -> None:
    model, opt = trained("sgd")
    sd = model.state_dict()
    del sd["linear2.bias"]
    path = tmp_path / "partial.pt"
    torch.save({"model": sd, "optimizer": opt.state_dict()}, path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.find("optimizer.state.0.momentum_buffer").param is None
        assert any("could not be matched" in n for n in ckpt.notes)


def test_lightning_checkpoint(tmp_path: Path) -> None:
    model, opt = trained("adam")
    obj = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "loops": {"fit_loop": {"state_dict": {}}},
        "callbacks": {},
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [{"last_epoch": 3}],
        "hyper_parameters": {"lr": 1e-3, "hidden": 5},
    }
    path = tmp_path / "last.ckpt"
    torch.save(obj, path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.kind == "Lightning checkpoint"
        assert ckpt.find("state_dict.model.linear1.weight").role == "parameter"
        assert ckpt.find("optimizer_states.0").label == "optimizer"
        assert ckpt.find("optimizer_states.0.state.0.exp_avg").param == "model.linear1.weight"
        assert ckpt.find("hyper_parameters.hidden").value == 5


def test_values_and_containers(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pt"
    torch.save(
        {
            "cfg": {"name": "run", "sizes": (1, 2), "on": True, "none": None},
            "shape": torch.Size([2, 3]),
            "w": torch.ones(2),
        },
        path,
    )
    with open_checkpoint(path) as ckpt:
        assert ckpt.find("cfg").kind == "dict"
        assert ckpt.find("cfg.sizes").kind == "list"
        assert ckpt.find("cfg.sizes.1").value == 2
        assert ckpt.find("cfg.sizes").value == "[1, 2]"
        assert ckpt.find("cfg.name").value == "run"
        assert ckpt.find("cfg.none").value is None
        assert ckpt.find("shape").value == [2, 3]
        assert ckpt.find("w").role == "other"
