"""The built-in demo checkpoint: the classic "saving a general checkpoint" tutorial recipe.

A small two-layer model trained for a few steps with SGD and momentum, saved with its optimizer
state, ``epoch`` and ``loss``, so that every panel of the app has something real to show.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

DEMO_NAME = "demo-checkpoint.pt"


class TwoLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(32, 64)
        self.norm = nn.BatchNorm1d(64)
        self.linear2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(torch.relu(self.norm(self.linear1(x))))


def demo_checkpoint(steps: int = 20, seed: int = 0) -> dict[str, object]:
    """The demo's contents, deterministic for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TwoLayerNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(256, 32, generator=generator)
    y = torch.randint(0, 10, (256,), generator=generator)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return {
        "epoch": 5,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "loss": float(loss.detach()),
    }


def default_demo_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ckpt-gui")) / DEMO_NAME


def write_demo(path: str | os.PathLike[str] | None = None) -> Path:
    """Write the demo checkpoint (atomically) and return where it is."""
    target = Path(path) if path is not None else default_demo_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(demo_checkpoint(), tmp)
    os.replace(tmp, target)
    return target
