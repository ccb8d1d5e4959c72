"""The window's side of the loading policy: the structural-view banner, stand-in rows, the scan
report, the trust dialog, ``--trust``, and every hostile file opened in the window without its
payload ever running."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication
from safetensors.torch import save_file

from ckpt_gui.cli import gui_parser
from ckpt_gui.qt import theme
from ckpt_gui.qt.app import build_window
from ckpt_gui.qt.export import ExportDialog
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.widgets.checkpoint_view import FAILED, READY, CheckpointView
from ckpt_gui.qt.widgets.scan_dialog import ScanReportDialog
from ckpt_gui.qt.widgets.trust_dialog import TrustDialog
from tests.core.checkpoints import TinyNet
from tests.core.hostile import write_corpus
from tests.qt import files
from tests.qt.files import opened, wait_idle

CONFIG = f"{__name__}.RunConfig"
HELPER = f"{__name__}.helper"


@dataclasses.dataclass
class RunConfig:
    lr: float = 0.1
    layers: int = 2


def helper() -> None:
    """Pickled by reference: the structural view shows it as a bare stand-in."""


def structural_file(path: Path) -> Path:
    """A training checkpoint torch's safe loader refuses: it holds a config dataclass."""
    torch.manual_seed(0)
    model = TinyNet()
    torch.save(
        {"config": RunConfig(lr=0.5), "hook": helper, "model": model.state_dict(), "epoch": 3},
        path,
    )
    return path


def row(view: CheckpointView, key: str):
    assert view.model is not None
    item = next(it for it in view.model.root_item().walk() if it.key == key)
    return view.model.index_of(item, col.VALUE), item


def visible_trust_dialog() -> TrustDialog:
    found = [
        w for w in QApplication.topLevelWidgets() if isinstance(w, TrustDialog) and w.isVisible()
    ]
    assert len(found) == 1
    return found[0]


def test_structural_file_shows_the_amber_banner(qtbot, window, tmp_path: Path) -> None:
    view = opened(qtbot, window, structural_file(tmp_path / "cfg.pt"))
    assert view.checkpoint.view == "structural"
    assert view.banner.isVisible() and view.banner.view == "structural"
    text = view.banner.text()
    assert text.startswith("Structural view: torch's safe loader refused this file")
    assert "without running any code from it" in text
    assert f"It names 2 globals torch does not allow: {CONFIG}, {HELPER}." in text
    assert view.banner.scan_button.isVisible() and view.banner.trust_button.isVisible()
    assert view.banner.trust_button.text() == "Load with code execution…"
    # The banner says how the file was read; the summary does not repeat it.
    assert "structural view" not in view.summary.totals_text()


def test_plain_state_dict_has_no_banner_and_no_standin_legend(qtbot, window, tmp_path) -> None:
    view = opened(qtbot, window, files.training_checkpoint(tmp_path / "train.pt"))
    assert view.checkpoint.view == "weights_only"
    assert not view.banner.isVisible()
    assert not view.tree.standin_legend.isVisible()


def test_standin_rows_say_what_they_would_import_and_call(qtbot, window, tmp_path) -> None:
    view = opened(qtbot, window, structural_file(tmp_path / "cfg.pt"))
    config, config_item = row(view, "config")
    assert config.data() == "⚠ RunConfig(lr=0.5, layers=2)"  # readable; the tip names it fully
    tip = f"Loading this file for real would import and call {CONFIG}"
    assert config.data(Qt.ItemDataRole.ToolTipRole) == tip
    assert config.data(Qt.ItemDataRole.ForegroundRole).color() == QColor(theme.colour("amber"))
    name = config.siblingAtColumn(col.NAME)
    assert name.data(Qt.ItemDataRole.DecorationRole) is not None  # the stand-in dot
    assert tip in name.data(Qt.ItemDataRole.ToolTipRole)
    hook, _ = row(view, "hook")
    assert hook.data() == f"⚠ {HELPER}"
    assert (
        hook.data(Qt.ItemDataRole.ToolTipRole)
        == f"Loading this file for real would import {HELPER}"
    )
    # Ordinary rows carry no mark, and the fields the stand-in recorded still read as values.
    epoch, _ = row(view, "epoch")
    assert epoch.data() == "3" and epoch.data(Qt.ItemDataRole.ForegroundRole) is None
    assert row(view, "config.lr")[0].data() == "0.5"
    assert view.tree.standin_legend.isVisible()
    assert "stand-in" in view.tree.standin_legend.text()
    view.tree.select_item(config_item)
    assert f"stands in for: {CONFIG}" in view.details.text()
    wait_idle(qtbot, view)


