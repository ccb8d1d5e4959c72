"""The window's File commands that ask something first (``FileCommands``, part of
``MainWindow``): the open, open-URL, compare, export, base-model and remote-cache dialogs, and
the question a drop of several files asks (one run, or a tab each)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QMainWindow, QMessageBox

from ckpt_gui.qt.export_choice import ExportChoice
from ckpt_gui.qt.page import Page

if TYPE_CHECKING:
    from ckpt_gui.qt.compare import CompareView
    from ckpt_gui.qt.run.view import RunView

FILE_FILTERS = ";;".join(
    (
        "Checkpoints (*.pt *.pth *.bin *.ckpt *.safetensors *.tar *.pkl *.index.json *.distcp)",
        "PyTorch files (*.pt *.pth *.bin *.ckpt *.tar)",
        "safetensors (*.safetensors *.safetensors.index.json)",
        "All files (*)",
    )
)


class FileCommands(QMainWindow):
    """The dialogs of ``MainWindow``'s File menu; what they open, the window opens."""

    export_choice: ExportChoice
    drop_question: QMessageBox

    if TYPE_CHECKING:  # the window's

        def open_path(self, path: str | Path, *, trust: bool = False) -> Page: ...
        def open_compare(
            self, a: str | Path, b: str | Path, *, trust: bool = False
        ) -> CompareView: ...
        def open_run(self, paths: Sequence[str | Path], *, trust: bool = False) -> RunView: ...
        def current_page(self) -> Page | None: ...
        def _current_source(self) -> Path | None: ...

    def open_run_dialog(self) -> None:
        """File > Open Run…: a folder of checkpoints (a Trainer's output folder too)."""
        path = QFileDialog.getExistingDirectory(self, "Open a folder of checkpoints as a run")
        if path:
            self.open_run([path])

    def open_dropped(self, paths: Sequence[str | Path]) -> None:
        """Several files dropped at once: offer to open them as one training run."""
        if len(paths) < 2:
            for path in paths:
                self.open_path(path)
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Open checkpoints")
        box.setText(f"Open these {len(paths)} checkpoints as one training run?")
        box.setInformativeText("A run shows how every tensor moved from checkpoint to checkpoint.")
        as_run = box.addButton("Open as a Run", QMessageBox.ButtonRole.AcceptRole)
        each = box.addButton("Open Each in a Tab", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(as_run)

        def chosen() -> None:
            if box.clickedButton() is as_run:
                self.open_run(list(paths))
            elif box.clickedButton() is each:
                for path in paths:
                    self.open_path(path)

        box.finished.connect(chosen)
        self.drop_question = box
        box.open()

    def compare_dialog(self) -> None:
        """File > Compare With…: the current checkpoint is A, the chosen file is B (in a
        compare tab, the chosen file replaces B)."""
        page = self.current_page()
        sources = [] if page is None else page.paths()
        if not sources:
            self.statusBar().showMessage("Open a checkpoint first, then compare it", 4000)
            return
        title = f"Compare {sources[0].name} with"
        if page is not None and len(sources) == 2:  # a compare tab: the choice replaces B
            title = f"Replace B ({page.name_of(sources[1])}) with"
        path, _ = QFileDialog.getOpenFileName(self, title, str(sources[-1].parent), FILE_FILTERS)
        if path:
            self.compare_current_with(path)

    def compare_current_with(self, path: str | Path) -> Page | None:
        """Compare the current checkpoint (A) with ``path`` (B) in a new tab; a compare tab
        takes ``path`` as its new B."""
        page = self.current_page()
        if page is not None and page.compare_with(Path(path)):
            return page
        source = self._current_source()
        return None if source is None else self.open_compare(source, path)

    def adapter_base_dialog(self) -> None:
        """File > Open With Base Model…: pair the current tab's LoRA adapter with a base."""
        page = self.current_page()
        panel = getattr(page, "adapter_panel", None)  # a checkpoint tab of a LoRA adapter
        if panel is None or panel.checkpoint is None:
            self.statusBar().showMessage("Open a LoRA adapter first, then its base model", 4000)
            return
        panel.show_tab()
        panel.choose_base_file()

    def export_dialog(self) -> None:
        """File > Export Cleaned Copy… for the current checkpoint (a compare tab asks: A or B)."""
        page = self.current_page()
        sources = [] if page is None else page.export_sources()
        if page is None or not sources:
            self.statusBar().showMessage("Open a checkpoint first, then export it", 4000)
            return
        if len(sources) > 1:
            self.export_choice = ExportChoice(page, sources, self)
            self.export_choice.chosen.connect(lambda path: self.export_path(page, path))
            self.export_choice.open()
            return
        self.export_path(page, sources[0])

    def export_path(self, page: Page, source: Path) -> None:
        """The export dialog for ``source``, one of ``page``'s files."""
        from ckpt_gui.qt.export import ExportDialog

        # A tab the user trusted exports what it shows: the real objects, not the structural view.
        dialog = ExportDialog(source, parent=self, trust=page.trust)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open checkpoints", "", FILE_FILTERS)
        for path in paths:
            self.open_path(path)

    def open_url_dialog(self) -> QDialog:
        """File > Open URL…: a checkpoint where it lives (https, s3, gs, hf)."""
        from ckpt_gui.qt.remote_dialogs import OpenUrlDialog

        dialog = OpenUrlDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.open_path(dialog.url()))
        dialog.open()
        return dialog

    def remote_cache_dialog(self) -> QDialog:
        """File > Remote Cache…: how much the fetched bytes take, their limit, Clear."""
        from ckpt_gui.qt.remote_dialogs import CacheDialog, apply_cache_limit

        apply_cache_limit()
        dialog = CacheDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, "Open a sharded or distributed checkpoint folder"
        )
        if path:
            self.open_path(path)
