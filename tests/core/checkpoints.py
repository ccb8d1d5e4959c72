"""Real checkpoint files for the tests, written with torch.save, safetensors and DCP."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(10, 5)
        self.bn = nn.BatchNorm1d(5)
        self.linear2 = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.bn(self.linear1(x)))


def trained(optimizer: str = "sgd") -> tuple[TinyNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = TinyNet()
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 10)).pow(2).mean().backward()
        opt.step()
    return model, opt


def training_checkpoint(path: Path, optimizer: str = "sgd", **save_kwargs: object) -> dict:
    model, opt = trained(optimizer)
    obj = {
        "epoch": 7,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "loss": 0.25,
    }
    torch.save(obj, path, **save_kwargs)
    return obj


def save_as_if_on_gpu(obj: object, path: Path) -> None:
    """torch.save that records every storage as saved on cuda:0, without a GPU."""
    with mock.patch("torch.serialization.location_tag", return_value="cuda:0"):
        torch.save(obj, path)


def every_dtype() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 6, generator=g)
    return {
        "f32": base.clone(),
        "f16": base.half(),
        "f64": base.double(),
        "bf16": base.bfloat16(),
        "i8": (base * 10).to(torch.int8),
        "u8": (base.abs() * 10).to(torch.uint8),
        "i64": torch.arange(7),
        "bool": base > 0,
        "c64": torch.complex(base, -base),
        "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 3),
        "noncontig": base.t(),
    }


def write_sharded_safetensors(
    folder: Path, tensors: dict[str, torch.Tensor], shards: int = 2
) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    keys = list(tensors)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: tensors[k].contiguous() for k in keys[i::shards]}
        save_file(part, folder / name)
        weight_map.update({k: name for k in part})
    index = {"metadata": {"total_size": 0}, "weight_map": {k: weight_map[k] for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
