"""Light and dark: View > Theme, the system's scheme followed live, plots painted from the
palette, and WCAG AA contrast for the colours actually drawn, in both themes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QPalette

from ckpt_gui.qt import theme
from ckpt_gui.qt.main_window import MainWindow
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.marks import MARK_COLOURS, mark_colour
from ckpt_gui.qt.models.tree_model import FOREGROUND
from tests.qt import files
from tests.qt.files import wait_idle

TEXT_AA, MARK_AA = 4.5, 3.0


@pytest.fixture(autouse=True)
def _back_to_system() -> Iterator[None]:
    yield
    theme.apply("system", save=False)


def backgrounds() -> list[QColor]:
    palette = QGuiApplication.palette()
    roles = QPalette.ColorRole
    return [palette.color(r) for r in (roles.Base, roles.Window, roles.AlternateBase)]


def worst_contrast(colour: QColor | str) -> float:
    return min(theme.contrast(colour, bg) for bg in backgrounds())


def _pen_colour(item) -> QColor:
    return item.opts["pen"].color()


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_colours_drawn_keep_aa_contrast(qtbot, window: MainWindow, tmp_path, mode) -> None:
    window.set_theme(mode)
    assert theme.is_dark() == (mode == "dark")
    view = files.opened(qtbot, window, files.marked_state_dict(tmp_path / "m.pt"))
    model = view.model
    # Text the tree draws in colour: NaN/Inf counts, all-zero rows, tied storage.
    drawn: list[QColor] = []
    for item in model.root_item().walk():
        if item is model.root_item():
            continue
        for column in range(len(col.COLUMNS)):
            brush = model.cell(item, column).get(FOREGROUND)
            if isinstance(brush, QBrush):
                drawn.append(brush.color())
    assert {c.name() for c in drawn} >= {theme.colour("red"), theme.colour("grey")}
    for colour in drawn:
        assert worst_contrast(colour) >= TEXT_AA, colour.name()
    # Secondary text and every theme colour meant as text.
    for name in theme.TEXT_COLOURS:
        assert worst_contrast(theme.colour(name)) >= TEXT_AA, name
    for name in theme.MARK_COLOURS:
        assert worst_contrast(theme.colour(name)) >= MARK_AA, name
    for mark in MARK_COLOURS:
        assert worst_contrast(mark_colour(mark)) >= MARK_AA, mark

    # The histogram of two tensors: its background and text from the palette, its marks
    # readable against it.
    items = [it for it in model.root_item().walk() if it.key in ("embed.weight", "broken.weight")]
    view.tree.select_item(items[0])
    view.tree.view.selectionModel().select(
        view.tree.proxy.mapFromSource(model.index_of(items[1])),
        view.tree.view.selectionModel().SelectionFlag.Select
        | view.tree.view.selectionModel().SelectionFlag.Rows,
    )
    wait_idle(qtbot, view)
    plot = view.histogram.plot
    palette = QGuiApplication.palette()
    base = palette.color(QPalette.ColorRole.Base)
    assert plot.backgroundBrush().color() == base
    axis = plot.getAxis("bottom")
    assert axis.textPen().color() == palette.color(QPalette.ColorRole.Text)
    assert theme.contrast(axis.textPen().color(), base) >= TEXT_AA
    curves = plot.getPlotItem().listDataItems()
    assert len(curves) == 2
    for curve in curves:
        assert theme.contrast(_pen_colour(curve), base) >= MARK_AA


def test_compare_colours_follow_the_theme(qtbot, window: MainWindow, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.randn(8, 8), "x": torch.ones(3)}, a)
    torch.save({"w": torch.randn(8, 8), "y": torch.ones(3)}, b)
    view = window.open_compare(a, b)
    wait_idle(qtbot, view)
    for mode in ("dark", "light"):
        window.set_theme(mode)
        base = QGuiApplication.palette().color(QPalette.ColorRole.Base)
        results = view.results
        assert results.histograms.ab_plot.backgroundBrush().color() == base
        for row in range(results.proxy.rowCount()):
            status = results.proxy.index(row, 1)
            colour = status.data(Qt.ItemDataRole.ForegroundRole)
            assert worst_contrast(colour) >= TEXT_AA, (status.data(), colour.name())
        view.select_key("w")
        wait_idle(qtbot, view)
        for curve in results.histograms.ab_plot.getPlotItem().listDataItems():
            assert theme.contrast(_pen_colour(curve), base) >= MARK_AA
        assert theme.colour("a") in view.paths_bar.label_a.text()


def test_theme_menu_and_the_system_scheme(qtbot, window: MainWindow) -> None:
    actions = {a.text(): a for a in window.theme_actions.actions()}
    assert set(actions) == {"System", "Light", "Dark"}
    actions["Dark"].trigger()
    assert theme.is_dark() and theme.saved_mode() == "dark"
    welcome = window.welcome.text()
    assert theme.colour("secondary") in welcome
    # The system turning light does not override the user's choice...
    theme.on_system_scheme(Qt.ColorScheme.Light)
    assert theme.is_dark()
    # ...but with System chosen, the window follows it live.
    actions["System"].trigger()
    theme.on_system_scheme(Qt.ColorScheme.Dark)
    assert theme.is_dark()
    assert window.welcome.text() != welcome or theme.colour("secondary") in window.welcome.text()
    theme.on_system_scheme(Qt.ColorScheme.Light)
    assert not theme.is_dark()
    window.theme_menu.aboutToShow.emit()
    assert actions["System"].isChecked()


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_trust_dialog_and_export_preview_follow_the_theme(
    qtbot, window: MainWindow, tmp_path: Path, mode: str
) -> None:
    """The dialogs' warnings, verdicts and dropped rows are theme colours with AA contrast."""
    from ckpt_gui.qt.export.preview import PreviewModel
    from tests.core.hostile import write_corpus
    from tests.qt.test_security_window import visible_trust_dialog

    window.set_theme(mode)
    hostile = {h.name: h for h in write_corpus(tmp_path / "hostile")}["zip_protocol4"]
    view = files.opened(qtbot, window, hostile.path)
    view.banner.trust_button.click()
    dialog = visible_trust_dialog()
    drawn = [QColor(theme.colour("red"))]
    assert theme.colour("red") in dialog.attack_label.styleSheet()
    assert theme.colour("red") in dialog.load_button.styleSheet()
    for i in range(dialog.globals_list.count()):
        drawn.append(dialog.globals_list.item(i).foreground().color())
    assert dialog.globals_list.count() >= 2
    for colour in drawn:
        assert worst_contrast(colour) >= TEXT_AA, colour.name()
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert not hostile.sentinel.exists()

    ckpt = files.training_checkpoint(tmp_path / "train.pt")
    export = window.open_path(ckpt)
    files.wait_idle(qtbot, export)
    from ckpt_gui.core.export import ExportOptions, plan_export

    assert export.checkpoint is not None
    plan = plan_export(export.checkpoint, ExportOptions(mode="params"))
    model = PreviewModel()
    model.set_plan(plan)
    dropped = [r for r in range(model.rowCount()) if model.index(r, 0).data() == "dropped"]
    assert dropped
    brush = model.index(dropped[0], 1).data(Qt.ItemDataRole.ForegroundRole)
    assert brush.color().name() == theme.colour("grey")
    assert worst_contrast(brush.color()) >= TEXT_AA


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_safety_banner_takes_the_theme(qtbot, window: MainWindow, tmp_path: Path, mode) -> None:
    """The structural view's banner is tinted from the theme's base (dark in the dark theme),
    its text and the verdicts it names keep AA contrast on it, and it follows a live change."""
    import re

    from tests.core.hostile import write_corpus

    window.set_theme(mode)
    hostile = {h.name: h for h in write_corpus(tmp_path / "hostile")}["zip_protocol4"]
    view = files.opened(qtbot, window, hostile.path)
    banner = view.banner
    assert banner.isVisible() and banner.view == "structural"
    background, border, text = banner.colours()
    assert (QColor(background).lightness() < 128) == (mode == "dark")
    assert background in banner.styleSheet() and text in banner.styleSheet()
    assert theme.contrast(text, background) >= TEXT_AA
    assert theme.contrast(border, background) >= MARK_AA  # the icon and the border
    named = re.findall(r"color:(#[0-9a-f]{6})", banner._label.text())
    assert named  # the globals torch does not allow, in their verdict's colour
    for colour in named:
        assert theme.contrast(colour, background) >= TEXT_AA, colour
    other = "light" if mode == "dark" else "dark"
    window.set_theme(other)
    assert (QColor(banner.colours()[0]).lightness() < 128) == (other == "dark")
    assert banner.colours()[0] in banner.styleSheet()
    assert not hostile.sentinel.exists()
