"""A TorchScript archive (silero-vad style) read without compiling its code: its declared
parameters and buffers get their roles, keys are the module's state_dict keys, and a
parameters-only export works."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint


class Scripted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 3)
        self.norm = torch.nn.BatchNorm1d(4)
        self.register_buffer("window", torch.hann_window(8))
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.conv(x)).mean(-1)) + self.window.sum()


def scripted_file(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.script(Scripted())
        torch.jit.save(module, path)
    return dict(module.state_dict())


def test_roles_come_from_the_archive_s_declarations(tmp_path: Path) -> None:
    path = tmp_path / "model.jit"
    state = scripted_file(path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "structural" and ckpt.format == "torchscript"
        roles = {n.key: n.role for n in ckpt.root.tensors()}
        assert list(roles) == list(state)  # the module's own state_dict keys, in its order
        buffers = {"window", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"}
        assert {k for k, r in roles.items() if r == "buffer"} == buffers
        assert {k for k, r in roles.items() if r == "parameter"} == set(state) - buffers
        for key, value in state.items():
            assert torch.equal(ckpt.find(key).load(), value), key


def test_a_parameters_only_export_of_torchscript(tmp_path: Path, capsys) -> None:
    path, dst = tmp_path / "model.jit", tmp_path / "params.safetensors"
    state = scripted_file(path)
    assert main(["export", str(path), str(dst), "--params-only"]) == 0
    assert f"verified: all {len(state)} tensors equal the source exactly" in capsys.readouterr().out
    written = load_file(dst)
    assert list(written) == list(state)
    assert all(torch.equal(written[k], v) for k, v in state.items())