def test_scan_report_from_the_banner_lists_globals_with_verdicts(qtbot, window, tmp_path) -> None:
    view = opened(qtbot, window, structural_file(tmp_path / "cfg.pt"))
    view.banner.scan_button.click()
    dialog = view.scan_dialog
    assert isinstance(dialog, ScanReportDialog) and dialog.isVisible() and not dialog.isModal()
    assert dialog.report is view.checkpoint.scan  # the report made while opening, not a rescan
    rows = {r[0]: r for r in dialog.rows()}
    assert rows[CONFIG][1:] == ("unknown", "cfg/data.pkl", "1")
    assert rows[HELPER][1] == "unknown"
    assert rows["collections.OrderedDict"][1] == "safe"
    assert [r[1] for r in dialog.rows()][:2] == ["unknown", "unknown"]  # flagged ones first
    assert "Unknown" in dialog.verdict_text()
    dialog.close()


def test_scan_report_on_demand_for_any_file(qtbot, window, tmp_path: Path) -> None:
    assert window.scan_action.shortcut().toString() == "Ctrl+Shift+S"
    st = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(3)}, st)
    view = opened(qtbot, window, st)
    assert view.checkpoint.scan is None  # no pickle: the dialog scans the file itself
    window.scan_action.trigger()
    dialog = view.scan_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=20_000)
    assert dialog.rows() == []
    assert "holds no pickle" in dialog.verdict_text()
    assert "safetensors files hold no pickle" in dialog.notes_text()
    # A plain pickle does not open as a checkpoint, but its scan report still shows.
    hostile = {h.name: h for h in write_corpus(tmp_path / "hostile")}["plain_protocol2"]
    failed = window.open_path(hostile.path)
    wait_idle(qtbot, failed)
    assert failed.state == FAILED
    window.scan_action.trigger()
    dialog = failed.scan_dialog
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=20_000)
    assert dialog.rows()[0][:2] == ("builtins.exec", "unsafe")
    assert "Unsafe" in dialog.verdict_text()
    assert not hostile.sentinel.exists()
    window.close_current()


def test_trust_dialog_names_globals_and_cancel_keeps_the_structural_view(
    qtbot, window, tmp_path: Path
) -> None:
    view = opened(qtbot, window, structural_file(tmp_path / "cfg.pt"))
    view.banner.trust_button.click()
    dialog = visible_trust_dialog()
    names = dialog.global_names()
    assert names[:2] == [CONFIG, HELPER]  # the flagged ones first
    assert "collections.OrderedDict" in names[2:]
    assert "weights_only=False" in dialog.warning_text()
    assert "attack" not in dialog.warning_text()  # nothing here is known to be dangerous
    assert dialog.cancel_button.isDefault() and not dialog.load_button.isDefault()
    assert dialog.load_button.text() == "Load and run its code"
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    assert view.state == READY and view.checkpoint.view == "structural" and not view.trust
    # Enter presses the default button: Cancel again.
    view.banner.trust_button.click()
    qtbot.keyClick(visible_trust_dialog(), Qt.Key.Key_Return)
    assert view.state == READY and view.checkpoint.view == "structural"
    assert view.banner.view == "structural"


def test_trust_dialog_puts_dangerous_globals_first(qtbot, window, tmp_path: Path) -> None:
    hostile = {h.name: h for h in write_corpus(tmp_path / "hostile")}["zip_protocol4"]
    view = opened(qtbot, window, hostile.path)
    view.banner.trust_button.click()
    dialog = visible_trust_dialog()
    assert dialog.global_names()[:2] == ["builtins.exec", "builtins.eval"]
    assert "builtins.exec and builtins.eval can run commands or any code" in " ".join(
        dialog.warning_text().replace("<b>", "").replace("</b>", "").split()
    )
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert view.checkpoint.view == "structural" and not hostile.sentinel.exists()


