"""Reload (F5) and closing a tab release the file: no memory map of it, no descriptor on it, and
anonymous memory back where it was. Driven through the real window, with statistics computed and
a histogram and values shown, for a torch file read by torch's safe loader, one read in the
structural view, and a safetensors file; plus a file replaced on disk before a reload."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
import shiboken6
import torch
from PySide6.QtCore import QCoreApplication, QEvent
from safetensors.torch import save_file

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.widgets.checkpoint_view import CheckpointView
from tests.qt.files import wait_idle

RELOADS = 3
ROWS, COLS, TENSORS = 1024, 1024, 16  # 64 MB of float32, plus a 1-D bias
ANON_SLACK_MB = 50

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="reads /proc/self (Linux only)"
)


class RunConfig:
    """A class of this module: torch's weights_only loader refuses an instance of it, so the
    window reads the file in the structural view."""

    def __init__(self) -> None:
        self.lr = 0.1


def _state_dict(seed: int, tensors: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {f"layers.{i}.weight": torch.randn(ROWS, COLS, generator=g) for i in range(tensors)}
    state["layers.0.bias"] = torch.randn(COLS, generator=g)  # 1-D: values shown whole
    return state


def _write(kind: str, path: Path, seed: int = 0, tensors: int = TENSORS) -> Path:
    state = _state_dict(seed, tensors)
    if kind == "safetensors":
        save_file(state, str(path))
    elif kind == "structural":
        torch.save({"model": state, "config": RunConfig()}, path)
    else:
        torch.save(state, path)
    return path


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def mappings(inode: tuple[int, int]) -> int:
    """Lines of /proc/self/maps that map the file ``inode`` (still counted once it is replaced
    or deleted on disk)."""
    dev, ino = inode
    count = 0
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or int(fields[4]) != ino:
                continue
            major, minor = (int(x, 16) for x in fields[3].split(":"))
            if os.makedev(major, minor) == dev:
                count += 1
    return count


def descriptors(inode: tuple[int, int]) -> int:
    """Descriptors of this process open on the file ``inode``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == inode:
            count += 1
    return count


def rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def settle(qtbot) -> None:
    """Let deleteLater and queued signals run, then collect cycles."""
    qtbot.wait(20)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def _load_and_look(qtbot, window: MainWindow, view: CheckpointView) -> None:
    """Wait for the statistics, then select the largest tensor (histogram, heat map) and the
    1-D bias (its values shown whole), as a user would."""
    wait_idle(qtbot, view, timeout=60_000)
    assert view.state == "ready"
    assert view.model is not None
    assert view.model.stats_count() == sum(it.is_tensor for it in view.model.root_item().walk())
    view.select_largest_tensor()
    wait_idle(qtbot, view, timeout=60_000)
    assert view.histogram.curves(), "the histogram shows nothing"
    bias = next(it for it in view.model.root_item().walk() if it.key.endswith("layers.0.bias"))
    view.tree.select_item(bias)
    wait_idle(qtbot, view, timeout=60_000)
    sample = view.values.sample()
    assert sample is not None and sample.values.shape == (COLS,)


def _open_reload_close(
    qtbot, window: MainWindow, path: Path, reloads: int
) -> tuple[CheckpointView, dict[str, object]]:
    """Open ``path``, reload it ``reloads`` times (F5), close the tab; what held the file when."""
    inode = _inode(path)
    view = window.open_path(path)
    _load_and_look(qtbot, window, view)
    settle(qtbot)
    figures: dict[str, object] = {"opened": (mappings(inode), descriptors(inode))}
    for i in range(reloads):
        window.reload_action.trigger()  # F5
        _load_and_look(qtbot, window, view)
        settle(qtbot)
        figures[f"reload {i + 1}"] = (mappings(inode), descriptors(inode))
    window.close_tab(window.tabs.indexOf(view))
    settle(qtbot)
    figures["closed"] = (mappings(inode), descriptors(inode))
    return view, figures


@pytest.mark.parametrize("kind", ["weights_only", "structural", "safetensors"])
def test_reload_and_close_release_the_file(qtbot, window, tmp_path: Path, kind: str) -> None:
    suffix = ".safetensors" if kind == "safetensors" else ".pt"
    warm_up = _write(kind, tmp_path / f"warm-up{suffix}", tensors=2)
    path = _write(kind, tmp_path / f"model{suffix}")
    # A first file opened and closed pays what is paid once per process (imports, plot widgets,
    # the worker threads' allocator arenas), so that what remains after the second is a leak.
    _open_reload_close(qtbot, window, warm_up, reloads=0)
    before = rss_anon_mb()

    view, figures = _open_reload_close(qtbot, window, path, reloads=RELOADS)
    figures["RssAnon MB"] = round(rss_anon_mb() - before)
    shown = figures["opened"]
    assert isinstance(shown, tuple) and shown[0] >= 1  # mapped while shown, or this proves nothing
    if kind == "structural":
        assert view.banner.view == "structural"
    assert window.tabs.count() == 0
    assert not shiboken6.isValid(view), "the closed tab was not deleted"
    # (mappings, descriptors) of the file after opening, each reload and closing the tab
    said = str(figures)  # every figure in the failure message, none elided
    assert [figures[f"reload {i + 1}"] for i in range(RELOADS)] == [shown] * RELOADS, said
    assert figures["closed"] == (0, 0), said
    assert figures["RssAnon MB"] < ANON_SLACK_MB, said


def test_reload_lets_go_of_a_file_replaced_on_disk(qtbot, window, tmp_path: Path) -> None:
    path = _write("weights_only", tmp_path / "model.pt")
    old = _inode(path)
    view = window.open_path(path)
    _load_and_look(qtbot, window, view)
    assert mappings(old) >= 1

    # A training run writes the next checkpoint next to it and renames it over the old one.
    _write("weights_only", tmp_path / "model.pt.tmp", seed=1).replace(path)
    new = _inode(path)
    assert new != old
    window.reload_action.trigger()
    _load_and_look(qtbot, window, view)
    settle(qtbot)
    assert mappings(old) == 0, "the replaced file is still mapped: its disk space stays in use"
    assert descriptors(old) == 0
    assert mappings(new) >= 1

    window.close_current()
    settle(qtbot)
    assert mappings(new) == 0 and descriptors(new) == 0


@pytest.mark.parametrize("kind", ["weights_only", "structural", "safetensors"])
def test_a_closed_checkpoint_holds_no_tensors(tmp_path: Path, kind: str) -> None:
    """``Checkpoint.close()`` drops the tree and the loaded object, so a Checkpoint someone
    still refers to does not keep the file mapped."""
    suffix = ".safetensors" if kind == "safetensors" else ".pt"
    path = _write(kind, tmp_path / f"model{suffix}", tensors=2)
    inode = _inode(path)
    ckpt = open_checkpoint(path)
    tensors = [n.load() for n in ckpt.tensors()]
    assert len(tensors) == 3
    assert mappings(inode) >= 1
    del tensors
    ckpt.close()
    gc.collect()
    assert mappings(inode) == 0, "a closed Checkpoint still maps the file"
    assert descriptors(inode) == 0
    assert ckpt.tensors() == [] and ckpt.obj is None
