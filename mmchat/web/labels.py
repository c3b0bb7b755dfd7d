"""The page's labels, translated in the browser by Gradio's own i18n (`t(key)` in place of
a string; `I18N` goes to launch), which also translates Gradio's built-in words. The
words themselves are mmchat.i18n's tables; the browser's language picks one."""

from __future__ import annotations

import gradio as gr

from ..i18n import CHINESE, ENGLISH, TABLES

# Gradio's own words that its Chinese table lacks: its status tracker says "common.complete"
# into a live region otherwise, and a screen reader reads the key out.
GRADIO_WORDS = {
    ENGLISH: {"common.complete": "Done", "common.loading": "Loading", "common.error": "Error",
              "common.progress": "Progress", "common.clear": "Clear"},
    CHINESE: {"common.complete": "完成", "common.loading": "加载中", "common.error": "错误",
              "common.progress": "进度", "common.clear": "清除"},
}
I18N = gr.I18n(**{language: {**GRADIO_WORDS.get(language, {}), **table} for language, table in TABLES.items()})


def t(key: str):
    """A label translated in the browser (for component labels, placeholders, Markdown)."""
    return I18N(key)
