"""Copy as Python: the expression that reaches an entry of what ``torch.load`` returned."""

from __future__ import annotations

from pathlib import Path

import torch

from ckpt_gui.core.python_access import python_access
from ckpt_gui.core.reader import open_checkpoint


def test_expressions_reach_the_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(1, 3)).sum().backward()
    opt.step()
    saved = {"model": model.state_dict(), "optimizer": opt.state_dict(), "lrs": [0.1, 0.2]}
    torch.save(saved, path)
    ckpt = open_checkpoint(path)
    try:
        nodes = {n.key: n for n in ckpt.root.walk()}
        loaded = torch.load(path, weights_only=True)
        expected = {
            "model.weight": loaded["model"]["weight"],
            "optimizer.state.0.exp_avg": loaded["optimizer"]["state"][0]["exp_avg"],
            "lrs.1": 0.2,
        }
        for key, value in expected.items():
            expression = python_access(nodes[key], "ckpt")
            got = eval(expression, {"ckpt": loaded})  # noqa: S307 - our own expression
            assert got is value or got == value, expression
        assert python_access(nodes["model.weight"], "sd") == 'sd["model"]["weight"]'
        assert python_access(nodes["lrs.1"]) == 'ckpt["lrs"][1]'
    finally:
        ckpt.close()
