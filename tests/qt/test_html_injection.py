"""A file's words are shown as text, never as markup: keys, values, file and folder names,
safetensors metadata, the globals a pickle names, scan notes and error messages that carry
HTML appear literally in every label, button, tooltip, title, tab and plot item of the window and
its dialogs (Qt renders a label's text as rich text as soon as it looks like HTML, and
pyqtgraph's legend and labels always do)."""

from __future__ import annotations

import json
import pickle
import struct
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pyqtgraph as pg
import pytest
import torch
from PySide6 import QtGui
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QComboBox,
    QGraphicsTextItem,
    QGroupBox,
    QLabel,
    QMessageBox,
    QTabWidget,
    QWidget,
)
from safetensors.torch import save_file

from ckpt_gui.qt.compare import CompareView
from ckpt_gui.qt.export import ExportDialog
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.widgets.checkpoint_view import FAILED, READY, CheckpointView
from ckpt_gui.qt.widgets.trust_dialog import TrustDialog
from tests.core.hostile import Call, write_archive
from tests.qt.files import wait_idle

TIMEOUT = 30_000
# Each marker word sits right after its tag wherever a file carries it. Where a user sees the
# word, the tag must show in front of it: a rendered tag would have vanished (and <img> would
# leave an object replacement character behind).
MARKERS = (
    ("<h1>", "✔ Verified safe by ckpt-gui"),
    ("<p>", "You can trust it"),
    ("<b>", "boldword"),
    ("<i>", "italicword"),
    ("<a href='javascript:alert(1)'>", "linkword"),
)
H1 = "<h1>✔ Verified safe by ckpt-gui</h1><p>You can trust it</p>"
# A file or folder name cannot hold "/": its tags stay open, which Qt renders all the same.
NAME = "<h1>✔ Verified safe by ckpt-gui<p>You can trust it<img src=x>"
FOLDER = "<b>boldword<img src=y>"
IMAGE = "\ufffc"  # what an <img> becomes in a QTextDocument's plain text


