"""The page's labels, translated in the browser by Gradio's own i18n (`t(key)` in place of
a string; `I18N` goes to launch), which also translates Gradio's built-in words. The
words themselves are mmchat.i18n's tables; the browser's language picks one."""

from __future__ import annotations

import gradio as gr

from ..i18n import TABLES

I18N = gr.I18n(**TABLES)


def t(key: str):
    """A label translated in the browser (for component labels, placeholders, Markdown)."""
    return I18N(key)
