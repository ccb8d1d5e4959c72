"""File text in the window is shown as text, never as markup.

Qt renders a label's text, a tooltip or a message box as HTML as soon as ``Qt.mightBeRichText``
guesses it is (a ``<b>`` in the first line is enough), and pyqtgraph renders legends and labels as
HTML always. Keys, values, names and error messages come from files: labels that show them are
``PlainText``, rich text ``html.escape``s every piece from a file, and tooltips go through
``plain_tooltip``.
"""

from __future__ import annotations

from html import escape

from PySide6 import QtGui


def plain_tooltip(text: str) -> str:
    """``text`` as a tooltip that shows it literally: as it is when Qt shows it as plain text
    anyway, escaped rich text (line breaks kept) when Qt would take it for HTML."""
    if not QtGui.Qt.mightBeRichText(text):
        return text
    return f"<p style='white-space:pre-wrap'>{escape(text, quote=False)}</p>"