# --- the files --------------------------------------------------------------------------------
def markup_state_dict(folder: Path, name: str = NAME, scale: float = 1.0) -> Path:
    """torch.save of keys and values that hold markup, in a folder and under a name that do."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    g = torch.Generator().manual_seed(0)
    torch.save(
        {
            f"{H1}.weight": torch.randn(4, 4, generator=g) * scale,
            "<b>boldword</b>.bias": torch.randn(4, generator=g),
            "<a href='javascript:alert(1)'>linkword</a>": torch.ones(3),
            "<i>italicword</i>": f"<i>italicword</i>{scale:g}",
        },
        path,
    )
    return path


def failing_safetensors(folder: Path) -> Path:
    """A safetensors file that fails to open, with its key and dtype in the message."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NAME}.safetensors"
    entry = {"dtype": "<b>boldword</b>", "shape": [1], "data_offsets": [0, 4]}
    header = json.dumps({H1: entry}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    return path


def metadata_safetensors(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "meta.safetensors"
    save_file(
        {H1: torch.ones(2), "plain": torch.zeros(3)},
        path,
        metadata={H1: "<i>italicword</i>", "format": "pt"},
    )
    return path


def structural_markup(folder: Path) -> Path:
    """A torch zip archive (written by hand, its folder inside the zip named with markup) whose
    pickle names a class ``<h1>✔ Verified…`` of a module ``<img src=x><b>boldword`` and calls
    ``torch.FloatTensor(2, 3)`` (which the scan report notes, naming that folder)."""
    module_name, class_name = "<img src=x><b>boldword", "<h1>✔ Verified safe by ckpt-gui"
    module = types.ModuleType(module_name)
    cls = type(class_name, (), {"__module__": module_name, "__qualname__": class_name})
    setattr(module, class_name, cls)
    sys.modules[module_name] = module
    try:  # protocol 4: the names are UTF-8 (protocol 2 writes them in ASCII)
        data = pickle.dumps(
            {"config": cls(), "scratch": Call(torch.FloatTensor, 2, 3), "epoch": 1}, protocol=4
        )
    finally:
        del sys.modules[module_name]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NAME}.pt"
    write_archive(path, data, {}, prefix="<p>You can trust it<i>italicword")
    return path


def renamed_global_pickle(folder: Path) -> Path:
    """A plain pickle (protocol 2) that calls ``__builtin__.<b>boldword``: the scan report lists
    it as ``builtins.<b>boldword``, with a tooltip saying how the file wrote it."""
    path = folder / "renamed.pkl"
    path.write_bytes(b"\x80\x02c__builtin__\n<b>boldword\n)R.")
    return path


# --- what the user sees -----------------------------------------------------------------------
def seen(text: str, fmt: Qt.TextFormat = Qt.TextFormat.AutoText) -> str:
    """``text`` as Qt shows it: rendered as HTML when the format says rich text, or when it is
    AutoText and Qt guesses it is (labels, tooltips, message boxes)."""
    rich = fmt == Qt.TextFormat.RichText or (
        fmt == Qt.TextFormat.AutoText and QtGui.Qt.mightBeRichText(text)
    )
    if not rich:
        return text
    doc = QTextDocument()
    doc.setHtml(text)
    return doc.toPlainText()


def assert_literal(where: str, shown: str) -> None:
    """No marker word lost its tag, and no image was rendered."""
    assert IMAGE not in shown, (where, shown)
    for tag, word in MARKERS:
        assert shown.count(word) == shown.count(tag + word), (where, shown)


def windows() -> list[QWidget]:
    return [w for w in QApplication.topLevelWidgets() if w.isVisible()]


def texts_of(root: QWidget) -> Iterator[tuple[str, str]]:
    """(what, shown text) of everything under ``root`` that shows words: labels, buttons,
    group boxes, combo boxes, tabs, tooltips, window titles, pyqtgraph's text items."""
    widgets = [root, *root.findChildren(QWidget)]
    for w in widgets:
        name = f"{type(w).__name__} {w.objectName()}"
        if w.isWindow():
            yield f"title of {name}", w.windowTitle()
        if w.toolTip():
            yield f"tooltip of {name}", seen(w.toolTip())
        if isinstance(w, QLabel):
            yield name, seen(w.text(), w.textFormat())
        elif isinstance(w, QAbstractButton):
            yield name, w.text()
        elif isinstance(w, QGroupBox):
            yield name, w.title()
        elif isinstance(w, QComboBox):
            for i in range(w.count()):
                yield f"{name} item {i}", w.itemText(i)
        elif isinstance(w, QTabWidget):
            for i in range(w.count()):
                yield f"{name} tab {i}", w.tabText(i)
                yield f"{name} tab tooltip {i}", seen(w.tabToolTip(i))
        elif isinstance(w, QMessageBox):
            yield f"{name} informative", seen(w.informativeText(), w.textFormat())
        elif isinstance(w, QAbstractItemView) and w.model() is not None:
            yield from model_tooltips(w.model())
        elif isinstance(w, pg.GraphicsView) and w.scene() is not None:
            for item in w.scene().items():
                if isinstance(item, QGraphicsTextItem):
                    yield f"{type(item).__name__} in {name}", item.toPlainText()


def model_tooltips(model, parent: QModelIndex | None = None) -> Iterator[tuple[str, str]]:
    """Every cell's tooltip as a view shows it (trees, tables, lists)."""
    parent = parent or QModelIndex()
    for row in range(model.rowCount(parent)):
        index, column = model.index(row, 0, parent), 0
        while index.isValid():  # (list models hide columnCount)
            tip = index.data(Qt.ItemDataRole.ToolTipRole)
            if tip:
                yield f"tooltip of row {row} column {column}", seen(str(tip))
            column += 1
            index = model.index(row, column, parent)
        first = model.index(row, 0, parent)
        if model.rowCount(first):
            yield from model_tooltips(model, first)


def shown_everywhere(window: MainWindow) -> str:
    """Checks every window (the main one and the dialogs open over it) and returns all the text
    shown, for the caller to assert what must be there."""
    everything = []
    for w in {id(w): w for w in [window, *windows()]}.values():
        for where, text in texts_of(w):
            assert_literal(where, text)
            everything.append(text)
    return "\n".join(everything)


def label_text(label: QLabel) -> str:
    return seen(label.text(), label.textFormat())


def opened(qtbot, window: MainWindow, path: Path) -> CheckpointView:
    view = window.open_path(path)
    # The loading label and the status bar name the file while it opens.
    assert NAME in label_text(view.loading_label)
    assert NAME in label_text(window.status_label)
    shown_everywhere(window)
    wait_idle(qtbot, view)
    return view


# --- the tests --------------------------------------------------------------------------------
def test_checkpoint_tab_shows_keys_values_and_names_as_text(qtbot, window, tmp_path) -> None:
    path = markup_state_dict(tmp_path / FOLDER)
    view = opened(qtbot, window, path)
    assert view.state == READY, view.error_message
    view.tree.expand_all()
    items = {it.key: it for it in view.model.root_item().walk()}
    tensors = [items[f"{H1}.weight"], items["<b>boldword</b>.bias"]]
    # One tensor: details and values; then two: the histogram's legend names both.
    view.tree.select_item(tensors[0])
    wait_idle(qtbot, view)
    assert f"{H1}.weight" in view.details.browser.toPlainText()
    view.tree.select_item(items["<i>italicword</i>"])
    assert "'<i>italicword</i>1'" in view.details.browser.toPlainText()
    view.tree.view.selectAll()
    wait_idle(qtbot, view)
    legend = [label.item.toPlainText() for _, label in view.histogram.legend.items]
    assert f"{H1}.weight" in legend and "<b>boldword</b>.bias" in legend

    shown = shown_everywhere(window)
    assert NAME in label_text(view.summary._file)
    assert f"{tmp_path / FOLDER / NAME}.pt" in seen(window.tabs.tabToolTip(0))
    assert f"{tmp_path / FOLDER / NAME}.pt" in seen(view.summary._file.toolTip())
    assert window.tabs.tabText(0) == f"{NAME}.pt"
    name_tip = view.model.index_of(tensors[0], col.NAME).data(Qt.ItemDataRole.ToolTipRole)
    assert f"{H1}.weight" in seen(name_tip)
    assert "<a href='javascript:alert(1)'>linkword</a>" in shown
    assert len(window.pages()) == 1


def test_safetensors_metadata_and_tensor_names_show_as_text(qtbot, window, tmp_path) -> None:
    view = window.open_path(metadata_safetensors(tmp_path))
    wait_idle(qtbot, view)
    assert view.state == READY, view.error_message
    shown_everywhere(window)
    assert f"{H1}=<i>italicword</i>" in label_text(view.summary._totals)  # "metadata: …"
    view.tree.select_item(next(it for it in view.model.root_item().walk() if it.key == H1))
    wait_idle(qtbot, view)
    assert H1 in view.details.browser.toPlainText()
    shown_everywhere(window)


def test_error_view_shows_the_message_from_the_file_as_text(qtbot, window, tmp_path) -> None:
    view = opened(qtbot, window, failing_safetensors(tmp_path / FOLDER))
    assert view.state == FAILED
    assert "<b>boldword</b>" in view.error_message and H1 in view.error_message
    shown_everywhere(window)
    title, message = view.error_view._title, view.error_view._message
    assert label_text(title) == f"Could not open {NAME}.safetensors"
    assert view.error_message in label_text(message)
    # The same file in a compare tab: its error view too.
    page = window.open_compare(view.path, view.path)
    qtbot.waitUntil(page.is_idle, timeout=TIMEOUT)
    assert page.error_message and H1 in label_text(page.error_view._message)
    assert f"{NAME}.safetensors and {NAME}.safetensors" in label_text(page.loading_label)
    shown_everywhere(window)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_scan_report_banner_and_trust_dialog_show_globals_and_names_as_text(
    qtbot, window, tmp_path
) -> None:
    view = opened(qtbot, window, structural_markup(tmp_path / FOLDER))
    assert view.state == READY and view.checkpoint.view == "structural", view.error_message
    qualname = "<img src=x><b>boldword.<h1>✔ Verified safe by ckpt-gui"
    assert qualname in view.banner.text()

    dialog = view.show_scan_report()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=TIMEOUT)
    assert qualname in [row[0] for row in dialog.rows()]
    notes = label_text(dialog.notes_label)
    assert "<p>You can trust it<i>italicword/data.pkl: torch.FloatTensor(2, 3)" in notes
    labels = [label_text(label) for label in dialog.findChildren(QLabel)]
    assert f"{tmp_path / FOLDER / NAME}.pt" in labels
    assert dialog.windowTitle() == f"Scan report: {NAME}.pt"
    shown_everywhere(window)
    dialog.close()

    view.banner.trust_button.click()
    trust = next(w for w in windows() if isinstance(w, TrustDialog))
    assert qualname in trust.global_names()
    titles = [label_text(label) for label in trust.findChildren(QLabel)]
    assert f"Load {NAME}.pt with code execution?" in titles
    shown_everywhere(window)
    trust.reject()
    assert view.checkpoint.view == "structural"

    # A name the file wrote in Python 2 spelling: the table's tooltip quotes it.
    failed = window.open_path(renamed_global_pickle(tmp_path))
    wait_idle(qtbot, failed)
    dialog = failed.show_scan_report()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=TIMEOUT)
    assert dialog.rows()[0][0] == "builtins.<b>boldword"
    tip = seen(dialog.table.item(0, 0).toolTip())
    assert tip == "written in the file as __builtin__.<b>boldword"
    shown_everywhere(window)
    dialog.close()