def test_accepting_the_trust_dialog_reloads_trusted(qtbot, window, tmp_path: Path) -> None:
    view = opened(qtbot, window, structural_file(tmp_path / "cfg.pt"))
    view.banner.trust_button.click()
    dialog = visible_trust_dialog()
    with qtbot.waitSignal(view.loaded, timeout=20_000):
        qtbot.mouseClick(dialog.load_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, view)
    assert view.checkpoint.view == "trusted"
    assert view.banner.isVisible() and view.banner.view == "trusted"
    assert view.banner.text().startswith("Trusted load: code from this file was allowed to run")
    assert not view.banner.trust_button.isVisible()
    config, _ = row(view, "config")
    assert "RunConfig(lr=0.5, layers=2)" in config.data()  # the real object, built by its class
    assert not view.tree.standin_legend.isVisible()
    # File > Export from this tab exports what it shows: the trusted load, not the structural one
    from ckpt_gui.qt.export import ExportDialog

    window.export_action.trigger()
    (export,) = window.findChildren(ExportDialog)
    qtbot.waitUntil(lambda: export.checkpoint is not None, timeout=20_000)
    assert export.checkpoint.view == "trusted"
    export.close()


def test_trust_flag_opens_command_line_paths_trusted(qtbot, tmp_path: Path) -> None:
    path = structural_file(tmp_path / "cfg.pt")
    other = structural_file(tmp_path / "other.pt")
    win = build_window(gui_parser().parse_args(["--trust", str(path)]))
    qtbot.addWidget(win)
    view = win.current_page()
    wait_idle(qtbot, view)
    assert view.checkpoint.view == "trusted" and view.banner.view == "trusted"
    later = win.open_path(other)  # a file opened afterwards is not trusted
    wait_idle(qtbot, later)
    assert later.checkpoint.view == "structural"
    win.shutdown()
    plain = build_window(gui_parser().parse_args([str(path)]))
    qtbot.addWidget(plain)
    view = plain.current_page()
    wait_idle(qtbot, view)
    assert view.checkpoint.view == "structural"
    plain.shutdown()


def inspect_every_row(qtbot, view: CheckpointView) -> None:
    """Every row through the details, histogram and values panels; the trust dialog cancelled."""
    view.tree.expand_all()
    root = view.model.root_item()
    for item in root.walk():
        if item is not root:
            view.tree.select_item(item)
    wait_idle(qtbot, view)
    if view.checkpoint.view == "structural":
        assert view.banner.isVisible()
        view.banner.trust_button.click()
        qtbot.mouseClick(visible_trust_dialog().cancel_button, Qt.MouseButton.LeftButton)
        assert view.checkpoint.view == "structural"


def scan_in_window(qtbot, view: CheckpointView) -> ScanReportDialog:
    dialog = view.show_scan_report()
    qtbot.waitUntil(lambda: dialog.report is not None or bool(dialog.error_message), timeout=20_000)
    dialog.close()
    return dialog


def export_in_window(qtbot, window: MainWindow, destination: Path) -> str:
    """File > Export of the current tab: a CPU copy, as far as the file allows (torch's safe
    loader refuses to rebuild a structural file's objects). Returns the dialog's status."""
    window.export_dialog()
    dialog = next(
        w for w in QApplication.topLevelWidgets() if isinstance(w, ExportDialog) and w.isVisible()
    )
    qtbot.waitUntil(
        lambda: dialog.checkpoint is not None or bool(dialog.problem_label.text()), timeout=20_000
    )
    if dialog.checkpoint is not None:
        dialog.apply_preset("cpu")
        dialog.form.dest_edit.setText(str(destination))
        dialog.start_export()
        qtbot.waitUntil(lambda: not dialog.is_exporting(), timeout=20_000)
    status = dialog.status_label.text() or dialog.problem_label.text()
    dialog.reject()
    return status


