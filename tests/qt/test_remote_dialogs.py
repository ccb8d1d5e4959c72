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


def test_download_progress_says_bytes_speed_and_time_left() -> None:
    from ckpt_gui.qt.remote_download import Rate

    rate = Rate()
    assert rate.text(0, 10_000_000, now=100.0) == "Downloading 0 B of 10.0 MB…"
    assert rate.text(4_000_000, 10_000_000, now=102.0) == (
        "Downloading 4.0 MB of 10.0 MB (2.0 MB/s, about 3 s left)"
    )


def test_what_statistics_would_download(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from ckpt_gui.core.reader import open_checkpoint
    from ckpt_gui.qt.remote_download import to_download
    from tests.core.remote.server import serving

    save_file({"a": torch.ones(100_000), "b": torch.zeros(50_000)}, tmp_path / "m.safetensors")
    with serving(tmp_path) as (url, _), open_checkpoint(f"{url}/m.safetensors") as ckpt:
        nodes = list(ckpt.tensors())
        before = to_download(nodes)  # all but what came with the header's first 64 KB
        assert 600_000 - (64 << 10) < before < 600_000
        ckpt.find("a").load()
        ckpt.find("b").load()
        assert to_download(nodes) == 0
    with open_checkpoint(tmp_path / "m.safetensors") as local:
        assert to_download(list(local.tensors())) == 0
