"""``ckpt-gui ... --screenshot OUT.png``: in process through ``run_app``, and once end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QImage

from ckpt_gui.cli import gui_parser
from ckpt_gui.qt import workers
from ckpt_gui.qt.app import SCREENSHOT_SIZE, run_app
from tests.qt import files


def shoot(*argv: str) -> int:
    return run_app(gui_parser().parse_args(list(argv)))


def assert_picture(path: Path) -> QImage:
    assert path.is_file() and path.stat().st_size > 10_000
    image = QImage(str(path))
    assert (image.width(), image.height()) == SCREENSHOT_SIZE
    return image


def test_screenshot_of_a_checkpoint(qapp, tmp_path: Path) -> None:
    path = files.training_checkpoint(tmp_path / "train.pt")
    out = tmp_path / "shot.png"
    assert shoot(str(path), "--screenshot", str(out)) == 0
    assert_picture(out)
    assert workers.active_workers() == 0


def test_screenshot_of_a_corrupt_file_exits_zero(qapp, tmp_path: Path) -> None:
    out = tmp_path / "error.png"
    assert shoot(str(files.corrupt_file(tmp_path / "broken.pt")), "--screenshot", str(out)) == 0
    assert_picture(out)


def test_screenshot_in_compare_mode(qapp, tmp_path: Path) -> None:
    a = files.training_checkpoint(tmp_path / "a.pt")
    b = files.sized_state_dict(tmp_path / "b.pt")
    out = tmp_path / "compare.png"
    assert shoot("--compare", str(a), str(b), "--screenshot", str(out)) == 0
    assert_picture(out)


def test_screenshot_to_an_unwritable_place_fails_with_two(qapp, tmp_path: Path) -> None:
    path = files.sized_state_dict(tmp_path / "s.pt")
    assert shoot(str(path), "--screenshot", str(tmp_path / "no" / "such" / "dir" / "x.png")) == 2


def test_cli_demo_screenshot_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "ckpt_gui", "--demo", "--screenshot", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "cache" / "ckpt-gui" / "demo-checkpoint.pt").is_file()
    assert_picture(out)


def test_demo_opens_at_once_and_is_a_real_run(qtbot, window, cache_home: Path) -> None:
    page = window.open_demo()
    # The tab is there at once; the demo is written on its worker, not before it.
    assert window.tabs.count() == 1 and page.state == "loading"
    qtbot.waitUntil(page.is_idle, timeout=120_000)
    assert page.state == "ready", page.error_message
    assert page.tree.visible_rows() == [
        "model", "optimizer", "scheduler", "epoch", "step", "loss", "config"
    ]  # fmt: skip
    run = sorted(p.name for p in (cache_home / "ckpt-gui" / "demo-run").iterdir())
    assert run == ["epoch-1.pt", "epoch-2.pt", "epoch-3.pt", "epoch-4.pt"]
    keys = {it.key for it in page.model.root_item().walk()}
    assert "model.blocks.1.attn.in_proj_weight" in keys
    assert any(k.startswith("optimizer.state.") and k.endswith("exp_avg_sq") for k in keys)
    assert window.open_demo() is page  # once


def test_window_paints_before_its_heavy_modules_load(tmp_path: Path) -> None:
    path = tmp_path / "small.pt"
    import torch

    torch.save({"w": torch.ones(2)}, path)
    env = dict(
        os.environ,
        CKPT_GUI_STARTUP_PROBE="exit",
        QT_QPA_PLATFORM="offscreen",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "ckpt_gui", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    moments = [line.split() for line in done.stderr.splitlines() if line.startswith("ckpt-gui")]
    names = [m[1] for m in moments]
    assert names.index("first-paint") < names.index("window-painted")
    first = moments[names.index("first-paint")]
    assert first[3] == "torch_loaded=0"  # the real window painted before torch had loaded
    assert "torch-imported" in names
