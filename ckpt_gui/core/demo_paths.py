"""Where the demo is written (no torch here: the window knows the path before torch is loaded)."""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "demo-checkpoint.pt"
RUN_FOLDER = "demo-run"


def default_demo_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ckpt-gui")) / DEMO_NAME


def write_default_demo() -> Path:
    """Write the demo where ``default_demo_path`` says (imports torch: call it on a worker)."""
    from ckpt_gui.core.demo import write_demo

    return write_demo(default_demo_path())