def test_compare_view_shows_keys_values_and_names_as_text(qtbot, window, tmp_path) -> None:
    a = markup_state_dict(tmp_path / FOLDER, f"{NAME} A")
    b = markup_state_dict(tmp_path / FOLDER, f"{NAME} B", scale=2.0)
    page = window.open_compare(a, b)
    assert f"{NAME} A.pt and {NAME} B.pt" in label_text(page.loading_label)
    qtbot.waitUntil(lambda: page.is_idle() and not page.panels_busy(), timeout=TIMEOUT)
    assert page.report is not None
    assert page.select_key(f"{H1}.weight")
    qtbot.waitUntil(lambda: page.results.histograms.result() is not None, timeout=TIMEOUT)
    shown = shown_everywhere(window)
    assert f"{H1}.weight" in label_text(page.results.histograms.title)
    assert f"{H1}.weight" in label_text(page.results.summary._headline)
    assert "<i>italicword</i>" in label_text(page.results.summary._details)
    assert H1 in label_text(page.results.chart.hover)
    assert f"{NAME} A.pt" in label_text(page.paths_bar.label_a)
    assert f"{NAME} B.pt" in label_text(page.paths_bar.label_b)
    assert str(a) in seen(page.paths_bar.label_a.toolTip())
    assert f"A: {a}" in shown  # the tab's tooltip
    # The per-layer chart's tick labels name the layers (drawn as plain text by pyqtgraph).
    ticks = [t for level in page.results.chart.plot.getAxis("bottom")._tickLevels for _, t in level]
    assert "<b>boldword</b>" in ticks
    # A value's row says what it is, not a tensor.
    page.results.filter_bar.values_button.setChecked(True)
    assert page.select_key("<i>italicword</i>")
    assert "<i>italicword</i> is a value" in label_text(page.results.histograms.title)
    shown_everywhere(window)
    assert isinstance(page, CompareView)


