"""The core and the headless commands never import Qt: the Qt-free core of
docs/architecture.md, enforced."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import ckpt_gui.commands
import ckpt_gui.core


def _modules(package) -> list[str]:
    return [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def test_core_and_commands_import_without_qt() -> None:
    modules = _modules(ckpt_gui.core) + _modules(ckpt_gui.commands) + ["ckpt_gui.cli"]
    assert "ckpt_gui.core.reader" in modules
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')"
        " or m.startswith('ckpt_gui.qt')]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
