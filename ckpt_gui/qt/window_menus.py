"""The menu bar of ``MainWindow``: every command with its shortcut (each action also added to
the window, so its shortcut works wherever the focus is), recent files, the theme, and Help.
What a command does is the window's (``MainWindow``) or its File dialogs' (``FileCommands``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDialog, QMenu

from ckpt_gui.qt import recent, theme
from ckpt_gui.qt.file_commands import FileCommands

if TYPE_CHECKING:
    from ckpt_gui.qt.page import Page


class WindowMenus(FileCommands):
    """Builds the menus (``_build_menus``) of the window it is a base of."""

    if TYPE_CHECKING:  # the window's

        def open_path(self, path: str | Path, *, trust: bool = False) -> Page: ...
        def open_demo(self) -> Page: ...
        def reload_current(self) -> None: ...
        def close_current(self) -> None: ...
        def copy_keys(self) -> None: ...
        def focus_filter(self) -> None: ...
        def expand_all(self) -> None: ...
        def collapse_all(self) -> None: ...
        def scan_report(self) -> None: ...
        def compute_all_stats(self) -> None: ...

    def _action(
        self,
        text: str,
        slot: object,
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_action = self._action("&Open…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.open_folder_action = self._action("Open &Folder…", self.open_folder_dialog)
        self.open_run_action = self._action("Open R&un…", self.open_run_dialog, "Ctrl+Shift+R")
        self.open_url_action = self._action("Open &URL…", self.open_url_dialog, "Ctrl+Shift+O")
        self.remote_cache_action = self._action("Remote &Cache…", self.remote_cache_dialog)
        self.recent_menu = QMenu("Open &Recent", self)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.demo_action = self._action("Open &Demo Checkpoint", self.open_demo)
        self.compare_action = self._action("Compare &With…", self.compare_dialog, "Ctrl+D")
        self.adapter_base_action = self._action("Open With &Base Model…", self.adapter_base_dialog)
        self.export_action = self._action("&Export Cleaned Copy…", self.export_dialog, "Ctrl+E")
        self.reload_action = self._action("&Reload", self.reload_current, "F5")
        self.close_action = self._action("&Close Tab", self.close_current, "Ctrl+W")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        for item in (
            self.open_action,
            self.open_folder_action,
            self.open_run_action,
            self.open_url_action,
            self.recent_menu,
            self.demo_action,
            None,
            self.compare_action,
            self.adapter_base_action,
            self.export_action,
            self.remote_cache_action,
            None,
            self.reload_action,
            self.close_action,
            None,
            self.quit_action,
        ):
            if item is None:
                file_menu.addSeparator()
            elif isinstance(item, QMenu):
                file_menu.addMenu(item)
            else:
                file_menu.addAction(item)
        edit_menu = menu.addMenu("&Edit")
        self.copy_action = self._action("&Copy", self.copy_keys, QKeySequence.StandardKey.Copy)
        self.find_action = self._action(
            "&Filter…", self.focus_filter, QKeySequence.StandardKey.Find
        )
        edit_menu.addAction(self.copy_action)
        edit_menu.addAction(self.find_action)
        view_menu = menu.addMenu("&View")
        self.expand_action = self._action("&Expand All", self.expand_all)
        self.collapse_action = self._action("&Collapse All", self.collapse_all)
        view_menu.addAction(self.expand_action)
        view_menu.addAction(self.collapse_action)
        view_menu.addSeparator()
        self.scan_action = self._action("&Scan Report…", self.scan_report, "Ctrl+Shift+S")
        view_menu.addAction(self.scan_action)
        self.all_stats_action = self._action("Compute All &Statistics", self.compute_all_stats)
        view_menu.addAction(self.all_stats_action)
        view_menu.addSeparator()
        self.theme_menu = view_menu.addMenu("&Theme")
        self.theme_actions = QActionGroup(self)
        for mode in theme.MODES:
            action = self.theme_actions.addAction(mode.capitalize())
            action.setCheckable(True)
            action.setData(mode)
            action.triggered.connect(lambda _=False, m=mode: self.set_theme(m))
            self.theme_menu.addAction(action)
        self.theme_menu.aboutToShow.connect(self._check_theme)
        help_menu = menu.addMenu("&Help")
        self.shortcuts_action = help_menu.addAction("&Keyboard Shortcuts")
        self.shortcuts_action.triggered.connect(self.show_shortcuts)
        self.about_action = help_menu.addAction("&About ckpt-gui")
        self.about_action.triggered.connect(self.show_about)

    def show_shortcuts(self) -> QDialog:
        """Help > Keyboard Shortcuts."""
        from ckpt_gui.qt.help import ShortcutsDialog

        dialog = ShortcutsDialog(self.actions(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def show_about(self) -> QDialog:
        """Help > About: the versions of ckpt-gui, torch, Qt and PySide6."""
        from ckpt_gui.qt.help import show_about

        return show_about(self)

    def set_theme(self, mode: str) -> None:
        """View > Theme: follow the system, or always light, or always dark."""
        theme.apply(mode)

    def _check_theme(self) -> None:
        for action in self.theme_actions.actions():
            action.setChecked(action.data() == theme.mode())

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = recent.recent_files()
        for path in files:
            action = self.recent_menu.addAction(path.replace("&", "&&"))  # no mnemonics
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list").triggered.connect(recent.forget_all)