def test_no_payload_runs_when_hostile_files_open_in_the_window(
    qtbot, window, tmp_path: Path, monkeypatch
) -> None:
    """Opening, every panel, the trust dialog (cancelled), the scan report, compare and export:
    none of it runs anything from the file."""
    corpus = write_corpus(tmp_path / "hostile")
    trap = next(h for h in corpus if h.sys_path)
    monkeypatch.syspath_prepend(trap.sys_path)  # the trap module could be imported if we tried
    trap_module = next(Path(trap.sys_path).glob("trapmod_*.py")).stem
    structural = 0
    for hostile in corpus:
        before = hostile.path.read_bytes()
        view = window.open_path(hostile.path)
        wait_idle(qtbot, view)
        if view.state == READY:
            structural += view.checkpoint.view == "structural"
            inspect_every_row(qtbot, view)
            status = export_in_window(qtbot, window, tmp_path / f"{hostile.name}.out.pt")
            # A CPU copy cannot write a payload's object back: refused before anything runs.
            refused = "export --params-only, or --trust if you trust the file" in status
            assert status in ("Done", "Failed") or refused, (hostile.name, status)
        dialog = scan_in_window(qtbot, view)
        if hostile.expect is not None:
            assert dialog.report.verdict == "unsafe", hostile.name
        window.close_current()
        page = window.open_compare(hostile.path, hostile.path)
        qtbot.waitUntil(page.is_idle, timeout=20_000)
        window.close_current()
        assert not hostile.sentinel.exists(), f"{hostile.name}: the payload ran in the window"
        assert hostile.path.read_bytes() == before
    assert structural >= 10  # most of the corpus opens, in the structural view
    assert trap_module not in sys.modules
    assert not any(h.sentinel.exists() for h in corpus)


def test_trust_flag_with_compare_trusts_only_the_named_pair(qtbot, tmp_path: Path) -> None:
    a = structural_file(tmp_path / "a.pt")
    b = structural_file(tmp_path / "b.pt")
    c = structural_file(tmp_path / "c.pt")
    win = build_window(gui_parser().parse_args(["--trust", "--compare", str(a), str(b)]))
    qtbot.addWidget(win)
    page = win.current_page()
    qtbot.waitUntil(page.is_idle, timeout=30_000)
    assert [ckpt.view for ckpt in page.checkpoints] == ["trusted", "trusted"]
    page.swap()  # the same two files: still the user's decision
    qtbot.waitUntil(page.is_idle, timeout=30_000)
    assert [ckpt.view for ckpt in page.checkpoints] == ["trusted", "trusted"]
    page.set_paths(a, c)  # a file dropped on the tab later is not trusted
    qtbot.waitUntil(page.is_idle, timeout=30_000)
    assert [ckpt.view for ckpt in page.checkpoints] == ["structural", "structural"]
    win.shutdown()


def test_a_trusted_load_that_fails_keeps_the_structural_view_and_says_why(
    qtbot, window, tmp_path: Path
) -> None:
    """A file whose class is not installed: trusting it cannot help. The tab does not go blank;
    it shows the structural view again, with the reason in the banner."""
    import subprocess

    path = tmp_path / "model.pt"
    script = (
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(2, 2)\n"
        f"torch.save(Net(), {str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    view = opened(qtbot, window, path)
    assert view.checkpoint.view == "structural"
    view.banner.trust_button.click()
    dialog = visible_trust_dialog()
    with qtbot.waitSignal(view.loaded, timeout=30_000):
        qtbot.mouseClick(dialog.load_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, view)
    assert view.state == READY and view.checkpoint.view == "structural" and not view.trust
    assert view.banner.text().endswith(
        "Loading it with code execution failed: "
        f"{path}: a real load needs 'Net' from the script that saved the file, which is not "
        "defined here; open it without --trust to see it in the structural view"
    )
    _, weight = row(view, "fc.weight")
    assert weight.is_tensor and view.checkpoint.find("fc.weight").load().shape == (2, 2)