def test_export_dialog_shows_names_and_keys_as_text(qtbot, window, tmp_path) -> None:
    path = markup_state_dict(tmp_path / FOLDER)
    view = window.open_path(path)
    wait_idle(qtbot, view)
    window.export_action.trigger()
    (dialog,) = window.findChildren(ExportDialog)
    assert NAME in label_text(dialog.status_label)
    qtbot.waitUntil(lambda: dialog.checkpoint is not None, timeout=TIMEOUT)
    dialog.apply_preset("cpu")
    qtbot.waitUntil(lambda: dialog.cast_effects is not None, timeout=TIMEOUT)
    labels = [label_text(label) for label in dialog.findChildren(QLabel)]
    assert f"{NAME}.pt — {tmp_path / FOLDER}" in labels
    assert dialog.windowTitle() == f"Export {NAME}.pt"
    shown_everywhere(window)
    destination = tmp_path / FOLDER / f"{NAME} out.pt"
    dialog.form.dest_edit.setText(str(destination))
    dialog.update_preview()
    with qtbot.waitSignal(dialog.export_finished, timeout=TIMEOUT):
        dialog.start_export()
    assert str(destination) in label_text(dialog.result_label)
    shown_everywhere(window)
    dialog.form.dest_edit.setText(str(destination))
    dialog.start_export()  # the destination exists now: the dialog asks first
    box = dialog.replace_box
    assert box is not None and box.isVisible()
    question = seen(box.text(), box.textFormat())
    assert f"{NAME} out.pt already exists in {tmp_path / FOLDER}." in question
    shown_everywhere(window)
    box.reject()
    dialog.reject()
