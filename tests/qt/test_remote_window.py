"""Remote checkpoints in the window, served by a local HTTP server with Range support: a tab per
URL that computes statistics only for the tensors looked at, Compute All Statistics, Download
and Open for a file read only whole, a dropped link, and File > Open URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from safetensors.torch import save_file

from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.widgets import remote_actions
from ckpt_gui.qt.widgets.checkpoint_view import FAILED, READY
from tests.core.remote.server import serving
from tests.qt.files import wait_idle

pytest.importorskip("aiohttp")


@pytest.fixture
def served(tmp_path: Path):  # noqa: ANN201 - (url, behaviour)
    g = torch.Generator().manual_seed(0)
    tensors = {f"layer.{i}.weight": torch.randn(256, 256, generator=g) for i in range(8)}
    save_file(tensors, tmp_path / "model.safetensors")
    with open(tmp_path / "legacy.pt", "wb") as f:
        torch.save({"w": torch.arange(50_000.0)}, f, _use_new_zipfile_serialization=False)
    with serving(tmp_path) as (url, behaviour):
        yield url, behaviour


def test_a_remote_tab_measures_what_is_looked_at(qtbot, window: MainWindow, served) -> None:
    url, behaviour = served
    view = window.open_path(f"{url}/model.safetensors")
    wait_idle(qtbot, view)
    assert view.state == READY and window.tabs.tabText(0) == "model.safetensors"
    assert view.tooltip() == f"{url}/model.safetensors"
    assert view.model is not None and view.model.stats_count() == 0  # nothing downloaded
    assert window.status_label.text() == remote_actions.REMOTE_STATS
    assert behaviour.sent <= 64 << 10  # the first 64 KB: the header
    behaviour.reset()
    assert view.reveal_key("layer.3.weight")
    qtbot.waitUntil(lambda: view.model.stats_count() == 1, timeout=20_000)
    assert 256 * 256 * 4 <= behaviour.sent < 2 * 256 * 256 * 4  # that tensor's bytes only


def test_compute_all_statistics_of_a_remote_checkpoint(
    qtbot, window: MainWindow, served, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = served
    asked = []
    monkeypatch.setattr(
        remote_actions, "confirm_all_statistics", lambda _, nodes: asked.append(nodes) or True
    )
    view = window.open_path(f"{url}/model.safetensors")
    wait_idle(qtbot, view)
    window.all_stats_action.trigger()
    assert len(asked) == 1 and len(asked[0]) == 8
    qtbot.waitUntil(lambda: view.model.stats_count() == 8, timeout=20_000)
    wait_idle(qtbot, view)


def test_a_file_read_only_whole_offers_download_and_open(qtbot, window: MainWindow, served) -> None:
    url, _ = served
    view = window.open_path(f"{url}/legacy.pt")
    qtbot.waitUntil(lambda: view.state == FAILED, timeout=20_000)
    button = view.error_view.action_button
    assert button.isVisibleTo(view) and button.text() == "Download and Open"
    button.click()
    qtbot.waitUntil(lambda: view.state == READY, timeout=20_000)
    assert not view.remote() and view.title().endswith("-legacy.pt")
    assert torch.equal(view.checkpoint.find("w").load(), torch.arange(50_000.0))


def test_a_dropped_link_opens_where_it_lives(qtbot, window: MainWindow, served) -> None:
    url, _ = served
    data = QMimeData()
    data.setUrls([QUrl(f"{url}/model.safetensors")])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        data,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert window.tabs.count() == 1
    view = window.tabs.widget(0)
    wait_idle(qtbot, view)
    assert view.remote() and view.state == READY


def test_open_url_dialog_opens_a_tab(qtbot, window: MainWindow, served) -> None:
    url, _ = served
    dialog = window.open_url_dialog()
    dialog.edit.setText(f"{url}/model.safetensors")
    dialog.accept()
    assert window.tabs.count() == 1
    wait_idle(qtbot, window.tabs.widget(0))


def test_a_refused_remote_pickle_opens_in_the_structural_view(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:
    import argparse

    torch.save({"w": torch.ones(3), "args": argparse.Namespace(lr=0.1)}, tmp_path / "run.pt")
    with serving(tmp_path) as (url, _):
        view = window.open_path(f"{url}/run.pt")
        wait_idle(qtbot, view)
        assert view.state == READY and view.remote()
        assert view.checkpoint.view == "structural"
        assert view.banner.isVisibleTo(view)
