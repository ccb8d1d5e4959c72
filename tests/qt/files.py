"""Real checkpoint files for the GUI tests, written with ``torch.save``."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from tests.core.checkpoints import TinyNet


def training_checkpoint(path: Path) -> Path:
    """model + SGD optimizer state + epoch + loss, like the PyTorch tutorial recipe."""
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 10)).pow(2).mean().backward()
        opt.step()
    torch.save(
        {
            "epoch": 7,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": opt.state_dict(),
            "loss": 0.25,
        },
        path,
    )
    return path


def marked_state_dict(path: Path) -> Path:
    """A state_dict with something to mark: NaN/Inf, all zeros, tied weights."""
    emb = torch.randn(16, 8)
    bad = torch.randn(4, 4)
    bad[0, 0] = float("nan")
    bad[1, 1] = float("inf")
    torch.save(
        {
            "embed.weight": emb,
            "head.weight": emb,  # tied: the same storage
            "broken.weight": bad,
            "zeros.bias": torch.zeros(8),
        },
        path,
    )
    return path


def sized_state_dict(path: Path) -> Path:
    """Tensors whose element counts sort differently as text (9, 10, 100) than as numbers."""
    torch.save(
        {"a": torch.ones(100), "b": torch.full((9,), 2.0), "c": torch.full((10,), -3.0)}, path
    )
    return path


def corrupt_file(path: Path) -> Path:
    """The first half of a real checkpoint: a truncated download."""
    training_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def wait_idle(qtbot, view, timeout: int = 20_000) -> None:
    """Until ``view`` has loaded, computed its statistics and drawn its panels."""
    qtbot.waitUntil(view.is_idle, timeout=timeout)
    qtbot.waitUntil(lambda: not view.panels_busy(), timeout=timeout)


def opened(qtbot, window, path: Path):
    """``path`` opened in a tab of ``window``, loaded and measured (asserts it opened)."""
    view = window.open_path(path)
    wait_idle(qtbot, view)
    assert view.state == "ready", view.error_message
    return view


def cancel_mid_write(qtbot, dialog, gate: threading.Event, out: Path) -> None:
    """Export from ``dialog`` into the empty folder ``out``, cancel while the writer is held at
    ``gate`` (its temporary file is there), and check nothing is left and the dialog says so."""
    from PySide6.QtCore import Qt

    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert dialog.is_exporting() and dialog.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: any(out.iterdir()), timeout=20_000)
    assert [p.name.endswith(".partial") for p in out.iterdir()] == [True]
    with qtbot.waitSignal(dialog.export_cancelled, timeout=20_000):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
        gate.set()
    assert list(out.iterdir()) == []
    assert dialog.result_label.text() == "Export cancelled. Nothing was written."
