"""File > Open URL… and File > Remote Cache… (real widgets, offscreen)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialogButtonBox

from ckpt_gui.qt.remote_dialogs import LIMIT_SETTING, CacheDialog, OpenUrlDialog, apply_cache_limit


def test_open_url_accepts_only_urls(qtbot) -> None:
    dialog = OpenUrlDialog()
    qtbot.addWidget(dialog)
    open_button = dialog.buttons.button(QDialogButtonBox.StandardButton.Open)
    assert not open_button.isEnabled()
    dialog.edit.setText("/tmp/model.pt")
    assert not open_button.isEnabled()
    dialog.edit.setText("  hf://org/model@main/model.safetensors ")
    assert open_button.isEnabled() and dialog.url() == "hf://org/model@main/model.safetensors"


def test_the_cache_dialog_sets_the_limit_and_clears(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckpt_gui.core.remote.store import shared_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = shared_cache()
    entry = cache.file("https://example.com/m.safetensors", 100, "v1")
    entry.put(0, b"x" * 40)
    dialog = CacheDialog()
    qtbot.addWidget(dialog)
    assert dialog.usage.text() == "40 B"
    dialog.limit.setValue(2.5)
    dialog.accept()
    assert cache.limit == int(2.5 * 2**30)
    assert float(QSettings("ckpt-gui", "ckpt-gui").value(LIMIT_SETTING)) == 2.5
    cache.limit = 1
    apply_cache_limit()
    assert cache.limit == int(2.5 * 2**30)
    again = CacheDialog()
    qtbot.addWidget(again)
    again.clear_button.click()
    assert again.usage.text() == "0 B" and cache.usage() == 0
