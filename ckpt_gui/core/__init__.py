"""Qt-free core shared by the CLI, the tests and the GUI. Never imports PySide6 or pyqtgraph."""
