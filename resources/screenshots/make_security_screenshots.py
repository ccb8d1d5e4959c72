"""Regenerate the README screenshot of the structural view.

    QT_QPA_PLATFORM=offscreen python resources/screenshots/make_security_screenshots.py

Writes a training checkpoint that torch's safe loader refuses (it pickles the run's config, a
dataclass from a project module the viewer does not have, and an ``argparse.Namespace``) and saves
``structural.png``: the amber banner, the stand-in rows marked in the tree, the config row selected.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZE = (1600, 1000)
PROJECT = "myproject.config"  # a module that exists only while the file is written


@dataclasses.dataclass
class TrainConfig:
    lr: float = 3e-4
    batch_size: int = 64
    warmup_steps: int = 500
    model_name: str = "tiny-mlp"


def refused_checkpoint(path: Path) -> Path:
    """A checkpoint whose config pickles as ``myproject.config.TrainConfig``."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.LayerNorm(256), nn.Linear(256, 10)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(16, 64)).pow(2).mean().backward()
        opt.step()
    package, module = types.ModuleType("myproject"), types.ModuleType(PROJECT)
    cls = type("TrainConfig", (TrainConfig,), {"__module__": PROJECT})
    module.TrainConfig = cls  # type: ignore[attr-defined]
    sys.modules.update({"myproject": package, PROJECT: module})
    try:
        torch.save(
            {
                "epoch": 12,
                "config": cls(),
                "args": argparse.Namespace(seed=0, data="/data/train", amp=True),
                "model_state_dict": model.state_dict(),
                "optimizer_state_dict": opt.state_dict(),
                "best_val_loss": 0.4213,
            },
            path,
        )
    finally:
        del sys.modules["myproject"], sys.modules[PROJECT]
    return path


def wait(app: object, done: object, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        app.processEvents()  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def main() -> int:
    sys.path.insert(0, str(HERE.parent.parent))
    from ckpt_gui.qt.app import make_application
    from ckpt_gui.qt.main_window import MainWindow

    app = make_application()
    path = refused_checkpoint(Path(tempfile.mkdtemp(prefix="ckpt-gui-shots-")) / "run12.pt")
    window = MainWindow()
    window.resize(*SIZE)
    window.show()
    view = window.open_path(path)
    wait(app, view.is_idle)
    assert view.checkpoint is not None and view.checkpoint.view == "structural"
    view.select_largest_tensor()
    wait(app, lambda: not view.panels_busy())
    model = view.model
    assert model is not None
    config = next(it for it in model.root_item().walk() if it.key == "config")
    view.tree.select_item(config)
    view.tree.view.scrollToTop()
    end = time.monotonic() + 0.4
    wait(app, lambda: time.monotonic() > end)
    window.grab().save(str(HERE / "structural.png"))
    window.close()
    print("wrote structural.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
